"""The add-on's words in English and Spanish, the way Orange translates its own.

Orange 3.36+ keeps each package's messages in ``i18n/<Language>.json``: a list whose
first two entries are the language's own name and its English name, then the messages,
in the same order in every language (the tables ``trubar`` writes); the language is
Orange's setting ``application/language`` (File > Settings > General, stored in
``biolab.si/Orange.ini``).  Ours are ``i18n/English.json`` and ``i18n/Spanish.json``
beside this module.  Orange's menu lists only the languages Orange itself ships
(English, Slovenian), so Spanish is chosen by writing ``language=Español`` under
``[application]`` in that file, or, with no setting at all, by a Spanish system locale
(``LANG=es_ES.UTF-8``), as Orange picks its own default.

Where Orange's generated code indexes the table (``_tr.m[17, "Telemetry"]``), ours looks
the English text up, so the source reads in English:

>>> Messages("Spanish").tr("Telemetry"), Messages("English").tr("Telemetry")
('Telemetría', 'Telemetry')
>>> Messages("Spanish").tr("no such message")  # not in the table: the English text
'no such message'
>>> language_file("Español"), language_file("es_ES"), language_file("Slovenščina")
('Spanish', 'Spanish', 'English')
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

__all__ = ["LANGUAGES", "Messages", "current", "language_file", "tr"]

FOLDER = Path(__file__).with_name("i18n")
# file name (the language's English name) -> the names Orange's setting or a locale may hold
LANGUAGES: dict[str, tuple[str, ...]] = {
    "English": ("English", "en"),
    "Spanish": ("Spanish", "Español", "es"),
}


def language_file(name: str | None) -> str:
    """The message file for a language name, a native name or a locale; English otherwise."""
    if name:
        low = name.lower()
        for file, names in LANGUAGES.items():
            if any(low == n.lower() or low.startswith(n.lower() + "_") for n in names):
                return file
    return "English"


def _setting() -> str | None:
    """Orange's ``application/language`` (where Orange's Translator reads it), else the
    system locale's language name."""
    try:
        from AnyQt.QtCore import QLocale, QSettings
    except ImportError:  # no Qt at all: English
        return None
    s = QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "biolab.si", "Orange")
    value = s.value("application/language", None)
    if value:
        return str(value)
    return QLocale().name()  # e.g. es_ES


class Messages:
    """One language's message table, looked up by the English text."""

    def __init__(self, language: str) -> None:
        english = _load("English")
        self.language = language
        table = _load(language)
        if len(table) != len(english):
            raise ValueError(
                f"i18n/{language}.json has {len(table)} entries, English {len(english)}"
            )
        self._by_english = dict(zip(english[2:], table[2:], strict=True))

    def tr(self, text: str) -> str:
        return self._by_english.get(text, text)


@cache
def _load(language: str) -> list[str]:
    with open(FOLDER / f"{language}.json", encoding="utf-8") as f:
        table: list[str] = json.load(f)
    return table


@cache
def current() -> Messages:
    """The messages of Orange's language (read once, as Orange reads its own at start-up)."""
    return Messages(language_file(_setting()))


def tr(text: str) -> str:
    """``text`` in Orange's language (English when the table has no such message)."""
    return current().tr(text)

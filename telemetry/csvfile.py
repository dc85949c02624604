"""The public dataset's CSV format, read and written exactly as published.

``iot_telemetry_data.csv`` (405,184 rows) looks like this, every field quoted,
``ts`` in Java's ``Double.toString`` notation, booleans ``"true"``/``"false"``::

    "ts","device","co","humidity","light","lpg","motion","smoke","temp"
    "1.5945120943859746E9","b8:27:eb:bf:9d:51","0.004955938648391245","51.0","false",\
"0.00765082227055719","false","0.02041127012241292","22.7"

:func:`read_csv` streams it (constant memory) and judges every row with the
very checks of :func:`telemetry.reading.make_reading`, so a file row and an
MQTT payload are judged alike (the contract: :mod:`telemetry.reading`):

* an **empty cell** is an absent sensor (a temperature-only device's file has
  every other sensor cell empty);
* a **bad cell** (not a number, not ``"true"``/``"false"``, not finite, out of
  range) drops that field, noted in the reading's ``notes`` as ``(field,
  reason)``, and the row goes on; a humidity a little beyond 0/100 is clipped
  and noted ``"clipped"``;
* a row is refused whole only when nothing usable is left: a bad ``ts`` or
  device, the wrong number of cells, or no usable sensor (``no_sensor``).  A
  refused row is reported to ``on_bad_row`` (line number, reason, message)
  and skipped; reading goes on.

**Extra columns.**  The header may go on after the nine public columns with
up to 16 extra numeric columns named like ``pressure`` (``[a-z][a-z0-9_]*``,
at most 32 characters): their cells become the reading's ``extra`` fields, as
a payload's other ``data`` keys do (an empty or non-numeric cell is ignored).
Any other header is a :class:`CsvFormatError`.

:func:`write_csv` writes readings in the same format, byte for byte, an
absent sensor as an empty cell ``""`` (``extra=`` names extra columns to
write), so files round-trip.  ``notes`` are not written: a file holds values.
Full rows take a fast path (``bench/decode.py`` measures ``format_row``).

>>> import io
>>> text = (HEADER + '\\n"1.5945120943859746E9","b8:27:eb:bf:9d:51","0.004955938648391245",'
...         '"51.0","false","0.00765082227055719","false","0.02041127012241292","22.7"\\n'
...         '"1.5945121E9","4e:41:42:00:00:01","","","","","","","21.045"\\n'
...         '"1.5945122E9","b8:27:eb:bf:9d:51","0.005","hot","false","0.007","false","0.02","22.7"\\n'
...         '"1.5945123E9","4e:41:42:00:00:01","","","","","","","NaN"\\n')
>>> bad = BadRows()
>>> rows = list(read_csv(io.StringIO(text), on_bad_row=bad))
>>> rows[0].temp, rows[1].temp, rows[1].humidity, rows[2].humidity, rows[2].notes
(22.7, 21.045, None, None, (('humidity', 'wrong_type'),))
>>> bad.count, bad.examples[0].line, bad.examples[0].reason
(1, 5, 'no_sensor')
>>> out = io.StringIO()
>>> write_csv(out, rows[:2])
2
>>> out.getvalue() == "".join(text.splitlines(keepends=True)[:3])
True
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Protocol

from telemetry.reading import (
    _EXTRA_NAME,
    FIELDS,
    MAX_EXTRA_FIELDS,
    SENSORS,
    InvalidReading,
    Reading,
    _build,
    _plain_valid,
    make_reading,
)

__all__ = [
    "HEADER",
    "BadRow",
    "BadRows",
    "CsvFormatError",
    "format_row",
    "java_double",
    "read_csv",
    "write_csv",
]

log = logging.getLogger(__name__)

HEADER = ",".join(f'"{name}"' for name in FIELDS)
_BOOL = {"true": True, "false": False}
_BOOL_TEXT = ("false", "true")
_BOOLEAN = frozenset(("light", "motion"))

PathOrFile = str | os.PathLike[str] | IO[str]


class _EverySensor(Protocol):
    """A :class:`Reading` as :func:`format_row`'s fast path takes it: every sensor present."""

    ts: float
    device: str
    co: float
    humidity: float
    light: bool
    lpg: float
    motion: bool
    smoke: float
    temp: float


class CsvFormatError(ValueError):
    """The file is not in the public CSV format at all (e.g. wrong header); nothing was read."""


@dataclass(frozen=True, slots=True)
class BadRow:
    """A row that was skipped: 1-based ``line`` in the file, ``reason`` (a
    :data:`telemetry.reading.REASONS` value or ``"wrong_field_count"``), a message, the row's text."""

    line: int
    reason: str
    message: str
    text: str


@dataclass
class BadRows:
    """A ``on_bad_row`` callback that counts bad rows by reason and keeps the first ``keep``.

    >>> b = BadRows(keep=1)
    >>> b(BadRow(2, "wrong_type", "x", "")); b(BadRow(5, "out_of_range", "y", ""))
    >>> b.count, dict(b.by_reason), [r.line for r in b.examples]
    (2, {'wrong_type': 1, 'out_of_range': 1}, [2])
    """

    keep: int = 20
    count: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    examples: list[BadRow] = field(default_factory=list)

    def __call__(self, bad: BadRow) -> None:
        self.count += 1
        self.by_reason[bad.reason] += 1
        if len(self.examples) < self.keep:
            self.examples.append(bad)


def _log_bad_row(bad: BadRow) -> None:
    log.warning("skipped bad row at line %d (%s): %s", bad.line, bad.reason, bad.message)


@contextmanager
def _opened(source: PathOrFile, mode: str) -> Iterator[IO[str]]:
    if isinstance(source, io.IOBase) or hasattr(source, "read" if "r" in mode else "write"):
        yield source  # type: ignore[misc]
    else:
        # reading: tolerate a byte-order mark (spreadsheet exports); writing: none, as published
        encoding = "utf-8-sig" if "r" in mode else "utf-8"
        with open(source, mode, newline="", encoding=encoding) as f:  # type: ignore[arg-type]
            yield f


def _row_text(row: list[str]) -> str:
    return ",".join(f'"{v}"' for v in row)[:300]


def _parse_row(row: list[str], now: float | None, extra: tuple[str, ...]) -> Reading:
    """The careful path: convert one row cell by cell and judge it with :func:`make_reading`.

    An empty sensor cell is an absent sensor; a cell that does not convert is handed over as
    its text, so that :func:`make_reading` drops and notes it (``wrong_type``) like a payload's.
    Extra cells that are empty or not numbers are ignored, as a payload's.
    """
    if len(row) != len(FIELDS) + len(extra):
        expected = HEADER + "".join(f',"{name}"' for name in extra)
        raise InvalidReading(
            "wrong_field_count",
            f"row has {len(row)} fields; expected {len(FIELDS) + len(extra)} ({expected})",
        )
    ts: object = row[0]
    try:
        ts = float(row[0])
    except ValueError:
        pass  # make_reading names it: wrong_type
    values: dict[str, object] = {}
    for name, text in zip(SENSORS, row[2:9], strict=True):
        if text == "":
            continue  # no such sensor in this reading
        if name in _BOOLEAN:
            values[name] = _BOOL.get(text, text)
        else:
            try:
                values[name] = float(text)
            except ValueError:
                values[name] = text
    pairs: list[tuple[str, float]] = []
    for name, text in zip(extra, row[9:], strict=True):
        if text:
            try:
                pairs.append((name, float(text)))
            except ValueError:
                pass  # not a number: ignored, as in a payload
    return make_reading(ts, row[1], **values, extra=pairs, now=now)  # type: ignore[arg-type]


def _extra_columns(header: list[str], source: PathOrFile) -> tuple[str, ...]:
    """The extra numeric columns after the public ones, or :class:`CsvFormatError`."""
    if tuple(header[: len(FIELDS)]) != FIELDS:
        raise CsvFormatError(
            f"{getattr(source, 'name', source)}: header {_row_text(header)!r} is not the "
            f"public format's {HEADER}"
        )
    extra = tuple(header[len(FIELDS) :])
    bad = [
        name
        for i, name in enumerate(extra)
        if not _EXTRA_NAME.fullmatch(name) or name in FIELDS or name in extra[:i]
    ]
    if bad or len(extra) > MAX_EXTRA_FIELDS:
        raise CsvFormatError(
            f"{getattr(source, 'name', source)}: extra columns {', '.join(map(repr, extra))} "
            f"after the public format's {HEADER}: each must be named like 'pressure' "
            f"([a-z][a-z0-9_]*, at most 32 characters, not a public column, not repeated), "
            f"at most {MAX_EXTRA_FIELDS} of them"
            + (f"; not {', '.join(map(repr, bad))}" if bad else "")
        )
    return extra


def read_csv(
    source: PathOrFile,
    on_bad_row: Callable[[BadRow], None] | None = None,
    *,
    now: float | None = None,
) -> Iterator[Reading]:
    """Stream the readings of a file in the public format, in file order.

    ``source`` is a path or an open text file.  Rows refused whole go to ``on_bad_row``
    (default: a log warning each) and are skipped; blank lines are ignored.  A row that
    lost a cell is yielded with it noted in ``Reading.notes`` (module docstring).
    ``now`` bounds future timestamps as in :func:`telemetry.reading.decode_payload`.
    Raises :class:`CsvFormatError` if the header is not the public one (optionally
    followed by extra numeric columns).
    """
    report = on_bad_row or _log_bad_row
    with _opened(source, "r") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return
        extra = _extra_columns(header, source)
        for row in reader:
            try:
                # the fast path: a full row of the public format (extra columns: careful path)
                ts_s, device, co_s, hum_s, light_s, lpg_s, motion_s, smoke_s, temp_s = row
                ts = float(ts_s)
                co = float(co_s)
                humidity = float(hum_s)
                lpg = float(lpg_s)
                smoke = float(smoke_s)
                temp = float(temp_s)
                if _plain_valid(ts, device, co, humidity, lpg, smoke, temp, now):
                    reading = _build(
                        ts, device, co, humidity, _BOOL[light_s], lpg, _BOOL[motion_s], smoke, temp
                    )
                else:
                    raise ValueError  # let the careful path judge each cell
            except (ValueError, KeyError):
                if not row:
                    continue
                try:
                    reading = _parse_row(row, now, extra)
                except InvalidReading as exc:
                    report(BadRow(reader.line_num, exc.reason, str(exc), _row_text(row)))
                    continue
            yield reading


def java_double(x: float) -> str:
    """``x`` as Java's ``Double.toString`` writes it (shortest digits that round-trip).

    Plain decimal for 1e-3 <= |x| < 1e7, otherwise ``d.dddE<exp>``.

    >>> java_double(1594512094.3859746), java_double(51.0), java_double(0.004955938648391245)
    ('1.5945120943859746E9', '51.0', '0.004955938648391245')
    >>> java_double(1594512000.0), java_double(0.0001234), java_double(0.0), java_double(1e-05)
    ('1.594512E9', '1.234E-4', '0.0', '1.0E-5')
    """
    if 1e-3 <= x < 1e7:
        return repr(x)
    a = -x if x < 0 else x
    sign = "-" if x < 0 else ""
    if 1e-3 <= a < 1e7 or a == 0.0:
        return repr(x)  # plain; "0.0" / "-0.0"
    if 1e7 <= a < 1e16:  # repr is plain "dddd.ddd": move the point
        text = repr(a)
        point = text.index(".")
        digits = (text[:point] + text[point + 1 :]).rstrip("0")
        return f"{sign}{digits[0]}.{digits[1:] or '0'}E{point - 1}"
    if a != a:
        return "NaN"
    if a == float("inf"):
        return "Infinity" if x > 0 else "-Infinity"
    text = repr(a)
    mantissa, _, exp = text.partition("e")
    int_part, _, _frac = mantissa.partition(".")
    digits = mantissa.replace(".", "")
    stripped = digits.lstrip("0")
    zeros = len(digits) - len(stripped)
    exponent = len(int_part) - 1 - zeros + (int(exp) if exp else 0)
    stripped = stripped.rstrip("0") or "0"
    return f"{sign}{stripped[0]}.{stripped[1:] or '0'}E{exponent}"


def _cell(value: float | bool | None) -> str:
    """A sensor value as the public format writes it; an absent one as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return _BOOL_TEXT[value]
    return repr(value) if 1e-3 <= value < 1e7 else java_double(value)


def format_row(r: Reading, extra: Sequence[str] = ()) -> str:
    """One line of the public format, with its newline; an absent sensor is an empty cell.

    ``extra`` names extra columns written after the public ones (the reading's extra
    fields of those names; empty where it has none).  ``Reading.notes`` are not written.

    >>> format_row(Reading(1594512094.3859746, "d", 0.0049, 51.0, False, 0.0076, True, 0.0204, 22.7))
    '"1.5945120943859746E9","d","0.0049","51.0","false","0.0076","true","0.0204","22.7"\\n'
    >>> format_row(Reading(1594512094.0, "d", temp=21.5, extra=(("pressure", 1013.2),)), ["pressure"])
    '"1.594512094E9","d","","","","","","","21.5","1013.2"\\n'
    """
    if not extra:
        # the fast path: every sensor present (None fails a comparison or the lookup)
        full: _EverySensor = r  # type: ignore[assignment]
        co, humidity, lpg, smoke, temp = full.co, full.humidity, full.lpg, full.smoke, full.temp
        try:
            return (
                f'"{java_double(r.ts)}","{r.device}",'
                f'"{repr(co) if 1e-3 <= co < 1e7 else java_double(co)}",'
                f'"{repr(humidity) if 1e-3 <= humidity < 1e7 else java_double(humidity)}",'
                f'"{_BOOL_TEXT[full.light]}",'
                f'"{repr(lpg) if 1e-3 <= lpg < 1e7 else java_double(lpg)}",'
                f'"{_BOOL_TEXT[full.motion]}",'
                f'"{repr(smoke) if 1e-3 <= smoke < 1e7 else java_double(smoke)}",'
                f'"{repr(temp) if 1e-3 <= temp < 1e7 else java_double(temp)}"\n'
            )
        except TypeError:
            pass
    cells = [java_double(r.ts), r.device]
    cells.extend(_cell(getattr(r, name)) for name in SENSORS)
    if extra:
        extras = dict(r.extra)
        cells.extend(_cell(extras.get(name)) for name in extra)
    return ",".join(f'"{c}"' for c in cells) + "\n"


def write_csv(target: PathOrFile, readings: Iterable[Reading], extra: Sequence[str] = ()) -> int:
    """Write the header and ``readings`` in the public format; return the number of rows.

    ``extra`` names extra numeric columns to write after the public ones (module docstring).
    Device ids are validated readings' ids (no quotes or commas), so fields need no escaping.
    """
    extra = tuple(extra)
    header = HEADER + "".join(f',"{name}"' for name in extra)
    n = 0
    with _opened(target, "w") as f:
        f.write(header + "\n")
        chunk: list[str] = []
        for r in readings:
            chunk.append(format_row(r, extra))
            if len(chunk) >= 2048:
                f.write("".join(chunk))
                n += len(chunk)
                chunk.clear()
        f.write("".join(chunk))
        n += len(chunk)
    return n

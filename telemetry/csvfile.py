"""The public dataset's CSV format, read and written exactly as published.

``iot_telemetry_data.csv`` (405,184 rows) looks like this, every field quoted,
``ts`` in Java's ``Double.toString`` notation, booleans ``"true"``/``"false"``::

    "ts","device","co","humidity","light","lpg","motion","smoke","temp"
    "1.5945120943859746E9","b8:27:eb:bf:9d:51","0.004955938648391245","51.0","false",\
"0.00765082227055719","false","0.02041127012241292","22.7"

:func:`read_csv` streams it (constant memory) and validates every row with
the very checks of :func:`telemetry.reading.make_reading`, so a file row and
an MQTT payload are accepted or refused alike.  A bad row is reported to
``on_bad_row`` (line number, reason, message) and skipped; reading goes on.
:func:`write_csv` writes readings in the same format, byte for byte.

>>> import io
>>> text = (HEADER + '\\n"1.5945120943859746E9","b8:27:eb:bf:9d:51","0.004955938648391245",'
...         '"51.0","false","0.00765082227055719","false","0.02041127012241292","22.7"\\n'
...         '"1.5945121E9","b8:27:eb:bf:9d:51","0.005","hot","false","0.007","false","0.02","22.7"\\n')
>>> bad = BadRows()
>>> rows = list(read_csv(io.StringIO(text), on_bad_row=bad))
>>> rows[0].ts, rows[0].temp, bad.count, bad.examples[0].line, bad.examples[0].reason
(1594512094.3859746, 22.7, 1, 3, 'wrong_type')
>>> out = io.StringIO()
>>> write_csv(out, rows)
1
>>> out.getvalue() == text.split("\\n", 2)[0] + "\\n" + text.split("\\n", 2)[1] + "\\n"
True
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO

from telemetry.reading import FIELDS, InvalidReading, Reading, _build, _plain_valid, make_reading

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

PathOrFile = str | os.PathLike[str] | IO[str]


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


def _parse_row(row: list[str], now: float | None) -> Reading:
    """The careful path: convert and validate one row field by field, naming the first failure."""
    if len(row) != len(FIELDS):
        raise InvalidReading(
            "wrong_field_count", f"row has {len(row)} fields; expected {len(FIELDS)} ({HEADER})"
        )
    values: dict[str, object] = {}
    for name, text in zip(FIELDS, row, strict=True):
        if name == "device":
            values[name] = text
        elif name in ("light", "motion"):
            if text not in _BOOL:
                raise InvalidReading(
                    "wrong_type", f'field \'{name}\' must be "true" or "false", got {text!r:.40}'
                )
            values[name] = _BOOL[text]
        else:
            try:
                values[name] = float(text)
            except ValueError:
                raise InvalidReading(
                    "wrong_type", f"field '{name}' must be a number, got {text!r:.40}"
                ) from None
    return make_reading(**values, now=now)  # type: ignore[arg-type]


def read_csv(
    source: PathOrFile,
    on_bad_row: Callable[[BadRow], None] | None = None,
    *,
    now: float | None = None,
) -> Iterator[Reading]:
    """Stream the readings of a file in the public format, in file order.

    ``source`` is a path or an open text file.  Bad rows go to ``on_bad_row``
    (default: a log warning each) and are skipped; blank lines are ignored.
    ``now`` bounds future timestamps as in :func:`telemetry.reading.decode_payload`.
    Raises :class:`CsvFormatError` if the header is not the public one.
    """
    report = on_bad_row or _log_bad_row
    with _opened(source, "r") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return
        if tuple(header) != FIELDS:
            raise CsvFormatError(
                f"{getattr(source, 'name', source)}: header {_row_text(header)!r} is not the "
                f"public format's {HEADER}"
            )
        for row in reader:
            try:
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
                    raise ValueError  # let the careful path name the problem
            except (ValueError, KeyError):
                if not row:
                    continue
                try:
                    reading = _parse_row(row, now)
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


def format_row(r: Reading) -> str:
    """One line of the public format, with its newline.

    >>> format_row(Reading(1594512094.3859746, "d", 0.0049, 51.0, False, 0.0076, True, 0.0204, 22.7))
    '"1.5945120943859746E9","d","0.0049","51.0","false","0.0076","true","0.0204","22.7"\\n'
    """
    co, humidity, lpg, smoke, temp = r.co, r.humidity, r.lpg, r.smoke, r.temp
    return (
        f'"{java_double(r.ts)}","{r.device}",'
        f'"{repr(co) if 1e-3 <= co < 1e7 else java_double(co)}",'
        f'"{repr(humidity) if 1e-3 <= humidity < 1e7 else java_double(humidity)}",'
        f'"{_BOOL_TEXT[r.light]}",'
        f'"{repr(lpg) if 1e-3 <= lpg < 1e7 else java_double(lpg)}",'
        f'"{_BOOL_TEXT[r.motion]}",'
        f'"{repr(smoke) if 1e-3 <= smoke < 1e7 else java_double(smoke)}",'
        f'"{repr(temp) if 1e-3 <= temp < 1e7 else java_double(temp)}"\n'
    )


def write_csv(target: PathOrFile, readings: Iterable[Reading]) -> int:
    """Write the header and ``readings`` in the public format; return the number of rows.

    Device ids are validated readings' ids (no quotes or commas), so fields need no escaping.
    """
    n = 0
    with _opened(target, "w") as f:
        f.write(HEADER + "\n")
        chunk: list[str] = []
        for r in readings:
            chunk.append(format_row(r))
            if len(chunk) >= 2048:
                f.write("".join(chunk))
                n += len(chunk)
                chunk.clear()
        f.write("".join(chunk))
        n += len(chunk)
    return n

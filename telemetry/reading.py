"""The reading: one message of one device, and its wire formats.

The MQTT payload (and the Kinesis record, which carries the same bytes in
compact form) is the devices' own format::

    {"data": {"co": 0.0049, "humidity": 51.0, "light": false, "lpg": 0.0076,
              "motion": false, "smoke": 0.0204, "temp": 22.7},
     "device_id": "b8:27:eb:bf:9d:51", "ts": 1594512094.3859746}

:func:`decode_payload` turns bytes into a :class:`Reading` or raises
:class:`InvalidReading` with a machine ``reason`` (a fixed, small set, safe
as a metric label) and a message a person can act on.

Accepted ranges (a DHT22 thermometer/hygrometer and MQ-2 style gas sensors):

========== ============================== =========================================
field      type                           accepted
========== ============================== =========================================
ts         number (seconds since epoch)   2000-01-01 .. now + 1 day, finite
device_id  string                         1..64 chars of ``A-Z a-z 0-9 : . _ -``,
                                          not only dots (``.``/``..`` are path
                                          segments in S3 keys and local copies)
temp       number, °C                     -40 .. 80 (DHT22 range), finite
humidity   number, %                      0 .. 100, finite
co         number                         0 .. 100, finite
lpg        number                         0 .. 100, finite
smoke      number                         0 .. 100, finite
light      boolean                        true / false (not 0/1)
motion     boolean                        true / false (not 0/1)
========== ============================== =========================================

Payloads larger than :data:`MAX_PAYLOAD_BYTES` are refused before parsing.
Unknown extra keys are ignored (devices may grow fields).  Integers are
accepted where numbers are expected and become floats.

Reasons (:data:`REASONS`; the first problem found is reported):

================= ==========================================================
reason            when
================= ==========================================================
too_large         more than :data:`MAX_PAYLOAD_BYTES` bytes
invalid_json      not JSON (truncated, not UTF-8, nested beyond 1024 levels)
not_finite        ``NaN``/``Infinity`` literals or numbers that overflow a
                  double (``1e999``): JSON cannot carry them; or a non-finite
                  value handed to :func:`make_reading`
not_an_object     JSON, but not an object
missing_field     ``data``, ``device_id``, ``ts`` or a sensor field absent
wrong_type        e.g. a string for a number, ``0``/``1`` for a boolean
bad_device_id     empty, over 64 characters, a character outside the set, or
                  only dots (``.``, ``..``: a device id is an S3 key segment)
bad_timestamp     before 2000, more than a day ahead (milliseconds are named)
topic_mismatch    the topic is not ``iot/<device_id>/telemetry``
out_of_range      a sensor value outside the table above
================= ==========================================================

:func:`make_reading` applies the same checks to values already parsed (the
CSV loader uses it), so a file row and an MQTT payload are judged alike.
Speed: a valid payload is checked in one expression and built without the
frozen dataclass' ``__init__`` (``bench/decode.py``: well over 100k/s a core).  A *glitch*
(temperature exactly 0.0 with humidity below 5 %, as the real file holds)
is valid input, but :func:`is_glitch` flags it so that models skip it.

>>> r = decode_payload(b'{"data": {"co": 0.0049, "humidity": 51.0, "light": false, "lpg": 0.0076,'
...                    b' "motion": false, "smoke": 0.0204, "temp": 22.7},'
...                    b' "device_id": "b8:27:eb:bf:9d:51", "ts": 1594512094.3859746}')
>>> r.device, r.temp, r.light
('b8:27:eb:bf:9d:51', 22.7, False)
>>> decode_payload(encode(r)) == r
True
>>> try:
...     decode_payload(b'{"data": {}, "device_id": "x", "ts": 1594512094}')
... except InvalidReading as e:
...     print(e.reason, "-", e)
missing_field - field 'data.co' is missing
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

import orjson

__all__ = [
    "FIELDS",
    "MAX_DEVICE_ID_LENGTH",
    "MAX_PAYLOAD_BYTES",
    "REASONS",
    "RANGES",
    "InvalidReading",
    "Reading",
    "decode_payload",
    "device_from_topic",
    "encode",
    "is_glitch",
    "make_reading",
    "topic_for",
]

MAX_PAYLOAD_BYTES = 4096
MAX_DEVICE_ID_LENGTH = 64
MIN_TS = 946_684_800.0  # 2000-01-01T00:00:00Z
FUTURE_SLACK_S = 86_400.0
NUMERIC = ("co", "humidity", "lpg", "smoke", "temp")
BOOLEAN = ("light", "motion")
FIELDS = ("ts", "device", "co", "humidity", "light", "lpg", "motion", "smoke", "temp")
RANGES: dict[str, tuple[float, float]] = {
    "temp": (-40.0, 80.0),
    "humidity": (0.0, 100.0),
    "co": (0.0, 100.0),
    "lpg": (0.0, 100.0),
    "smoke": (0.0, 100.0),
}
REASONS = (
    "too_large",
    "invalid_json",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "not_finite",
    "out_of_range",
    "bad_timestamp",
    "bad_device_id",
    "topic_mismatch",
)
# Dots-only ids ("." and "..") are refused: the id is a segment of S3 keys
# (models/<app>/<device>/...) and of the paths their local copies are written to.
_DEVICE_RE = re.compile(rf"(?!\.+\Z)[A-Za-z0-9:._-]{{1,{MAX_DEVICE_ID_LENGTH}}}")
_device_re_ok = _DEVICE_RE.fullmatch
_GOOD_DEVICES: set[str] = set()  # ids already found valid: a set lookup instead of the regex
_GOOD_DEVICES_MAX = 50_000


def _device_ok(device: str) -> bool:
    """True when ``device`` is a valid id (remembering up to 50,000 valid ones)."""
    if device in _GOOD_DEVICES:
        return True
    if _device_re_ok(device) is None:
        return False
    if len(_GOOD_DEVICES) < _GOOD_DEVICES_MAX:
        _GOOD_DEVICES.add(device)
    return True


_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError
_time = time.time


class InvalidReading(ValueError):
    """A payload that is not a valid reading.

    ``reason`` is one of :data:`REASONS` (safe for metric labels and keys);
    ``str(exc)`` says what is wrong in words a person can act on.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Reading:
    """One validated telemetry reading of one device (temperature in °C)."""

    ts: float
    device: str
    co: float
    humidity: float
    light: bool
    lpg: float
    motion: bool
    smoke: float
    temp: float

    def to_payload(self) -> dict:
        return {
            "data": {
                "co": self.co,
                "humidity": self.humidity,
                "light": self.light,
                "lpg": self.lpg,
                "motion": self.motion,
                "smoke": self.smoke,
                "temp": self.temp,
            },
            "device_id": self.device,
            "ts": self.ts,
        }


class _Unfrozen:
    """A settable object with :class:`Reading`'s exact slot layout.

    :func:`_build` fills one and turns it into a ``Reading`` by assigning
    ``__class__`` (allowed between identical slot layouts): the result is a real,
    frozen ``Reading``, made twice as fast as through the frozen ``__init__``,
    which calls ``object.__setattr__`` once per field.
    """

    __slots__ = Reading.__slots__  # type: ignore[attr-defined]

    def __init__(self, ts, device, co, humidity, light, lpg, motion, smoke, temp) -> None:  # noqa: ANN001
        self.ts = ts
        self.device = device
        self.co = co
        self.humidity = humidity
        self.light = light
        self.lpg = lpg
        self.motion = motion
        self.smoke = smoke
        self.temp = temp


def _build(
    ts: float,
    device: str,
    co: float,
    humidity: float,
    light: bool,
    lpg: float,
    motion: bool,
    smoke: float,
    temp: float,
) -> Reading:
    """``Reading(...)`` for values already validated, without the frozen dataclass' slow ``__init__``."""
    r = _Unfrozen(ts, device, co, humidity, light, lpg, motion, smoke, temp)
    r.__class__ = Reading  # type: ignore[assignment]
    return r  # type: ignore[return-value]


def encode(reading: Reading) -> bytes:
    """Compact JSON in the devices' payload format (the Kinesis record's data)."""
    return orjson.dumps(reading.to_payload())


def topic_for(device: str) -> str:
    """``iot/<device>/telemetry``."""
    return f"iot/{device}/telemetry"


def device_from_topic(topic: str) -> str | None:
    """The device id in ``iot/<device>/telemetry``, or None for another shape."""
    parts = topic.split("/")
    if len(parts) == 3 and parts[0] == "iot" and parts[2] == "telemetry":
        return parts[1]
    return None


def _missing(prefix: str, key: str) -> InvalidReading:
    return InvalidReading("missing_field", f"field '{prefix}{key}' is missing")


def _check_number(key: str, value: object, prefix: str = "data.") -> float:
    """Validate one numeric sensor field (type, finiteness, range); return it as a float."""
    if value.__class__ is float:
        pass
    elif value.__class__ is int:
        value = float(value)  # type: ignore[arg-type]
    else:
        raise InvalidReading(
            "wrong_type",
            f"field '{prefix}{key}' must be a number, got {type(value).__name__} {value!r:.40}",
        )
    if not math.isfinite(value):  # type: ignore[arg-type]
        raise InvalidReading("not_finite", f"field '{prefix}{key}' is {value!r}; it must be finite")
    lo, hi = RANGES[key]
    if not lo <= value <= hi:  # type: ignore[operator]
        raise InvalidReading(
            "out_of_range", f"field '{prefix}{key}' = {value!r} is outside [{lo:g}, {hi:g}]"
        )
    return value  # type: ignore[return-value]


def _check_boolean(key: str, value: object, prefix: str = "data.") -> bool:
    if value is True or value is False:
        return value
    raise InvalidReading(
        "wrong_type", f"field '{prefix}{key}' must be true or false (not 0/1), got {value!r:.40}"
    )


def _check_device(device: object, key: str = "device_id") -> str:
    if device.__class__ is not str:
        raise InvalidReading(
            "wrong_type", f"field '{key}' must be a string, got {type(device).__name__}"
        )
    if not _device_ok(device):
        raise InvalidReading(
            "bad_device_id",
            f"{key} {device[:80]!r} must be 1..{MAX_DEVICE_ID_LENGTH} characters of "  # type: ignore[index]
            "A-Z a-z 0-9 : . _ -, not only dots",
        )
    return device  # type: ignore[return-value]


def _check_ts(ts: object, now: float | None) -> float:
    if ts.__class__ is int:
        ts = float(ts)  # type: ignore[arg-type]
    elif ts.__class__ is not float:
        raise InvalidReading(
            "wrong_type",
            f"field 'ts' must be a number (epoch seconds), got {type(ts).__name__} {ts!r:.40}",
        )
    if not math.isfinite(ts):  # type: ignore[arg-type]
        raise InvalidReading("not_finite", f"field 'ts' is {ts!r}; it must be finite")
    limit = (_time() if now is None else now) + FUTURE_SLACK_S
    if not MIN_TS <= ts <= limit:  # type: ignore[operator]
        hint = ""
        if ts > limit and MIN_TS <= ts / 1000.0 <= limit:  # type: ignore[operator]
            hint = "; it looks like milliseconds, send seconds"
        raise InvalidReading(
            "bad_timestamp",
            f"ts = {ts!r} is not a plausible epoch in seconds (2000-01-01 .. now + 1 day){hint}",
        )
    return ts  # type: ignore[return-value]


def make_reading(
    ts: object,
    device: object,
    co: object,
    humidity: object,
    light: object,
    lpg: object,
    motion: object,
    smoke: object,
    temp: object,
    *,
    now: float | None = None,
    prefix: str = "",
) -> Reading:
    """Validate already-parsed values (e.g. a CSV row) with the very checks of :func:`decode_payload`.

    ``prefix`` is put before sensor field names in messages (``"data."`` for payloads).

    >>> make_reading(1594512094.38, "b8:27:eb:bf:9d:51", 0.005, 51.0, False, 0.0076, False, 0.02, 22.7).temp
    22.7
    >>> make_reading(1594512094.38, "dev", 0.005, 51.0, 1, 0.0076, False, 0.02, 22.7)
    Traceback (most recent call last):
    ...
    telemetry.reading.InvalidReading: field 'light' must be true or false (not 0/1), got 1
    """
    device = _check_device(device, "device" if not prefix else "device_id")
    ts = _check_ts(ts, now)
    return Reading(
        ts,
        device,
        _check_number("co", co, prefix),
        _check_number("humidity", humidity, prefix),
        _check_boolean("light", light, prefix),
        _check_number("lpg", lpg, prefix),
        _check_boolean("motion", motion, prefix),
        _check_number("smoke", smoke, prefix),
        _check_number("temp", temp, prefix),
    )


_NON_FINITE_LITERAL = re.compile(
    rb"(?<![A-Za-z0-9_\"])-?(?:NaN|Infinity|inf|nan)(?![A-Za-z0-9_\"])"
)


def _invalid_json(raw: bytes | str, exc: Exception) -> InvalidReading:
    text = raw.encode("utf-8", "replace") if isinstance(raw, str) else bytes(raw)
    if "infinity" in str(exc) or _NON_FINITE_LITERAL.search(text):
        return InvalidReading(
            "not_finite",
            f"payload holds a non-finite number (NaN, Infinity or one too large for a double), "
            f"which JSON cannot carry: {exc}",
        )
    return InvalidReading("invalid_json", f"payload is not valid JSON: {exc}")


def _decode_checked(obj: object, topic: str | None, now: float | None) -> Reading:
    """The careful path: find the first thing wrong with a parsed payload, or build the reading."""
    if obj.__class__ is not dict:
        raise InvalidReading(
            "not_an_object", f"payload must be a JSON object, got {type(obj).__name__}"
        )
    if "data" not in obj:  # type: ignore[operator]
        raise InvalidReading("missing_field", "field 'data' is missing")
    data = obj["data"]  # type: ignore[index]
    if data.__class__ is not dict:
        raise InvalidReading(
            "wrong_type", f"field 'data' must be an object, got {type(data).__name__}"
        )
    if "device_id" not in obj:  # type: ignore[operator]
        raise InvalidReading("missing_field", "field 'device_id' is missing")
    device = _check_device(obj["device_id"])  # type: ignore[index]
    if "ts" not in obj:  # type: ignore[operator]
        raise InvalidReading("missing_field", "field 'ts' is missing")
    ts = _check_ts(obj["ts"], now)  # type: ignore[index]
    if topic is not None and device_from_topic(topic) != device:
        raise InvalidReading(
            "topic_mismatch",
            f"topic {topic[:100]!r} does not match device_id {device!r} "
            "(expected iot/<device_id>/telemetry)",
        )
    values = []
    for key in ("co", "humidity", "light", "lpg", "motion", "smoke", "temp"):
        if key not in data:
            raise _missing("data.", key)
        value = data[key]
        if key in RANGES:
            values.append(_check_number(key, value))
        else:
            values.append(_check_boolean(key, value))
    return Reading(ts, device, *values)


_T_LO, _T_HI = RANGES["temp"]
_H_LO, _H_HI = RANGES["humidity"]
_C_LO, _C_HI = RANGES["co"]
_L_LO, _L_HI = RANGES["lpg"]
_S_LO, _S_HI = RANGES["smoke"]


def _plain_valid(
    ts: float,
    device: str,
    co: float,
    humidity: float,
    lpg: float,
    smoke: float,
    temp: float,
    now: float | None,
) -> bool:
    """True when already-typed values (floats, a str) pass every check; False: ask make_reading why."""
    return (
        MIN_TS <= ts <= (_time() if now is None else now) + FUTURE_SLACK_S
        and _T_LO <= temp <= _T_HI
        and _H_LO <= humidity <= _H_HI
        and _C_LO <= co <= _C_HI
        and _L_LO <= lpg <= _L_HI
        and _S_LO <= smoke <= _S_HI
        and (device in _GOOD_DEVICES or _device_ok(device))
    )


def decode_payload(
    raw: bytes | str, topic: str | None = None, *, now: float | None = None
) -> Reading:
    """Decode and validate one payload; raise :class:`InvalidReading` if it is not a reading.

    ``topic``, when given, must name the same device as the payload.
    ``now`` (seconds since the epoch) bounds future timestamps; default: the clock.

    The common case (a well-formed payload of floats and booleans) is checked
    in one expression; anything it does not accept goes through the careful
    path, which applies the same checks one by one and names the first failure.
    """
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise InvalidReading(
            "too_large", f"payload is {len(raw)} bytes; the limit is {MAX_PAYLOAD_BYTES}"
        )
    try:
        obj = _loads(raw)
    except _JSONDecodeError as exc:
        raise _invalid_json(raw, exc) from None
    try:
        data = obj["data"]
        device = obj["device_id"]
        ts = obj["ts"]
        co = data["co"]
        humidity = data["humidity"]
        light = data["light"]
        lpg = data["lpg"]
        motion = data["motion"]
        smoke = data["smoke"]
        temp = data["temp"]
    except (KeyError, TypeError, IndexError):
        return _decode_checked(obj, topic, now)
    if (
        ts.__class__ is float
        and MIN_TS <= ts <= (_time() if now is None else now) + FUTURE_SLACK_S
        and temp.__class__ is float
        and _T_LO <= temp <= _T_HI
        and humidity.__class__ is float
        and _H_LO <= humidity <= _H_HI
        and co.__class__ is float
        and _C_LO <= co <= _C_HI
        and lpg.__class__ is float
        and _L_LO <= lpg <= _L_HI
        and smoke.__class__ is float
        and _S_LO <= smoke <= _S_HI
        and (light is True or light is False)
        and (motion is True or motion is False)
        and device.__class__ is str
        and (device in _GOOD_DEVICES or _device_ok(device))
        and (topic is None or topic == "iot/" + device + "/telemetry")
        and obj.__class__ is dict
        and data.__class__ is dict
    ):
        return _build(ts, device, co, humidity, light, lpg, motion, smoke, temp)
    return _decode_checked(obj, topic, now)


def is_glitch(reading: Reading) -> bool:
    """A sensor glitch as found in the real file: temperature 0.0 and humidity near 1 %.

    >>> is_glitch(Reading(1.6e9, "d", 0.0, 1.0, False, 0.0, False, 0.0, 0.0))
    True
    """
    return reading.temp == 0.0 and reading.humidity < 5.0

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
device_id  string                         1..64 chars of ``A-Z a-z 0-9 : . _ -``
temp       number, °C                     -40 .. 80 (DHT22 range), finite
humidity   number, %                      0 .. 100, finite
co         number                         0 .. 100, finite
lpg        number                         0 .. 100, finite
smoke      number                         0 .. 100, finite
light      boolean                        true / false (not 0/1)
motion     boolean                        true / false (not 0/1)
========== ============================== =========================================

Payloads larger than :data:`MAX_PAYLOAD_BYTES` are refused before parsing.
Unknown extra keys are ignored (devices may grow fields).  A *glitch*
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
_DEVICE_RE = re.compile(r"[A-Za-z0-9:._-]{1,%d}" % MAX_DEVICE_ID_LENGTH)


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
                "co": self.co, "humidity": self.humidity, "light": self.light, "lpg": self.lpg,
                "motion": self.motion, "smoke": self.smoke, "temp": self.temp,
            },
            "device_id": self.device,
            "ts": self.ts,
        }


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


def _number(data: dict, key: str) -> float:
    try:
        value = data[key]
    except KeyError:
        raise InvalidReading("missing_field", f"field 'data.{key}' is missing") from None
    if value.__class__ is float:
        pass
    elif value.__class__ is int:
        value = float(value)
    else:
        raise InvalidReading(
            "wrong_type", f"field 'data.{key}' must be a number, got {type(value).__name__}"
        )
    lo, hi = RANGES[key]
    if not lo <= value <= hi:
        if math.isfinite(value):
            raise InvalidReading(
                "out_of_range", f"field 'data.{key}' = {value!r} is outside [{lo:g}, {hi:g}]"
            )
        raise InvalidReading("not_finite", f"field 'data.{key}' is {value!r}; it must be finite")
    return value


def _boolean(data: dict, key: str) -> bool:
    try:
        value = data[key]
    except KeyError:
        raise InvalidReading("missing_field", f"field 'data.{key}' is missing") from None
    if value is True or value is False:
        return value
    raise InvalidReading(
        "wrong_type", f"field 'data.{key}' must be true or false, got {value!r:.40}"
    )


def decode_payload(raw: bytes | str, topic: str | None = None, *, now: float | None = None) -> Reading:
    """Decode and validate one payload; raise :class:`InvalidReading` if it is not a reading.

    ``topic``, when given, must name the same device as the payload.
    ``now`` (seconds since the epoch) bounds future timestamps; default: the clock.
    """
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise InvalidReading(
            "too_large", f"payload is {len(raw)} bytes; the limit is {MAX_PAYLOAD_BYTES}"
        )
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidReading("invalid_json", f"payload is not valid JSON: {exc}") from None
    if obj.__class__ is not dict:
        raise InvalidReading("not_an_object", f"payload must be a JSON object, got {type(obj).__name__}")
    data = obj.get("data")
    if data is None:
        raise InvalidReading("missing_field", "field 'data' is missing")
    if data.__class__ is not dict:
        raise InvalidReading("wrong_type", f"field 'data' must be an object, got {type(data).__name__}")
    device = obj.get("device_id")
    if device is None:
        raise InvalidReading("missing_field", "field 'device_id' is missing")
    if device.__class__ is not str:
        raise InvalidReading("wrong_type", f"field 'device_id' must be a string, got {type(device).__name__}")
    if not _DEVICE_RE.fullmatch(device):
        raise InvalidReading(
            "bad_device_id",
            f"device_id {device[:80]!r} must be 1..{MAX_DEVICE_ID_LENGTH} characters of "
            "A-Z a-z 0-9 : . _ -",
        )
    ts = obj.get("ts")
    if ts is None:
        raise InvalidReading("missing_field", "field 'ts' is missing")
    if ts.__class__ is int:
        ts = float(ts)
    elif ts.__class__ is not float:
        raise InvalidReading("wrong_type", f"field 'ts' must be a number (epoch seconds), got {type(ts).__name__}")
    limit = (time.time() if now is None else now) + FUTURE_SLACK_S
    if not MIN_TS <= ts <= limit:
        raise InvalidReading(
            "bad_timestamp",
            f"ts = {ts!r} is not a plausible epoch in seconds (2000-01-01 .. now + 1 day)",
        )
    if topic is not None:
        topic_device = device_from_topic(topic)
        if topic_device != device:
            raise InvalidReading(
                "topic_mismatch",
                f"topic {topic[:100]!r} does not match device_id {device!r} "
                "(expected iot/<device_id>/telemetry)",
            )
    return Reading(
        ts, device, _number(data, "co"), _number(data, "humidity"), _boolean(data, "light"),
        _number(data, "lpg"), _boolean(data, "motion"), _number(data, "smoke"), _number(data, "temp"),
    )


def is_glitch(reading: Reading) -> bool:
    """A sensor glitch as found in the real file: temperature 0.0 and humidity near 1 %.

    >>> is_glitch(Reading(1.6e9, "d", 0.0, 1.0, False, 0.0, False, 0.0, 0.0))
    True
    """
    return reading.temp == 0.0 and reading.humidity < 5.0

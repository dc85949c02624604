"""The reading: one measurement of one device, and its wire formats.

The MQTT payload (and each message a Kinesis record carries, in compact form:
``telemetry.envelope`` packs many into one record) is the devices' own format::

    {"data": {"co": 0.0049, "humidity": 51.0, "light": false, "lpg": 0.0076,
              "motion": false, "smoke": 0.0204, "temp": 22.7},
     "device_id": "b8:27:eb:bf:9d:51", "ts": 1594512094.3859746}

:func:`decode_payload` turns bytes into a :class:`Reading` or raises
:class:`InvalidReading` with a machine ``reason`` (a fixed, small set, safe
as a metric label) and a message a person can act on.

A reading is ``ts``, a device id and **at least one sensor**.  Every sensor
field is optional: absent, ``null`` (or an empty CSV cell) means the device has
no such sensor, or none in this reading; a device's set of sensors may change
from one reading to the next.

========== ============================== =========================================
field      type                           accepted
========== ============================== =========================================
ts         number (seconds since epoch)   2000-01-01 .. now + 1 day, finite
device_id  string                         1..64 chars of ``A-Z a-z 0-9 : . _ -``,
                                          not only dots (``.``/``..`` are path
                                          segments in S3 keys and local copies)
temp       number, °C, optional           -55 .. 125, finite (the span of common
                                          digital sensors: DS18B20 -55..125,
                                          SHT3x -40..125, BME280 -40..85, DHT22
                                          -40..80)
humidity   number, % RH, optional         0 .. 100, finite; up to 5 % RH beyond
                                          either limit is *clipped* to it (see
                                          below)
co         number, optional               0 .. 100, finite
lpg        number, optional               0 .. 100, finite
smoke      number, optional               0 .. 100, finite
light      boolean, optional              true / false (not 0/1)
motion     boolean, optional              true / false (not 0/1)
others     number, optional               any other key of ``data`` named like
                                          ``pressure`` (``[a-z][a-z0-9_]*``, at
                                          most 32 characters, up to 16 of them)
                                          with a finite number: kept in
                                          ``Reading.extra``; the processor uses
                                          the ones its settings declare
========== ============================== =========================================

**Each field is judged on its own.**  A sensor value of the wrong type, not
finite or out of its range is *dropped* from the reading and noted in
``Reading.notes`` as ``(field, reason)``; the reading goes on with its other
fields.  A value a little beyond a physical limit, within the sensor's stated
tolerance, is a saturated sensor, not garbage: it is *clipped* to the limit and
noted as ``(field, "clipped")``.  Tolerances (:data:`TOLERANCE`) come from
datasheets: relative humidity's 5 % RH is the DHT22's (AM2302) maximum error
(Aosong datasheet: ±2 % RH typical, ±5 % max), wider than the SHT31's (±2 %) and
the BME280's (±3 %), so 100.5 % or 102 % in fog is 100 %.

A payload is refused whole (``InvalidReading``, dead-lettered by the bridge)
only when nothing usable is left: not JSON, not an object, no ``data`` object,
a bad or missing ``ts`` or device id, a topic naming another device, or no
valid sensor value at all (``no_sensor``, whose message names each field's
problem).  Payloads larger than :data:`MAX_PAYLOAD_BYTES` are refused before
parsing.  Integers are accepted where numbers are expected and become floats.

Reasons (:data:`REASONS`: a payload's; :data:`FIELD_REASONS`: a dropped field's):

================= ==========================================================
reason            when
================= ==========================================================
too_large         more than :data:`MAX_PAYLOAD_BYTES` bytes (a batch:
                  :data:`MAX_MESSAGE_BYTES`; a reading of it whose values
                  validation changed: :data:`MAX_PAYLOAD_BYTES` alone)
invalid_json      not JSON (truncated, not UTF-8, nested beyond 1024 levels)
not_finite        ``NaN``/``Infinity`` literals or numbers that overflow a
                  double (``1e999``): JSON cannot carry them (the payload);
                  a non-finite value handed to :func:`make_reading` (a field)
not_an_object     JSON, but not an object
missing_field     ``data``, ``device_id`` or ``ts`` absent
wrong_type        e.g. a string for a number, ``0``/``1`` for a boolean
                  (a field, or ``data``/``ts``/``device_id``)
bad_device_id     empty, over 64 characters, a character outside the set, or
                  only dots (``.``, ``..``: a device id is an S3 key segment)
bad_timestamp     before 2000, more than a day ahead (milliseconds are named)
topic_mismatch    the topic is not ``iot/<device_id>/telemetry``
bad_batch         an array with no reading, or more than
                  :data:`MAX_BATCH_READINGS` (the message)
out_of_range      a sensor value outside the table above, beyond tolerance
                  (a field)
no_sensor         no sensor value left: none sent, all ``null``, or every one
                  dropped
================= ==========================================================

**A device message may be a batch**: a JSON array of readings (a device that
buffers a minute of readings sends one message).  :func:`decode_message` judges
each reading of it on its own, exactly as :func:`decode_payload` judges a single
one, and returns one part per reading (:class:`Decoded`): the reading, or why it
is refused.  A batch holds 1 to :data:`MAX_BATCH_READINGS` readings in at most
:data:`MAX_MESSAGE_BYTES` (AWS IoT Core's largest message); otherwise it is
refused whole (``bad_batch``, ``too_large``).  The bridge and the processor both
call :func:`decode_message`, so a reading is judged alike wherever it is read.

:func:`make_reading` applies the same checks to values already parsed (the
CSV loader uses it), so a file row and an MQTT payload are judged alike.
Each field is judged **once**, in one pass over the payload: a plain value (a
float within its range, a boolean) is accepted inline, and only a value that is
not goes to the per-field check that clips it or names what is wrong; no fast
path is tried first and then redone by a careful one (``bench/decode.py``: well
over 100k/s a core, all seven sensors or some).  Readings are built without the
frozen dataclass' ``__init__``.  A *glitch*
(temperature exactly 0.0 with humidity below 5 %, as the real file holds)
is valid input, but :func:`is_glitch` flags it so that models skip it.

>>> r = decode_payload(b'{"data": {"co": 0.0049, "humidity": 51.0, "light": false, "lpg": 0.0076,'
...                    b' "motion": false, "smoke": 0.0204, "temp": 22.7},'
...                    b' "device_id": "b8:27:eb:bf:9d:51", "ts": 1594512094.3859746}')
>>> r.device, r.temp, r.light
('b8:27:eb:bf:9d:51', 22.7, False)
>>> decode_payload(encode(r)) == r
True
>>> th = decode_payload(b'{"data": {"temp": 21.5, "humidity": 100.5, "co": "high"},'
...                     b' "device_id": "a1", "ts": 1594512094}')
>>> th.temp, th.humidity, th.co, th.notes
(21.5, 100.0, None, (('co', 'wrong_type'), ('humidity', 'clipped')))
>>> try:
...     decode_payload(b'{"data": {"temp": null}, "device_id": "x", "ts": 1594512094}')
... except InvalidReading as e:
...     print(e.reason, "-", e)
no_sensor - no usable sensor value: data holds none of co, humidity, light, lpg, motion, smoke, temp
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

__all__ = [
    "FIELDS",
    "FIELD_REASONS",
    "MAX_DEVICE_ID_LENGTH",
    "MAX_BATCH_READINGS",
    "MAX_EXTRA_FIELDS",
    "MAX_MESSAGE_BYTES",
    "MAX_PAYLOAD_BYTES",
    "REASONS",
    "RANGES",
    "SENSORS",
    "TOLERANCE",
    "Decoded",
    "InvalidReading",
    "Reading",
    "decode_message",
    "decode_payload",
    "device_from_topic",
    "encode",
    "is_glitch",
    "make_reading",
    "topic_for",
]

MAX_PAYLOAD_BYTES = 4096
MAX_MESSAGE_BYTES = 128 * 1024  # a batch: AWS IoT Core's largest message
MAX_BATCH_READINGS = 1000
MAX_DEVICE_ID_LENGTH = 64
MIN_TS = 946_684_800.0  # 2000-01-01T00:00:00Z
FUTURE_SLACK_S = 86_400.0
NUMERIC = ("co", "humidity", "lpg", "smoke", "temp")
BOOLEAN = ("light", "motion")
SENSORS = ("co", "humidity", "light", "lpg", "motion", "smoke", "temp")
FIELDS = ("ts", "device", *SENSORS)
RANGES: dict[str, tuple[float, float]] = {
    "temp": (-55.0, 125.0),
    "humidity": (0.0, 100.0),
    "co": (0.0, 100.0),
    "lpg": (0.0, 100.0),
    "smoke": (0.0, 100.0),
}
# Beyond a limit by at most this much is a saturated sensor: clipped to the limit (docstring).
TOLERANCE: dict[str, float] = {"humidity": 5.0}
FIELD_REASONS = ("wrong_type", "not_finite", "out_of_range")
MAX_EXTRA_FIELDS = 16
_EXTRA_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
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
    "no_sensor",
    "bad_batch",
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
    """One validated telemetry reading of one device (temperature in °C).

    A sensor the reading does not carry is ``None``.  ``extra`` holds other numeric
    fields of the payload as sorted ``(name, value)`` pairs; ``notes`` what validation
    did to the payload's fields, as ``(field, reason)``: a :data:`FIELD_REASONS` value
    for a dropped field, ``"clipped"`` for one brought back to its limit.

    >>> r = Reading(1594512094.0, "a1", temp=21.5, extra=(("pressure", 1013.2),))
    >>> r.sensors(), r.value("pressure"), r.value("humidity")
    (('temp', 'pressure'), 1013.2, None)
    """

    ts: float
    device: str
    co: float | None = None
    humidity: float | None = None
    light: bool | None = None
    lpg: float | None = None
    motion: bool | None = None
    smoke: float | None = None
    temp: float | None = None
    extra: tuple[tuple[str, float], ...] = ()
    notes: tuple[tuple[str, str], ...] = ()

    def value(self, name: str) -> float | None:
        """The value of sensor or extra field ``name`` as a float (booleans 0/1), or None."""
        if name in _SENSOR_SET:
            v = getattr(self, name)
            return None if v is None else float(v)
        for key, v in self.extra:
            if key == name:
                return v
        return None

    def sensors(self) -> tuple[str, ...]:
        """The names of the sensors and extra fields this reading carries."""
        return tuple(k for k in SENSORS if getattr(self, k) is not None) + tuple(
            k for k, _ in self.extra
        )

    def to_payload(self) -> dict[str, object]:
        """The devices' payload as a dict: the sensors present, then the extra fields."""
        data: dict[str, object] = {
            "co": self.co,
            "humidity": self.humidity,
            "light": self.light,
            "lpg": self.lpg,
            "motion": self.motion,
            "smoke": self.smoke,
            "temp": self.temp,
        }
        if (
            self.co is None
            or self.humidity is None
            or self.light is None
            or self.lpg is None
            or self.motion is None
            or self.smoke is None
            or self.temp is None
        ):  # some sensors absent: leave them out (``None in data.values()`` is slower)
            data = {k: v for k, v in data.items() if v is not None}
        if self.extra:
            data.update(self.extra)
        return {"data": data, "device_id": self.device, "ts": self.ts}


_SENSOR_SET = frozenset(SENSORS)


class _Unfrozen:
    """A settable object with :class:`Reading`'s exact slot layout.

    :func:`_build` fills one and turns it into a ``Reading`` by assigning
    ``__class__`` (allowed between identical slot layouts): the result is a real,
    frozen ``Reading``, made twice as fast as through the frozen ``__init__``,
    which calls ``object.__setattr__`` once per field.
    """

    __slots__ = Reading.__slots__

    def __init__(
        self,
        ts: float,
        device: str,
        co: float | None,
        humidity: float | None,
        light: bool | None,
        lpg: float | None,
        motion: bool | None,
        smoke: float | None,
        temp: float | None,
    ) -> None:
        self.extra: tuple[tuple[str, float], ...] = ()
        self.notes: tuple[tuple[str, str], ...] = ()
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
    co: float | None,
    humidity: float | None,
    light: bool | None,
    lpg: float | None,
    motion: bool | None,
    smoke: float | None,
    temp: float | None,
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


def _check_number(key: str, value: object, prefix: str = "data.") -> tuple[float, bool]:
    """Validate one numeric sensor field (type, finiteness, range, tolerance).

    Returns the value as a float and whether it was clipped to its range; raises
    :class:`InvalidReading` (a :data:`FIELD_REASONS` reason) for a value to drop.
    """
    if value.__class__ is float:
        pass
    elif value.__class__ is int:
        try:
            value = float(value)
        except OverflowError:  # beyond a double (only an already-parsed int can be)
            lo, hi = RANGES[key]
            raise InvalidReading(
                "out_of_range", f"field '{prefix}{key}' = {value!r:.40} is outside [{lo:g}, {hi:g}]"
            ) from None
    else:
        raise InvalidReading(
            "wrong_type",
            f"field '{prefix}{key}' must be a number, got {type(value).__name__} {value!r:.40}",
        )
    if not math.isfinite(value):
        raise InvalidReading("not_finite", f"field '{prefix}{key}' is {value!r}; it must be finite")
    lo, hi = RANGES[key]
    if lo <= value <= hi:
        return value, False
    tolerance = TOLERANCE.get(key, 0.0)
    if lo - tolerance <= value < lo:
        return lo, True
    if hi < value <= hi + tolerance:
        return hi, True
    raise InvalidReading(
        "out_of_range", f"field '{prefix}{key}' = {value!r} is outside [{lo:g}, {hi:g}]"
    )


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
            f"{key} {device[:80]!r} must be 1..{MAX_DEVICE_ID_LENGTH} characters of "
            "A-Z a-z 0-9 : . _ -, not only dots",
        )
    return device


def _check_ts(ts: object, now: float | None) -> float:
    if ts.__class__ is int:
        if not -1e18 < ts < 1e18:
            raise InvalidReading(
                "bad_timestamp",
                f"ts = {ts!r:.40} is not a plausible epoch in seconds (2000-01-01 .. now + 1 day)",
            )
        ts = float(ts)
    elif ts.__class__ is not float:
        raise InvalidReading(
            "wrong_type",
            f"field 'ts' must be a number (epoch seconds), got {type(ts).__name__} {ts!r:.40}",
        )
    if not math.isfinite(ts):
        raise InvalidReading("not_finite", f"field 'ts' is {ts!r}; it must be finite")
    limit = (_time() if now is None else now) + FUTURE_SLACK_S
    if not MIN_TS <= ts <= limit:
        hint = ""
        if ts > limit and MIN_TS <= ts / 1000.0 <= limit:
            hint = "; it looks like milliseconds, send seconds"
        raise InvalidReading(
            "bad_timestamp",
            f"ts = {ts!r} is not a plausible epoch in seconds (2000-01-01 .. now + 1 day){hint}",
        )
    return ts


# sensor -> (position among Reading's sensor arguments, range or None for a boolean)
_SLOTS: dict[str, tuple[int, tuple[float, float] | None]] = {
    key: (i, RANGES.get(key)) for i, key in enumerate(SENSORS)
}


def _judge_sensors(
    fields: Iterable[tuple[str, object]], prefix: str
) -> tuple[list[object], tuple[tuple[str, float], ...], tuple[tuple[str, str], ...], list[str]]:
    """Judge each field of a reading's data on its own, each **once** (module docstring).

    A plain value (a float within its range, a boolean) is accepted inline; only a
    value that is not is handed to :func:`_check_number` / :func:`_check_boolean`,
    which clip it or name what is wrong.  Returns the seven sensor values in
    :data:`SENSORS` order (``None``: absent), the extra numeric fields, the notes
    (dropped and clipped fields, sorted) and, for a message, what was wrong with
    each dropped one.
    """
    values: list[object] = [None, None, None, None, None, None, None]
    extra: list[tuple[str, float]] | None = None
    notes: list[tuple[str, str]] | None = None
    problems: list[str] = _NO_PROBLEMS
    slots = _SLOTS
    for key, value in fields:
        slot = slots.get(key)
        if slot is not None:
            i, bounds = slot
            if bounds is None:
                if value is True or value is False:
                    values[i] = value
                    continue
            elif value.__class__ is float and bounds[0] <= value <= bounds[1]:
                values[i] = value
                continue
            if value is None:
                continue  # no such sensor in this reading
            if notes is None:
                notes, problems = [], []
            try:  # not plain: clip it or find out why it is dropped
                if bounds is None:
                    values[i] = _check_boolean(key, value, prefix)
                else:
                    values[i], clipped = _check_number(key, value, prefix)
                    if clipped:
                        notes.append((key, "clipped"))
            except InvalidReading as exc:
                notes.append((key, exc.reason))
                problems.append(str(exc))
        elif (
            (
                (value.__class__ is float and math.isfinite(value))
                or (value.__class__ is int and -1e300 < value < 1e300)
            )
            and key.__class__ is str
            and _EXTRA_NAME.fullmatch(key)
        ):
            if extra is None:
                extra = []
            if len(extra) < MAX_EXTRA_FIELDS:
                extra.append((key, float(value)))
    return (
        values,
        tuple(sorted(extra)) if extra else (),
        tuple(sorted(notes)) if notes else (),
        problems,
    )


_NO_PROBLEMS: list[str] = []  # shared, never appended to


def _no_sensor(prefix: str, problems: list[str]) -> InvalidReading:
    if problems:
        return InvalidReading("no_sensor", "no usable sensor value: " + "; ".join(problems))
    return InvalidReading(
        "no_sensor",
        f"no usable sensor value: {prefix.rstrip('.') or 'the reading'} holds none of "
        + ", ".join(SENSORS),
    )


def _reading(
    ts: float,
    device: str,
    values: list[object],
    extras: tuple[tuple[str, float], ...],
    notes: tuple[tuple[str, str], ...],
    prefix: str,
    problems: list[str],
) -> Reading:
    """The reading of judged fields, or :class:`InvalidReading` ``no_sensor`` when none is left."""
    if extras or notes:
        if not extras and values == _NO_VALUES:
            raise _no_sensor(prefix, problems)
        r = _Unfrozen(ts, device, *values)  # type: ignore[arg-type]
        r.extra = extras
        r.notes = notes
        r.__class__ = Reading  # type: ignore[assignment]
        return r  # type: ignore[return-value]
    if values == _NO_VALUES:
        raise _no_sensor(prefix, problems)
    return _build(ts, device, *values)  # type: ignore[arg-type]


_NO_VALUES: list[object] = [None] * 7


def make_reading(
    ts: object,
    device: object,
    co: object = None,
    humidity: object = None,
    light: object = None,
    lpg: object = None,
    motion: object = None,
    smoke: object = None,
    temp: object = None,
    *,
    extra: Iterable[tuple[str, object]] = (),
    now: float | None = None,
    prefix: str = "",
) -> Reading:
    """Validate already-parsed values (e.g. a CSV row) with the very checks of :func:`decode_payload`.

    A sensor given as ``None`` is absent; a bad one is dropped and noted, a saturated one
    clipped and noted; ``extra`` are other numeric fields as ``(name, value)`` pairs.
    ``prefix`` is put before sensor field names in messages (``"data."`` for payloads).

    >>> make_reading(1594512094.38, "b8:27:eb:bf:9d:51", 0.005, 51.0, False, 0.0076, False, 0.02, 22.7).temp
    22.7
    >>> r = make_reading(1594512094.38, "dev", humidity=51.0, light=1, temp=22.7)
    >>> r.light, r.notes
    (None, (('light', 'wrong_type'),))
    >>> make_reading(1594512094.38, "dev", light=1)
    Traceback (most recent call last):
    ...
    telemetry.reading.InvalidReading: no usable sensor value: field 'light' must be true or false (not 0/1), got 1
    """
    device = _check_device(device, "device" if not prefix else "device_id")
    ts = _check_ts(ts, now)
    judged = _judge_sensors(
        (
            ("co", co),
            ("humidity", humidity),
            ("light", light),
            ("lpg", lpg),
            ("motion", motion),
            ("smoke", smoke),
            ("temp", temp),
            *((k, v) for k, v in extra if k not in _SENSOR_SET),  # a sensor is not an extra
        ),
        prefix,
    )
    values, extras, notes, problems = judged
    return _reading(ts, device, values, extras, notes, prefix, problems)


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


def _judge_object(obj: object, topic: str | None, now: float | None) -> Reading:
    """Judge one parsed reading: each field once, in one pass; the reading, or the first
    thing that leaves nothing usable (:class:`InvalidReading`)."""
    if obj.__class__ is not dict:
        raise InvalidReading(
            "not_an_object", f"payload must be a JSON object, got {type(obj).__name__}"
        )
    data = obj.get("data", _MISSING)
    if data.__class__ is not dict:
        if data is _MISSING:
            raise InvalidReading("missing_field", "field 'data' is missing")
        raise InvalidReading(
            "wrong_type", f"field 'data' must be an object, got {type(data).__name__}"
        )
    device = obj.get("device_id", _MISSING)
    if device.__class__ is not str or device not in _GOOD_DEVICES:
        if device is _MISSING:
            raise InvalidReading("missing_field", "field 'device_id' is missing")
        device = _check_device(device)
    ts = obj.get("ts", _MISSING)
    if not (
        ts.__class__ is float and MIN_TS <= ts <= (_time() if now is None else now) + FUTURE_SLACK_S
    ):
        if ts is _MISSING:
            raise InvalidReading("missing_field", "field 'ts' is missing")
        ts = _check_ts(ts, now)
    if topic is not None and topic != "iot/" + device + "/telemetry":
        raise InvalidReading(
            "topic_mismatch",
            f"topic {topic[:100]!r} does not match device_id {device!r} "
            "(expected iot/<device_id>/telemetry)",
        )
    values, extras, notes, problems = _judge_sensors(data.items(), "data.")
    return _reading(ts, device, values, extras, notes, "data.", problems)


_MISSING = object()


def _too_large(raw: bytes | str, limit: int, what: str = "payload") -> InvalidReading:
    return InvalidReading("too_large", f"{what} is {len(raw)} bytes; the limit is {limit}")


def decode_payload(
    raw: bytes | str, topic: str | None = None, *, now: float | None = None
) -> Reading:
    """Decode and validate one reading; raise :class:`InvalidReading` if it is not one.

    ``topic``, when given, must name the same device as the payload.
    ``now`` (seconds since the epoch) bounds future timestamps; default: the clock.
    Each field is judged once (module docstring); a batch is :func:`decode_message`'s.
    """
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise _too_large(raw, MAX_PAYLOAD_BYTES)
    try:
        obj = _loads(raw)
    except _JSONDecodeError as exc:
        raise _invalid_json(raw, exc) from None
    return _judge_object(obj, topic, now)


@dataclass(frozen=True, slots=True)
class Decoded:
    """A device message, decoded: one part per reading it carries, in order.

    ``parts[i]`` is the :class:`Reading`, or the :class:`InvalidReading` saying why that
    reading is refused; a message refused whole (not JSON, too large, an empty batch)
    has one part.  ``items`` holds a batch's parsed elements (``None``: one reading).
    """

    parts: list[Reading | InvalidReading]
    raw: bytes | str
    items: list[object] | None = None

    @property
    def batch(self) -> bool:
        """True when the message was an array of readings."""
        return self.items is not None

    def payload(self, i: int) -> bytes:
        """Part ``i`` as bytes: the message itself, or a batch element in compact JSON."""
        if self.items is None:
            return self.raw.encode() if isinstance(self.raw, str) else bytes(self.raw)
        return orjson.dumps(self.items[i])


def decode_message(
    raw: bytes | str, topic: str | None = None, *, now: float | None = None
) -> Decoded:
    """Decode a device message: one reading (an object) or a batch (an array of them).

    Each reading of a batch is judged on its own, exactly as :func:`decode_payload` judges
    a single one (``topic`` must name each reading's device); a bad one does not spoil
    the others.  A batch holds 1 to :data:`MAX_BATCH_READINGS` readings in at most
    :data:`MAX_MESSAGE_BYTES`; a reading of it whose values validation changed must
    still fit :data:`MAX_PAYLOAD_BYTES` alone (it is forwarded as it was sent).

    >>> d = decode_message(b'[{"data": {"temp": 21.5}, "device_id": "a1", "ts": 1594512094.0},'
    ...                    b' {"data": {"temp": 900.0}, "device_id": "a1", "ts": 1594512099.0}]')
    >>> [p.temp if isinstance(p, Reading) else p.reason for p in d.parts]
    [21.5, 'no_sensor']
    >>> d.payload(1)
    b'{"data":{"temp":900.0},"device_id":"a1","ts":1594512099.0}'
    """
    size = len(raw)
    if size > MAX_PAYLOAD_BYTES and (size > MAX_MESSAGE_BYTES or raw.lstrip()[:1] not in _ARRAY):
        limit = MAX_MESSAGE_BYTES if size > MAX_MESSAGE_BYTES else MAX_PAYLOAD_BYTES
        return Decoded([_too_large(raw, limit, "message")], raw)
    try:
        obj = _loads(raw)
    except _JSONDecodeError as exc:
        return Decoded([_invalid_json(raw, exc)], raw)
    if obj.__class__ is not list:
        try:
            return Decoded([_judge_object(obj, topic, now)], raw)
        except InvalidReading as exc:
            return Decoded([exc], raw)
    if not obj or len(obj) > MAX_BATCH_READINGS:
        what = "holds no reading" if not obj else f"holds {len(obj)} readings"
        return Decoded(
            [InvalidReading("bad_batch", f"the batch {what}; send 1..{MAX_BATCH_READINGS}")], raw
        )
    parts: list[Reading | InvalidReading] = []
    for item in obj:
        try:
            r = _judge_object(item, topic, now)
            if r.notes and len(orjson.dumps(item)) > MAX_PAYLOAD_BYTES:
                raise _too_large(orjson.dumps(item), MAX_PAYLOAD_BYTES, "reading")
            parts.append(r)
        except InvalidReading as exc:
            parts.append(exc)
    return Decoded(parts, raw, obj)


_ARRAY = (b"[", "[")
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
    """True when already-typed values (floats, a str: a full CSV row) pass every check;
    False: ask :func:`make_reading` why (the CSV reader's fast path)."""
    return (
        MIN_TS <= ts <= (_time() if now is None else now) + FUTURE_SLACK_S
        and _T_LO <= temp <= _T_HI
        and _H_LO <= humidity <= _H_HI
        and _C_LO <= co <= _C_HI
        and _L_LO <= lpg <= _L_HI
        and _S_LO <= smoke <= _S_HI
        and _device_ok(device)
    )


def is_glitch(reading: Reading) -> bool:
    """A sensor glitch as found in the real file: temperature 0.0 and humidity near 1 %.

    >>> is_glitch(Reading(1.6e9, "d", 0.0, 1.0, False, 0.0, False, 0.0, 0.0))
    True
    """
    return reading.temp == 0.0 and reading.humidity is not None and reading.humidity < 5.0

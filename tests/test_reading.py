"""The data contract: a reading is ts, a device id and at least one sensor; each field is
judged on its own (dropped and noted, clipped within tolerance, or kept); every reason a
payload is refused whole, with its message."""

from __future__ import annotations

import math
import re

import orjson
import pytest

from telemetry.reading import (
    FIELD_REASONS,
    MAX_BATCH_READINGS,
    MAX_DEVICE_ID_LENGTH,
    MAX_EXTRA_FIELDS,
    MAX_MESSAGE_BYTES,
    MAX_PAYLOAD_BYTES,
    REASONS,
    SENSORS,
    InvalidReading,
    Reading,
    _judge_object,
    decode_message,
    decode_payload,
    device_from_topic,
    encode,
    is_glitch,
    make_reading,
    topic_for,
)

NOW = 1_600_000_000.0  # a fixed clock for the future-timestamp bound
DEVICE = "b8:27:eb:bf:9d:51"
FULL = {
    "co": 0.004955938648391245,
    "humidity": 51.0,
    "light": False,
    "lpg": 0.00765082227055719,
    "motion": False,
    "smoke": 0.02041127012241292,
    "temp": 22.7,
}


def payload(**changes: object) -> dict:
    """A valid payload dict; ``data_<field>=...`` changes a sensor field, ``drop=...`` removes one."""
    p = {"data": dict(FULL), "device_id": DEVICE, "ts": 1594512094.3859746}
    for key, value in changes.items():
        if key == "drop":
            for name in value:  # type: ignore[union-attr]
                if name.startswith("data."):
                    del p["data"][name[5:]]
                else:
                    del p[name]
        elif key.startswith("data_"):
            p["data"][key[5:]] = value
        else:
            p[key] = value
    return p


def raw(**changes: object) -> bytes:
    return orjson.dumps(payload(**changes))


def device_payload(data: dict, device: str = "a1", ts: float = 1594512094.0) -> bytes:
    return orjson.dumps({"data": data, "device_id": device, "ts": ts})


def rejected(data: bytes | str, topic: str | None = None) -> InvalidReading:
    with pytest.raises(InvalidReading) as info:
        decode_payload(data, topic, now=NOW)
    assert info.value.reason in REASONS
    return info.value


def assert_dropped(r: Reading, field: str, reason: str) -> None:
    """``field`` is absent from ``r`` and noted with ``reason``; every other field survived."""
    assert reason in FIELD_REASONS
    assert getattr(r, field) is None
    assert (field, reason) in r.notes
    for name in SENSORS:
        if name != field:
            assert getattr(r, name) == FULL[name], name


def assert_clipped(r: Reading, field: str, limit: float) -> None:
    assert getattr(r, field) == limit
    assert r.notes == ((field, "clipped"),)


def test_valid_payload_decodes_to_the_reading_and_round_trips() -> None:
    r = decode_payload(raw(), "iot/b8:27:eb:bf:9d:51/telemetry", now=NOW)
    assert r == Reading(
        1594512094.3859746, DEVICE, 0.004955938648391245, 51.0, False,
        0.00765082227055719, False, 0.02041127012241292, 22.7,
    )  # fmt: skip
    assert decode_payload(encode(r), now=NOW) == r
    assert orjson.loads(encode(r)) == payload()


def test_integers_are_accepted_as_numbers_and_become_floats() -> None:
    r = decode_payload(raw(ts=1594512094, data_temp=22, data_humidity=51), now=NOW)
    assert (r.ts, r.temp, r.humidity) == (1594512094.0, 22.0, 51.0)
    assert type(r.ts) is float and type(r.temp) is float


def test_other_numeric_fields_are_kept_as_extras() -> None:
    p = payload()
    p["firmware"] = "1.2"  # outside data: ignored
    p["data"]["pressure"] = 1013.25
    p["data"]["co2"] = 412  # an integer becomes a float
    r = decode_payload(orjson.dumps(p), now=NOW)
    assert r.temp == 22.7 and r.notes == ()
    assert r.extra == (("co2", 412.0), ("pressure", 1013.25))  # sorted pairs
    assert r.value("pressure") == 1013.25 and r.value("altitude") is None
    assert r.sensors() == (*SENSORS, "co2", "pressure")
    assert decode_payload(encode(r), now=NOW) == r
    assert orjson.loads(encode(r))["data"]["pressure"] == 1013.25


@pytest.mark.parametrize(
    "junk",
    [
        {"firmware": "1.2"},
        {"ok": True},  # a boolean is not a number
        {"nested": {"a": 1.0}},
        {"values": [1.0, 2.0]},
        {"gone": None},
        {"Pressure": 1013.0},  # names are lower case
        {"2nd": 1.0},
        {"with-dash": 1.0},
        {"x" * 33: 1.0},  # longer than 32 characters
    ],
)
def test_non_numeric_or_oddly_named_extras_are_ignored(junk: dict) -> None:
    r = decode_payload(raw(**{f"data_{k}": v for k, v in junk.items()}), now=NOW)
    assert r.extra == () and r.notes == ()
    assert r == decode_payload(raw(), now=NOW)


def test_at_most_sixteen_extras_are_kept() -> None:
    many = {f"x{i:02d}": float(i) for i in range(MAX_EXTRA_FIELDS + 4)}
    r = decode_payload(device_payload({"temp": 20.0, **many}), now=NOW)
    assert len(r.extra) == MAX_EXTRA_FIELDS == 16
    assert r.extra == tuple(sorted(many.items()))[:16]  # the first ones, in payload order


def test_payload_over_the_size_bound_is_refused_before_parsing() -> None:
    big = b'{"pad": "' + b"x" * MAX_PAYLOAD_BYTES + b'"}'
    e = rejected(big)
    assert e.reason == "too_large"
    assert f"limit is {MAX_PAYLOAD_BYTES}" in str(e) and str(len(big)) in str(e)


@pytest.mark.parametrize("data", [b"", b"{", b"not json", b'{"data": }', b"\xff\xfe"])
def test_invalid_json(data: bytes) -> None:
    e = rejected(data)
    assert e.reason == "invalid_json"
    assert str(e).startswith("payload is not valid JSON")


@pytest.mark.parametrize("data", [b"[1, 2]", b'"text"', b"42", b"null", b"true"])
def test_not_an_object(data: bytes) -> None:
    e = rejected(data)
    assert e.reason == "not_an_object"
    assert "payload must be a JSON object" in str(e)


@pytest.mark.parametrize("missing", ["data", "device_id", "ts"])
def test_missing_field_is_named(missing: str) -> None:
    e = rejected(raw(drop=[missing]))
    assert e.reason == "missing_field"
    assert str(e) == f"field '{missing}' is missing"


@pytest.mark.parametrize("sensor", SENSORS)
@pytest.mark.parametrize("how", ["absent", "null"])
def test_an_absent_or_null_sensor_is_simply_not_in_the_reading(sensor: str, how: str) -> None:
    data = raw(drop=[f"data.{sensor}"]) if how == "absent" else raw(**{f"data_{sensor}": None})
    r = decode_payload(data, now=NOW)
    assert getattr(r, sensor) is None and r.value(sensor) is None
    assert r.notes == ()  # nothing was wrong: the device has no such sensor now
    assert sensor not in r.sensors() and len(r.sensors()) == 6
    for name in SENSORS:
        if name != sensor:
            assert getattr(r, name) == FULL[name]
    assert sensor not in orjson.loads(encode(r))["data"]  # encode omits it
    assert decode_payload(encode(r), now=NOW) == r


def test_a_temperature_and_humidity_device() -> None:
    # DHT22 / SHT31 / BME280 boards: the most common environment sensors
    data = device_payload({"temp": 21.5, "humidity": 40.0})
    r = decode_payload(data, "iot/a1/telemetry", now=NOW)
    assert r == Reading(1594512094.0, "a1", humidity=40.0, temp=21.5)
    assert r.sensors() == ("humidity", "temp") and r.notes == ()
    assert (r.co, r.light, r.lpg, r.motion, r.smoke) == (None,) * 5
    assert r.value("temp") == 21.5 and r.value("light") is None
    assert orjson.loads(encode(r)) == {
        "data": {"humidity": 40.0, "temp": 21.5}, "device_id": "a1", "ts": 1594512094.0,
    }  # fmt: skip
    assert decode_payload(encode(r), now=NOW) == r
    assert not is_glitch(r)


def test_a_temperature_only_device() -> None:
    r = decode_payload(device_payload({"temp": -12.25}, "ds18b20-7"), now=NOW)
    assert r.temp == -12.25 and r.humidity is None and r.sensors() == ("temp",)
    assert decode_payload(encode(r), now=NOW) == r
    assert not is_glitch(r)
    assert make_reading(1594512094.0, "ds18b20-7", temp=-12.25) == r


def test_a_device_may_change_its_sensors_from_one_reading_to_the_next() -> None:
    first = decode_payload(device_payload({"temp": 20.0, "humidity": 50.0, "co": 0.01}), now=NOW)
    later = decode_payload(device_payload({"temp": 20.1}, ts=1594512100.0), now=NOW)
    added = decode_payload(
        device_payload({"temp": 20.2, "humidity": 49.0, "pressure": 1001.0}, ts=1594512200.0),
        now=NOW,
    )
    assert [r.sensors() for r in (first, later, added)] == [
        ("co", "humidity", "temp"), ("temp",), ("humidity", "temp", "pressure"),
    ]  # fmt: skip


def test_a_reading_of_only_an_extra_numeric_field_is_a_reading() -> None:
    r = decode_payload(device_payload({"pressure": 1013.0}), now=NOW)
    assert r.sensors() == ("pressure",) and r.value("pressure") == 1013.0


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"temp": None, "humidity": None},
        {k: None for k in SENSORS},
        {"firmware": "1.2", "ok": True},  # nothing numeric under a usable name
    ],
)
def test_no_sensor_at_all_is_refused(data: dict) -> None:
    e = rejected(device_payload(data))
    assert e.reason == "no_sensor"
    assert str(e) == (
        "no usable sensor value: data holds none of co, humidity, light, lpg, motion, smoke, temp"
    )


def test_no_sensor_left_after_dropping_names_each_fields_problem() -> None:
    e = rejected(device_payload({"temp": "warm", "humidity": 130.0, "light": 1, "co": None}))
    assert e.reason == "no_sensor"
    assert str(e) == (
        "no usable sensor value: field 'data.temp' must be a number, got str 'warm'; "
        "field 'data.humidity' = 130.0 is outside [0, 100]; "
        "field 'data.light' must be true or false (not 0/1), got 1"
    )


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"data": [1, 2]}, "data", "must be an object"),
        ({"data": None}, "data", "must be an object"),
        ({"device_id": 42}, "device_id", "must be a string"),
        ({"device_id": None}, "device_id", "must be a string"),
        ({"ts": "1594512094"}, "ts", "must be a number"),
        ({"ts": None}, "ts", "must be a number"),
        ({"ts": True}, "ts", "must be a number"),
    ],
)
def test_wrong_type_of_the_envelope_refuses_the_payload(
    changes: dict, field: str, says: str
) -> None:
    e = rejected(raw(**changes))
    assert e.reason == "wrong_type"
    assert f"field '{field}' {says}" in str(e)


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("temp", "22.7", "must be a number, got str '22.7'"),
        ("humidity", "51", "must be a number"),
        ("co", [0.1], "must be a number, got list"),
        ("smoke", {"v": 1}, "must be a number, got dict"),
        ("lpg", True, "must be a number, got bool True"),
        ("light", "false", "must be true or false"),
        ("motion", 0.0, "must be true or false"),
    ],
)
def test_a_sensor_of_the_wrong_type_is_dropped_and_noted(
    field: str, value: object, says: str
) -> None:
    r = decode_payload(raw(**{f"data_{field}": value}), now=NOW)
    assert_dropped(r, field, "wrong_type")
    assert r.notes == ((field, "wrong_type"),)
    alone = rejected(device_payload({field: value}))  # alone, its message says why
    assert alone.reason == "no_sensor" and f"field 'data.{field}' {says}" in str(alone)


@pytest.mark.parametrize("field", ["light", "motion"])
@pytest.mark.parametrize("value", [0, 1])
def test_booleans_given_as_numbers_are_dropped(field: str, value: int) -> None:
    assert_dropped(decode_payload(raw(**{f"data_{field}": value}), now=NOW), field, "wrong_type")
    e = rejected(device_payload({field: value}))
    assert str(e) == (
        f"no usable sensor value: field 'data.{field}' must be true or false (not 0/1), got {value}"
    )


@pytest.mark.parametrize(
    "literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"1e400"]
)
def test_non_finite_numbers_in_json_refuse_the_payload(literal: bytes) -> None:
    # JSON has no NaN/Infinity; orjson refuses the literals and numbers that overflow a
    # double (1e999 would be inf): the payload cannot be parsed, so nothing of it is usable.
    data = raw().replace(b'"temp":22.7', b'"temp":' + literal)
    assert literal in data
    e = rejected(data)
    assert e.reason == "not_finite"
    assert "non-finite number" in str(e)


def test_non_finite_values_from_other_parsers_are_dropped_and_noted() -> None:
    # The careful path sees inf/nan when a caller hands over already-parsed values.
    for value in (math.inf, -math.inf, math.nan):
        r = make_reading(1594512094.0, DEVICE, 0.01, 50.0, False, 0.01, False, 0.02, value)
        assert r.temp is None and r.notes == (("temp", "not_finite"),) and r.humidity == 50.0
        assert_dropped(_judge_object(payload(data_temp=value), None, NOW), "temp", "not_finite")
        with pytest.raises(InvalidReading) as info:
            make_reading(1594512094.0, DEVICE, temp=value)
        assert info.value.reason == "no_sensor"
        assert "field 'temp' is" in str(info.value) and "must be finite" in str(info.value)
    with pytest.raises(InvalidReading) as info:
        _judge_object(payload(ts=math.nan), None, NOW)
    assert info.value.reason == "not_finite"


def test_integers_beyond_a_double_are_judged_not_raised() -> None:
    # only an already-parsed value can be such an int (orjson makes big literals floats)
    r = make_reading(1594512094.0, DEVICE, humidity=50.0, temp=10**400)
    assert r.temp is None and r.notes == (("temp", "out_of_range"),)
    r = make_reading(1594512094.0, DEVICE, temp=20.0, extra=[("pressure", 10**400)])
    assert r.extra == ()
    with pytest.raises(InvalidReading) as info:
        make_reading(10**400, DEVICE, temp=20.0)
    assert info.value.reason == "bad_timestamp"


@pytest.mark.parametrize(
    ("field", "value", "bounds"),
    [
        ("temp", -55.1, "[-55, 125]"),
        ("temp", 125.5, "[-55, 125]"),
        ("humidity", -5.1, "[0, 100]"),
        ("humidity", 105.1, "[0, 100]"),
        ("humidity", 151.0, "[0, 100]"),
        ("co", -0.001, "[0, 100]"),
        ("co", 100.5, "[0, 100]"),  # no tolerance but humidity's
        ("co", 150.0, "[0, 100]"),
        ("lpg", -1.0, "[0, 100]"),
        ("lpg", 1000.0, "[0, 100]"),
        ("smoke", -0.5, "[0, 100]"),
        ("smoke", 101.0, "[0, 100]"),
    ],
)
def test_out_of_range_is_dropped_and_noted_per_field(field: str, value: float, bounds: str) -> None:
    assert_dropped(decode_payload(raw(**{f"data_{field}": value}), now=NOW), field, "out_of_range")
    e = rejected(device_payload({field: value}))
    assert e.reason == "no_sensor"
    assert str(e) == f"no usable sensor value: field 'data.{field}' = {value!r} is outside {bounds}"


@pytest.mark.parametrize(
    ("value", "limit"),
    [(100.5, 100.0), (102.0, 100.0), (105.0, 100.0), (-0.5, 0.0), (-5.0, 0.0), (100.0001, 100.0)],
)
def test_humidity_a_little_beyond_its_limits_is_clipped_and_noted(
    value: float, limit: float
) -> None:
    # a saturated RH sensor (fog): within the DHT22's 5 % RH stated maximum error
    r = decode_payload(raw(data_humidity=value), now=NOW)
    assert_clipped(r, "humidity", limit)
    assert r.temp == 22.7 and r.co == FULL["co"]  # the rest is untouched
    th = make_reading(1594512094.0, "a1", humidity=value, temp=21.5)
    assert_clipped(th, "humidity", limit)
    assert th.temp == 21.5


def test_clipping_and_dropping_are_noted_together_in_field_order() -> None:
    r = decode_payload(
        device_payload({"temp": 21.5, "humidity": 100.5, "co": "high", "smoke": -3.0}), now=NOW
    )
    assert (r.temp, r.humidity, r.co, r.smoke) == (21.5, 100.0, None, None)
    assert r.notes == (("co", "wrong_type"), ("humidity", "clipped"), ("smoke", "out_of_range"))


def test_range_bounds_are_inclusive() -> None:
    for temp in (-55.0, 125.0):
        r = decode_payload(raw(data_temp=temp, data_humidity=100.0, data_co=0.0), now=NOW)
        assert (r.temp, r.humidity, r.co, r.notes) == (temp, 100.0, 0.0, ())
    assert decode_payload(raw(data_humidity=0.0), now=NOW).notes == ()


def test_make_reading_judges_like_decode_payload() -> None:
    r = make_reading(1594512094.0, "a1", humidity=102.0, light=1, temp=21.5,
                     extra=[("pressure", 1013.0), ("note", "x"), ("temp", 99.0)])  # fmt: skip
    assert (r.temp, r.humidity, r.light) == (21.5, 100.0, None)  # an extra named temp is ignored
    assert r.extra == (("pressure", 1013.0),)
    assert r.notes == (("humidity", "clipped"), ("light", "wrong_type"))
    same = decode_payload(
        device_payload({"humidity": 102.0, "light": 1, "temp": 21.5, "pressure": 1013.0,
                        "note": "x"}), now=NOW
    )  # fmt: skip
    assert same == r
    with pytest.raises(InvalidReading) as info:
        make_reading(1594512094.0, "a1")
    assert info.value.reason == "no_sensor"
    assert str(info.value) == (
        "no usable sensor value: the reading holds none of co, humidity, light, lpg, motion, "
        "smoke, temp"
    )


@pytest.mark.parametrize(
    ("ts", "hint"),
    [
        (-1.0, ""),
        (0.0, ""),
        (946_684_799.0, ""),  # 1999-12-31T23:59:59Z
        (NOW + 86_400 + 1, ""),  # more than a day in the future
        (4_102_444_800.0, ""),  # 2100
        (NOW * 1000, "looks like milliseconds"),
        (1594512094385.0, "looks like milliseconds"),
    ],
)
def test_implausible_timestamps(ts: float, hint: str) -> None:
    e = rejected(raw(ts=ts))
    assert e.reason == "bad_timestamp"
    assert "is not a plausible epoch in seconds" in str(e)
    assert hint in str(e)


def test_future_bound_follows_the_clock() -> None:
    assert decode_payload(raw(ts=NOW + 3600), now=NOW).ts == NOW + 3600
    # without ``now`` the real clock bounds it: a 2020 reading is fine today
    assert decode_payload(raw()).ts == 1594512094.3859746


@pytest.mark.parametrize(
    ("device", "what"),
    [
        ("", "empty"),
        ("x" * (MAX_DEVICE_ID_LENGTH + 1), "too long"),
        ("dev ice", "space"),
        ("dev\nice", "newline"),
        ("dev\x00", "NUL"),
        ("\x1b[31mred", "escape"),
        ('dev",device="other', "label injection"),
        ("dev}", "brace"),
        ("iot/dev", "slash"),
        ("dév", "non-ASCII"),
        ("dev\u200b", "zero-width space"),
        (".", "a dot: the current folder as an S3 key segment or a local path"),
        ("..", "two dots: the parent folder"),
        ("." * 64, "dots only"),
    ],
)
def test_bad_device_ids(device: str, what: str) -> None:
    e = rejected(raw(device_id=device))
    assert e.reason == "bad_device_id", what
    assert f"must be 1..{MAX_DEVICE_ID_LENGTH} characters of A-Z a-z 0-9 : . _ -" in str(e)
    assert "\n" not in repr(str(e))  # the id is shown repr()-escaped, safe for logs


@pytest.mark.parametrize("device", [".a", "a.", "..a", "a..b", "-", "_", ":", "1.2.3.4"])
def test_device_ids_with_dots_and_something_else_are_accepted(device: str) -> None:
    assert decode_payload(raw(device_id=device), now=NOW).device == device
    assert make_reading(NOW, device, 0.0, 50.0, False, 0.0, False, 0.0, 20.0).device == device


def test_dots_only_device_ids_are_refused_by_the_csv_path_too() -> None:
    for device in (".", ".."):
        with pytest.raises(InvalidReading) as e:
            make_reading(NOW, device, 0.0, 50.0, False, 0.0, False, 0.0, 20.0)
        assert e.value.reason == "bad_device_id" and "not only dots" in str(e.value)


def test_longest_device_id_is_accepted() -> None:
    device = "a" * MAX_DEVICE_ID_LENGTH
    assert decode_payload(raw(device_id=device), now=NOW).device == device


@pytest.mark.parametrize(
    "topic", ["iot/other/telemetry", "iot/b8:27:eb:bf:9d:51/status", "b8:27:eb:bf:9d:51", "iot//telemetry",
              "iot/b8:27:eb:bf:9d:51/telemetry/x"],
)  # fmt: skip
def test_topic_mismatch(topic: str) -> None:
    e = rejected(raw(), topic=topic)
    assert e.reason == "topic_mismatch"
    assert "does not match device_id" in str(e) and "expected iot/<device_id>/telemetry" in str(e)


def test_every_reason_is_covered_by_a_test_here() -> None:
    import inspect
    import sys

    source = inspect.getsource(sys.modules[__name__])
    for reason in FIELD_REASONS:  # a field dropped from a reading that goes on
        assert re.search(rf'^ +assert_dropped\(.*, "{reason}"\)$', source, re.M), reason
    for reason in REASONS:  # a payload refused whole (out_of_range: only ever a field's now)
        assert f'reason == "{reason}"' in source or reason in FIELD_REASONS, reason
    assert set(REASONS) - set(FIELD_REASONS) and set(FIELD_REASONS) <= set(REASONS)
    assert "assert_clipped(" in source


def test_str_payloads_decode_like_bytes() -> None:
    assert decode_payload(raw().decode(), now=NOW) == decode_payload(raw(), now=NOW)


def test_topics_and_glitches() -> None:
    assert topic_for(DEVICE) == "iot/b8:27:eb:bf:9d:51/telemetry"
    assert device_from_topic(topic_for(DEVICE)) == DEVICE
    assert device_from_topic("iot/x/status") is None
    glitch = decode_payload(raw(data_temp=0.0, data_humidity=1.1), now=NOW)
    assert is_glitch(glitch)
    assert not is_glitch(decode_payload(raw(), now=NOW))
    assert not is_glitch(decode_payload(device_payload({"temp": 0.0}), now=NOW))  # no humidity


SUBSETS = [
    {"temp": 21.5},
    {"temp": 21.5, "humidity": 40.0},
    {"humidity": 40.0, "light": True},
    {"co": 0.01, "lpg": 0.02, "smoke": 0.03},
    {"motion": False},
    {"temp": 21.5, "pressure": 1013.25},
    {"temp": 21.5, "humidity": 102.0},  # clipped
    {"temp": "x", "humidity": 40.0},  # one dropped
    {**FULL, "pressure": 990.0},
]


@pytest.mark.parametrize("data", SUBSETS)
def test_bytes_and_parsed_objects_are_judged_alike(data: dict) -> None:
    for p in (
        payload(),
        payload(ts=1594512094),
        payload(data_temp=-55.0, data_light=True),
        payload(data_humidity=100.5),
        {"data": data, "device_id": "a1", "ts": 1594512094.0},
    ):
        assert decode_payload(orjson.dumps(p), now=NOW) == _judge_object(p, None, NOW)


def test_each_value_is_checked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review finding D1: a value was checked by a fast path, then again by the careful one.

    Now one pass: plain values are accepted inline, and only a value that is not goes to
    the per-field check, once.
    """
    import telemetry.reading

    calls: list[str] = []
    check_number, check_boolean = telemetry.reading._check_number, telemetry.reading._check_boolean

    def counting_number(key: str, *args: object) -> tuple[float, bool]:
        calls.append(key)
        return check_number(key, *args)  # type: ignore[arg-type]

    def counting_boolean(key: str, *args: object) -> bool:
        calls.append(key)
        return check_boolean(key, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(telemetry.reading, "_check_number", counting_number)
    monkeypatch.setattr(telemetry.reading, "_check_boolean", counting_boolean)
    assert decode_payload(raw(), now=NOW).temp == 22.7
    for d in SUBSETS[:5]:
        decode_payload(device_payload(d), now=NOW)
    assert calls == []  # plain valid values: accepted inline, no per-field check
    r = decode_payload(raw(data_humidity=100.5, data_light=0), now=NOW)
    assert r.humidity == 100.0 and r.notes == (("humidity", "clipped"), ("light", "wrong_type"))
    assert sorted(calls) == ["humidity", "light"]  # the two that are not plain, once each
    calls.clear()
    make_reading(1594512094.0, DEVICE, humidity=101.0, temp=22.5)
    assert calls == ["humidity"]


@pytest.mark.parametrize("data", [d for d in SUBSETS if "x" not in d.values()])
def test_encode_decode_round_trip_of_subsets_and_extras(data: dict) -> None:
    r = decode_payload(device_payload(data), now=NOW)
    again = decode_payload(encode(r), now=NOW)
    assert again.sensors() == r.sensors()
    # a clipped value is sent as its limit: the copy holds the value, not the note
    assert again == Reading(r.ts, r.device, **{k: getattr(r, k) for k in SENSORS}, extra=r.extra)


def test_decoded_readings_are_ordinary_frozen_readings() -> None:
    import dataclasses
    import pickle

    decoded = decode_payload(raw(), now=NOW)
    built = Reading(**orjson.loads(raw())["data"], ts=1594512094.3859746, device=DEVICE)
    assert type(decoded) is Reading and decoded == built and hash(decoded) == hash(built)
    assert pickle.dumps(decoded) == pickle.dumps(built)
    assert dataclasses.asdict(decoded) == dataclasses.asdict(built)
    with pytest.raises(dataclasses.FrozenInstanceError):
        decoded.temp = 0.0  # type: ignore[misc]


# --- device messages: one reading or a batch of them ----------------------------------------


def test_a_single_reading_message_decodes_as_decode_payload_does() -> None:
    d = decode_message(raw(), topic_for(DEVICE), now=NOW)
    assert not d.batch and d.parts == [decode_payload(raw(), now=NOW)]
    assert d.payload(0) == raw()
    bad = decode_message(raw(device_id="x y"), now=NOW)
    assert [p.reason for p in bad.parts] == ["bad_device_id"]  # type: ignore[union-attr]


def test_each_reading_of_a_batch_is_judged_on_its_own() -> None:
    items = [
        payload(ts=1594512094.0),
        payload(ts=1594512099.0, data_temp=900.0, data_humidity="wet", drop=["data.co"]),
        payload(ts=1594512104.0, data_humidity=100.5),
        "not a reading",
        payload(ts=1594512109.0, device_id="another"),
        payload(ts=1594512114.0, drop=["ts"]),
    ]
    d = decode_message(orjson.dumps(items), topic_for(DEVICE), now=NOW)
    assert d.batch and len(d.parts) == len(items)
    ok = [p for p in d.parts if isinstance(p, Reading)]
    assert [r.ts for r in ok] == [1594512094.0, 1594512099.0, 1594512104.0]
    assert ok[1].temp is None and ("temp", "out_of_range") in ok[1].notes  # dropped, goes on
    assert ok[2].humidity == 100.0 and ok[2].notes == (("humidity", "clipped"),)
    reasons = [p.reason for p in d.parts if isinstance(p, InvalidReading)]
    assert reasons == ["not_an_object", "topic_mismatch", "missing_field"]
    assert orjson.loads(d.payload(4)) == items[4]  # a refused part, as it was sent
    assert d.parts[0] == decode_payload(d.payload(0), now=NOW)
    assert d.parts[2] == decode_payload(d.payload(2), now=NOW)  # same notes from its bytes


def test_a_batch_out_of_bounds_is_refused_whole() -> None:
    empty = decode_message(b" []", now=NOW)
    assert [p.reason for p in empty.parts] == ["bad_batch"]  # type: ignore[union-attr]
    many = orjson.dumps([{"data": {"temp": 20.0}, "device_id": "a", "ts": 1.6e9}] * 1001)
    (e,) = decode_message(many, now=NOW).parts
    assert isinstance(e, InvalidReading) and e.reason == "bad_batch"
    assert str(MAX_BATCH_READINGS) in str(e)
    huge = b"[" + b" " * MAX_MESSAGE_BYTES + raw() + b"]"
    (e,) = decode_message(huge, now=NOW).parts
    assert isinstance(e, InvalidReading) and e.reason == "too_large"
    single = raw(pad="x" * MAX_PAYLOAD_BYTES)
    (e,) = decode_message(single, now=NOW).parts
    assert isinstance(e, InvalidReading) and e.reason == "too_large"
    (e,) = decode_message(b"[{oops", now=NOW).parts
    assert isinstance(e, InvalidReading) and e.reason == "invalid_json"


def test_a_batch_may_exceed_one_readings_limit_but_not_a_changed_reading() -> None:
    items = [payload(ts=1594512094.0 + i) for i in range(40)]  # ~8 KB
    items.append(payload(ts=1594512200.0, data_humidity=100.5, pad="x" * MAX_PAYLOAD_BYTES))
    items.append(payload(ts=1594512201.0, pad="x" * MAX_PAYLOAD_BYTES))  # unchanged: re-encoded
    d = decode_message(orjson.dumps(items), now=NOW)
    assert all(isinstance(p, Reading) for p in d.parts[:40])
    assert isinstance(d.parts[40], InvalidReading) and d.parts[40].reason == "too_large"
    assert isinstance(d.parts[41], Reading) and len(encode(d.parts[41])) < MAX_PAYLOAD_BYTES

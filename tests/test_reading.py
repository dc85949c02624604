"""The data contract: every rejection reason of decode_payload, with its message."""

from __future__ import annotations

import math

import orjson
import pytest

from telemetry.reading import (
    MAX_DEVICE_ID_LENGTH,
    MAX_PAYLOAD_BYTES,
    REASONS,
    InvalidReading,
    Reading,
    _decode_checked,
    decode_payload,
    device_from_topic,
    encode,
    is_glitch,
    make_reading,
    topic_for,
)

NOW = 1_600_000_000.0  # a fixed clock for the future-timestamp bound
DEVICE = "b8:27:eb:bf:9d:51"


def payload(**changes: object) -> dict:
    """A valid payload dict; ``data_<field>=...`` changes a sensor field, ``drop=...`` removes one."""
    p = {
        "data": {
            "co": 0.004955938648391245,
            "humidity": 51.0,
            "light": False,
            "lpg": 0.00765082227055719,
            "motion": False,
            "smoke": 0.02041127012241292,
            "temp": 22.7,
        },
        "device_id": DEVICE,
        "ts": 1594512094.3859746,
    }
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


def rejected(data: bytes | str, topic: str | None = None) -> InvalidReading:
    with pytest.raises(InvalidReading) as info:
        decode_payload(data, topic, now=NOW)
    assert info.value.reason in REASONS
    return info.value


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


def test_unknown_extra_fields_are_ignored() -> None:
    p = payload()
    p["firmware"] = "1.2"
    p["data"]["pressure"] = 1013.0
    assert decode_payload(orjson.dumps(p), now=NOW).temp == 22.7


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


@pytest.mark.parametrize(
    "missing", ["data", "device_id", "ts", "data.co", "data.humidity", "data.light",
                "data.lpg", "data.motion", "data.smoke", "data.temp"],
)  # fmt: skip
def test_missing_field_is_named(missing: str) -> None:
    e = rejected(raw(drop=[missing]))
    assert e.reason == "missing_field"
    assert str(e) == f"field '{missing}' is missing"


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
        ({"data_temp": "22.7"}, "data.temp", "must be a number"),
        ({"data_humidity": None}, "data.humidity", "must be a number"),
        ({"data_co": [0.1]}, "data.co", "must be a number"),
        ({"data_smoke": {"v": 1}}, "data.smoke", "must be a number"),
        ({"data_lpg": True}, "data.lpg", "must be a number"),
        ({"data_light": "false"}, "data.light", "must be true or false"),
        ({"data_motion": None}, "data.motion", "must be true or false"),
    ],
)
def test_wrong_type_is_named(changes: dict, field: str, says: str) -> None:
    e = rejected(raw(**changes))
    assert e.reason == "wrong_type"
    assert f"field '{field}' {says}" in str(e)


@pytest.mark.parametrize("field", ["light", "motion"])
@pytest.mark.parametrize("value", [0, 1])
def test_booleans_given_as_numbers_are_refused(field: str, value: int) -> None:
    e = rejected(raw(**{f"data_{field}": value}))
    assert e.reason == "wrong_type"
    assert str(e) == f"field 'data.{field}' must be true or false (not 0/1), got {value}"


@pytest.mark.parametrize(
    "literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"1e400"]
)
def test_non_finite_numbers_are_refused(literal: bytes) -> None:
    # JSON has no NaN/Infinity; orjson refuses the literals and numbers that overflow a
    # double (1e999 would be inf): both are reported as not_finite, not as a parse error.
    data = raw().replace(b'"temp":22.7', b'"temp":' + literal)
    assert literal in data
    e = rejected(data)
    assert e.reason == "not_finite"
    assert "non-finite number" in str(e)


def test_non_finite_values_from_other_parsers_are_refused() -> None:
    # The careful path sees inf/nan when a caller hands over already-parsed values.
    for value in (math.inf, -math.inf, math.nan):
        with pytest.raises(InvalidReading) as info:
            make_reading(1594512094.0, DEVICE, 0.01, 50.0, False, 0.01, False, 0.02, value)
        assert info.value.reason == "not_finite"
        assert "'temp'" in str(info.value) and "must be finite" in str(info.value)
    with pytest.raises(InvalidReading) as info:
        _decode_checked(payload(ts=math.nan), None, NOW)
    assert info.value.reason == "not_finite"


@pytest.mark.parametrize(
    ("field", "value", "bounds"),
    [
        ("temp", -40.1, "[-40, 80]"),
        ("temp", 80.5, "[-40, 80]"),
        ("humidity", -0.1, "[0, 100]"),
        ("humidity", 100.1, "[0, 100]"),
        ("co", -0.001, "[0, 100]"),
        ("co", 150.0, "[0, 100]"),
        ("lpg", -1.0, "[0, 100]"),
        ("lpg", 1000.0, "[0, 100]"),
        ("smoke", -0.5, "[0, 100]"),
        ("smoke", 101.0, "[0, 100]"),
    ],
)
def test_out_of_range_per_field(field: str, value: float, bounds: str) -> None:
    e = rejected(raw(**{f"data_{field}": value}))
    assert e.reason == "out_of_range"
    assert str(e) == f"field 'data.{field}' = {value!r} is outside {bounds}"


def test_range_bounds_are_inclusive() -> None:
    r = decode_payload(raw(data_temp=-40.0, data_humidity=100.0, data_co=0.0), now=NOW)
    assert (r.temp, r.humidity, r.co) == (-40.0, 100.0, 0.0)


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
    for reason in REASONS:
        assert f'reason == "{reason}"' in source, reason


def test_str_payloads_decode_like_bytes() -> None:
    assert decode_payload(raw().decode(), now=NOW) == decode_payload(raw(), now=NOW)


def test_topics_and_glitches() -> None:
    assert topic_for(DEVICE) == "iot/b8:27:eb:bf:9d:51/telemetry"
    assert device_from_topic(topic_for(DEVICE)) == DEVICE
    assert device_from_topic("iot/x/status") is None
    glitch = decode_payload(raw(data_temp=0.0, data_humidity=1.1), now=NOW)
    assert is_glitch(glitch)
    assert not is_glitch(decode_payload(raw(), now=NOW))


def test_fast_path_and_careful_path_agree_on_valid_payloads() -> None:
    for p in (payload(), payload(ts=1594512094), payload(data_temp=-40.0, data_light=True)):
        assert decode_payload(orjson.dumps(p), now=NOW) == _decode_checked(p, None, NOW)


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

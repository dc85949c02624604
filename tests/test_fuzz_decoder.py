"""Fuzzing decode_payload: whatever arrives, it returns a safe Reading or raises InvalidReading.

About 10,800 generated payloads a run: 300 raw byte strings, 200 arbitrary
JSON documents (nesting, huge strings, NaN/Infinity literals) and 300 valid
payloads with one field mutated, all drawn by hypothesis (which shrinks a
failure), plus 10,000 payloads from a seeded mutator (200 hypothesis-chosen
seeds x 50: zero to three things broken at once, byte corruption, nesting
beyond the parser's limit, huge pads).  Mutations: wrong types, non-finite
and out-of-range numbers, negative, far-future and millisecond timestamps,
unicode, control characters and metric-label injection attempts in device
ids, topic mismatches.

Where a device id goes next: every accepted id is checked as an S3 key
segment (``models/<app>/<device>/...``: one segment, never ``.`` or ``..``)
and as a metric label.  Beyond the data contract, the exposition itself
escapes any label value (quotes, newlines, braces, backslashes: 300 drawn
strings go through a real registry and are parsed back), and dead-letter
lines and keys keep hostile topics and payloads inside one escaped JSON line
under a fixed-format key (200 more).

The contract's own properties (a reading is ``ts``, a device id and at least one
sensor, each field judged alone) are drawn too: any subset of the sensor fields
(none: ``no_sensor``) with any values, absent or ``null``, checked against an
independent statement of the table in :mod:`telemetry.reading` (400 payloads,
and as many already-parsed values through ``make_reading``, non-finite ones
included); any one bad field among good ones (300, and 200 non-finite ones
through the parsers that can carry them): the other fields always survive with
their values, the bad one is absent and noted with a ``FIELD_REASONS`` reason;
and 200 ``data`` objects of anything under sensor names and others.  Decoding
never raises anything but ``InvalidReading`` with a reason in ``REASONS``.
"""

from __future__ import annotations

import json
import math
import random
import re

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bridge.deadletter import dead_letter_entry, dead_letter_key
from stream.checkpoint import device_artifact_key
from stream.output import dead_letter_key as processor_dead_letter_key
from stream.output import dead_letter_line
from telemetry.reading import (
    FIELD_REASONS,
    MAX_EXTRA_FIELDS,
    MAX_PAYLOAD_BYTES,
    RANGES,
    REASONS,
    SENSORS,
    TOLERANCE,
    InvalidReading,
    Reading,
    _judge_object,
    decode_payload,
    encode,
    make_reading,
)

NOW = 1_600_000_000.0
SAFE_DEVICE = re.compile(r"[A-Za-z0-9:._-]{1,64}")


def fuzz(n: int) -> settings:
    return settings(FUZZ, max_examples=n)


FUZZ = settings(
    deadline=None,
    database=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
BASE = {
    "data": {
        "co": 0.0049, "humidity": 51.0, "light": False, "lpg": 0.0076,
        "motion": False, "smoke": 0.0204, "temp": 22.7,
    },
    "device_id": "b8:27:eb:bf:9d:51",
    "ts": 1594512094.3859746,
}  # fmt: skip


EXTRA_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


def check(raw: bytes | str, topic: str | None = None) -> Reading | None:
    """The property: a safe, in-range Reading, or InvalidReading with a known reason. Nothing else."""
    try:
        r = decode_payload(raw, topic, now=NOW)
    except InvalidReading as exc:
        assert exc.reason in REASONS
        assert str(exc)
        return None
    check_reading(r)
    key = device_artifact_key("app", r.device, "1").split("/")
    assert key == ["models", "app", r.device, "all", "1", "model.pkl"]  # one segment, as given
    if topic is not None:
        assert topic == f"iot/{r.device}/telemetry"
    return r


def check_reading(r: Reading) -> None:
    """A valid reading: safe id and ts, each sensor absent or in range, notes and extras sound."""
    assert type(r) is Reading
    assert SAFE_DEVICE.fullmatch(r.device)
    assert r.device.strip(".")  # "." and ".." would be path segments
    assert type(r.ts) is float and 946_684_800.0 <= r.ts <= NOW + 86_400
    for name, (lo, hi) in RANGES.items():
        value = getattr(r, name)
        assert value is None or (
            type(value) is float and math.isfinite(value) and lo <= value <= hi
        )
    assert r.light is None or type(r.light) is bool
    assert r.motion is None or type(r.motion) is bool
    assert r.sensors(), "a reading has at least one sensor or extra field"
    assert list(r.notes) == sorted(r.notes) and len({f for f, _ in r.notes}) == len(r.notes)
    for field, what in r.notes:
        assert field in SENSORS and what in (*FIELD_REASONS, "clipped")
        if what == "clipped":
            assert getattr(r, field) in RANGES[field]
        else:
            assert getattr(r, field) is None
    names = [k for k, _ in r.extra]
    assert names == sorted(set(names)) and len(names) <= MAX_EXTRA_FIELDS
    for name, value in r.extra:
        assert EXTRA_NAME.fullmatch(name) and name not in SENSORS
        assert type(value) is float and math.isfinite(value)


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=50),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)


@fuzz(300)
@given(st.binary(max_size=600))
def test_arbitrary_bytes(raw: bytes) -> None:
    check(raw)


@fuzz(200)
@given(json_value)
def test_arbitrary_json(value: object) -> None:
    check(json.dumps(value, allow_nan=True).encode())


device_ids = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=st.characters(max_codepoint=0x7F), min_size=0, max_size=80),
    st.from_regex(r"[A-Za-z0-9:._-]{1,70}", fullmatch=True),
    st.sampled_from(
        [
            'dev",device="x',
            "dev}\n# HELP injected",
            "a\x00b",
            "\x1b[2J",
            "../../etc",
            "iot/x",
            "dev\u202e",
            "\ufeffdev",
            "dev\r\n",
            " " * 5,
            "Ω",
            "a" * 64,
            "a" * 65,
            "",
            ".",
            "..",
            "...",
            "./x",
            "x/../y",
            'dev{a="b"}',
            "dev\\",
        ]
    ),  # fmt: skip
)
timestamps = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e12, max_value=1e13),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.sampled_from([0, -1, 946_684_799.9, NOW + 86_401, NOW * 1000, 1594512094385]),
)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-200, max_value=200),
    st.integers(min_value=-(2**64), max_value=2**64),
)
anything = st.one_of(json_value, numbers, st.text(max_size=20))


@st.composite
def mutated_payloads(draw) -> tuple[bytes, str | None]:
    p = json.loads(json.dumps(BASE))
    kind = draw(
        st.sampled_from(["device", "ts", "number", "bool", "drop", "replace", "topic", "big"])
    )
    topic = None
    if kind == "device":
        p["device_id"] = draw(device_ids)
        topic = draw(st.none() | st.just(f"iot/{p['device_id']}/telemetry"))
    elif kind == "ts":
        p["ts"] = draw(timestamps)
    elif kind == "number":
        p["data"][draw(st.sampled_from(sorted(RANGES)))] = draw(numbers)
    elif kind == "bool":
        p["data"][draw(st.sampled_from(["light", "motion"]))] = draw(anything)
    elif kind == "drop":
        key = draw(
            st.sampled_from(["data", "device_id", "ts", *(f"data.{k}" for k in BASE["data"])])
        )
        if key.startswith("data."):
            del p["data"][key[5:]]
        else:
            del p[key]
    elif kind == "replace":
        p[draw(st.sampled_from(["data", "device_id", "ts"]))] = draw(anything)
    elif kind == "topic":
        topic = draw(st.text(max_size=60) | st.just("iot/b8:27:eb:bf:9d:51/telemetry"))
    else:
        p["pad"] = draw(st.text(min_size=0, max_size=3)) * draw(st.integers(0, 3000))
    return json.dumps(p, allow_nan=True).encode(), topic


@fuzz(300)
@given(mutated_payloads())
def test_mutated_payloads(case: tuple[bytes, str | None]) -> None:
    raw, topic = case
    r = check(raw, topic)
    # Bytes and the parsed object are judged alike.
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return
    if len(raw) > MAX_PAYLOAD_BYTES:
        return
    try:
        careful = _judge_object(obj, topic, NOW)
    except InvalidReading:
        careful = None
    assert careful == r


# --- the contract's own properties: any subset, any values, any one bad field -------------

ABSENT = object()  # the key is not in ``data`` at all
BOOLEAN_SENSORS = ("light", "motion")


def expected_field(name: str, value: object) -> tuple[object, str | None]:
    """What the contract (telemetry/reading.py's table) makes of one sensor value, stated
    independently of the code: ``(kept value or None, note or None)``."""
    if value is ABSENT or value is None:
        return None, None
    if name in BOOLEAN_SENSORS:
        return (value, None) if value is True or value is False else (None, "wrong_type")
    if type(value) not in (int, float):
        return None, "wrong_type"
    try:
        v = float(value)  # type: ignore[arg-type]
    except OverflowError:
        return None, "out_of_range"
    if not math.isfinite(v):
        return None, "not_finite"
    lo, hi = RANGES[name]
    tolerance = TOLERANCE.get(name, 0.0)
    if lo <= v <= hi:
        return v, None
    if lo - tolerance <= v < lo:
        return lo, "clipped"
    if hi < v <= hi + tolerance:
        return hi, "clipped"
    return None, "out_of_range"


def expected_extra(value: object) -> float | None:
    if type(value) is int or (type(value) is float and math.isfinite(value)):
        return float(value)  # type: ignore[arg-type]
    return None


def good_value(name: str) -> st.SearchStrategy:
    if name in BOOLEAN_SENSORS:
        return st.booleans()
    lo, hi = RANGES[name]
    return st.one_of(
        st.floats(min_value=lo, max_value=hi),
        st.integers(min_value=math.ceil(lo), max_value=math.floor(hi)),
        st.sampled_from([lo, hi]),
    )


def bad_value(name: str, finite: bool = True) -> st.SearchStrategy:
    """A value the contract drops (never one it clips)."""
    lo, hi = RANGES.get(name, (0.0, 1.0))
    tolerance = TOLERANCE.get(name, 0.0)
    wrong_type = st.one_of(
        st.text(max_size=10),
        st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=2),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    )
    if name in BOOLEAN_SENSORS:
        return wrong_type | st.integers(-5, 5) | st.floats(allow_nan=False, allow_infinity=False)
    out = st.one_of(
        st.floats(max_value=lo - tolerance, exclude_max=True, allow_infinity=False),
        st.floats(min_value=hi + tolerance, exclude_min=True, allow_infinity=False),
        st.integers(min_value=-(2**200), max_value=math.ceil(lo - tolerance) - 1),
        st.integers(min_value=math.floor(hi + tolerance) + 1, max_value=2**200),
    )
    kinds = wrong_type | st.booleans() | out
    if not finite:
        kinds = kinds | st.sampled_from([math.nan, math.inf, -math.inf])
    return kinds


def any_value(name: str, finite: bool = True) -> st.SearchStrategy:
    """Anything a sensor field may hold: absent, null, good, a little beyond (clipped), bad."""
    lo, hi = RANGES.get(name, (0.0, 1.0))
    tolerance = TOLERANCE.get(name, 0.0)
    near = st.floats(min_value=lo - tolerance - 1, max_value=hi + tolerance + 1)
    return st.one_of(st.just(ABSENT), st.none(), good_value(name), near, bad_value(name, finite))


extra_names = st.one_of(
    st.sampled_from(["pressure", "co2", "voc", "battery_v", "rssi", "x" * 32, "x" * 33]),
    st.text(alphabet="abz_09A-", min_size=1, max_size=8),  # some names are not a field's
).filter(lambda n: n not in SENSORS)
extra_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
)


@st.composite
def sensor_data(draw, finite: bool = True) -> tuple[dict[str, object], dict[str, object]]:  # noqa: ANN001
    """Any subset of the sensors (possibly none) with any values, and a few extra fields."""
    subset = draw(st.lists(st.sampled_from(SENSORS), unique=True))
    values = {name: draw(any_value(name, finite)) for name in subset}
    extras = draw(st.dictionaries(extra_names, extra_values, max_size=4))
    return values, extras


def expected_reading(values: dict, extras: dict) -> tuple[dict, tuple, tuple] | None:
    """The sensor values, extras and notes the contract gives, or None for no_sensor."""
    kept: dict[str, object] = {}
    notes = []
    for name, value in values.items():
        v, note = expected_field(name, value)
        if v is not None:
            kept[name] = v
        if note is not None:
            notes.append((name, note))
    extra = tuple(
        sorted(
            (k, expected_extra(v))
            for k, v in extras.items()
            if expected_extra(v) is not None and EXTRA_NAME.fullmatch(k)
        )
    )
    if not kept and not extra:
        return None
    return kept, extra, tuple(sorted(notes))


def agrees(r: Reading, expected: tuple[dict, tuple, tuple]) -> None:
    kept, extra, notes = expected
    for name in SENSORS:
        value = getattr(r, name)
        assert value == kept.get(name) and type(value) is type(kept.get(name)), name
    assert r.extra == extra and r.notes == notes


@fuzz(400)
@given(sensor_data(), st.booleans())
def test_any_subset_of_sensors_with_any_values_is_judged_field_by_field(
    case: tuple[dict, dict], null_for_absent: bool
) -> None:
    values, extras = case
    data = {k: v for k, v in values.items() if v is not ABSENT}
    if null_for_absent:  # the absent ones sent as null instead: the same reading
        data.update({k: None for k in SENSORS if k not in data})
    data.update(extras)
    raw = json.dumps({"data": data, "device_id": "dev-1", "ts": 1594512094.5}, allow_nan=False)
    raw = raw.encode()
    expected = expected_reading(values, extras)
    if expected is None:
        with pytest.raises(InvalidReading) as info:
            decode_payload(raw, now=NOW)
        assert info.value.reason == "no_sensor"
        return
    r = check(raw)
    assert r is not None
    agrees(r, expected)
    assert _judge_object(orjson.loads(raw), None, NOW) == r  # fast path = careful path
    # what the reading holds goes out and comes back (a note is not sent; a clipped value is)
    again = decode_payload(encode(r), now=NOW)
    assert again.sensors() == r.sensors() and again.notes == ()
    assert again == Reading(r.ts, r.device, **{k: getattr(r, k) for k in SENSORS}, extra=r.extra)


@fuzz(400)
@given(sensor_data(finite=False))
def test_make_reading_judges_any_values_alike_non_finite_included(
    case: tuple[dict, dict],
) -> None:
    values, extras = case
    given_values = {k: v for k, v in values.items() if v is not ABSENT}
    expected = expected_reading(values, extras)
    try:
        r = make_reading(1594512094.5, "dev-1", **given_values, extra=extras.items(), now=NOW)
    except InvalidReading as exc:
        assert exc.reason == "no_sensor" and expected is None
        return
    assert expected is not None
    check_reading(r)
    agrees(r, expected)


@st.composite
def one_bad_field(draw) -> tuple[dict[str, object], str, object]:  # noqa: ANN001
    """Good values for a subset of at least two sensors, one of which is then made bad."""
    subset = draw(st.lists(st.sampled_from(SENSORS), min_size=2, unique=True))
    good = {name: draw(good_value(name)) for name in subset}
    bad = draw(st.sampled_from(subset))
    return good, bad, draw(bad_value(bad))


@fuzz(300)
@given(one_bad_field(), st.integers(min_value=0, max_value=2**32))
def test_one_bad_field_is_dropped_and_noted_and_the_others_survive(
    case: tuple[dict, str, object], order_seed: int
) -> None:
    good, bad, value = case
    data = {**good, bad: value}
    keys = list(data)
    random.Random(order_seed).shuffle(keys)  # wherever it stands in the payload
    raw = json.dumps(
        {"data": {k: data[k] for k in keys}, "device_id": "dev-1", "ts": 1.6e9}
    ).encode()
    r = check(raw)
    assert r is not None
    assert getattr(r, bad) is None
    (note,) = r.notes
    assert note[0] == bad and note[1] in FIELD_REASONS
    assert note[1] == expected_field(bad, value)[1]
    for name, v in good.items():
        if name != bad:
            kept = v if name in BOOLEAN_SENSORS else float(v)
            assert getattr(r, name) == kept and type(getattr(r, name)) is type(kept), name
    assert set(r.sensors()) == set(good) - {bad}


@fuzz(200)
@given(one_bad_field(), st.sampled_from([math.nan, math.inf, -math.inf]))
def test_one_non_finite_field_is_dropped_where_a_parser_can_carry_it(
    case: tuple[dict, str, object], value: float
) -> None:
    good, bad, _ = case
    if bad in BOOLEAN_SENSORS:
        bad = next(k for k in SENSORS if k not in BOOLEAN_SENSORS)
        good = {**good, bad: 1.0}
    for r in (
        make_reading(1.6e9, "dev-1", **{**good, bad: value}, now=NOW),
        _judge_object({"data": {**good, bad: value}, "device_id": "dev-1", "ts": 1.6e9}, None, NOW),
    ):
        check_reading(r)
        assert getattr(r, bad) is None and r.notes == ((bad, "not_finite"),)
        assert all(getattr(r, k) == v for k, v in good.items() if k != bad)


@fuzz(200)
@given(
    st.dictionaries(
        st.one_of(st.sampled_from(SENSORS), st.text(max_size=8)),
        st.one_of(json_leaf, st.lists(json_leaf, max_size=2)),
        max_size=9,
    )
)
def test_any_data_object_decodes_to_a_reading_or_a_documented_reason(data: dict) -> None:
    raw = json.dumps({"data": data, "device_id": "dev-1", "ts": 1594512094.5}, allow_nan=True)
    r = check(raw.encode())
    if r is None:
        return
    for name in SENSORS:  # whatever was kept is what was sent (or its clipped limit)
        if getattr(r, name) is not None:
            assert expected_field(name, data[name])[0] == getattr(r, name)


SPECIAL_FLOATS = [math.nan, math.inf, -math.inf, -0.0, 1e308, -1e308, 5e-324, 1e-300]
EVIL_STRINGS = [
    'dev",device="x', "dev}\n# HELP injected", "a\x00b", "\x1b[2J", "iot/x", "dev\u202e",
    "\ufeffdev", "dev\r\n", "\ud800", "Ω", "a" * 64, "a" * 65, "", "true", "1e999", "NaN",
    ".", "..", "x/../y", 'dev{a="b"}', "dev\\", "dev\\n",
]  # fmt: skip


def random_value(rnd, depth: int = 0):  # noqa: ANN001, ANN201
    """A random JSON-able value: numbers of every kind, nasty strings, nesting."""
    kind = rnd.randrange(10)
    if kind == 0:
        return rnd.choice(SPECIAL_FLOATS)
    if kind == 1:
        return rnd.uniform(-1e4, 1e4) * 10 ** rnd.randint(-10, 12)
    if kind == 2:
        return rnd.randint(-(2**66), 2**66)
    if kind == 3:
        return rnd.choice([True, False, None, 0, 1])
    if kind == 4:
        return rnd.choice(EVIL_STRINGS)
    if kind == 5:
        return "".join(chr(rnd.randrange(0, 0x3000)) for _ in range(rnd.randrange(0, 40)))
    if kind == 6:
        return "x" * rnd.choice([0, 100, 3000, 5000])
    if kind == 7 and depth < 4:
        return [random_value(rnd, depth + 1) for _ in range(rnd.randrange(4))]
    if kind == 8 and depth < 4:
        return {
            random_value(rnd, 9) if False else str(i): random_value(rnd, depth + 1)
            for i in range(3)
        }
    return rnd.uniform(-100.0, 200.0)


def random_payload(rnd) -> tuple[bytes, str | None]:  # noqa: ANN001
    """A payload near the valid one, with zero to three things broken, sometimes badly."""
    p = json.loads(json.dumps(BASE))
    p["ts"] = rnd.uniform(1.0e9, NOW)
    p["data"]["temp"] = round(rnd.uniform(-45.0, 85.0), 1)
    topic = None
    for _ in range(rnd.randrange(4)):
        where = rnd.randrange(8)
        if where == 0:
            p["device_id"] = random_value(rnd) if rnd.random() < 0.5 else rnd.choice(EVIL_STRINGS)
        elif where == 1:
            p["ts"] = rnd.choice([random_value(rnd), NOW * 1000, -1.0, NOW + 86_401])
        elif where == 2 and isinstance(p.get("data"), dict):
            p["data"][rnd.choice(list(BASE["data"]))] = random_value(rnd)
        elif where == 3:
            target = p if rnd.random() < 0.5 or not isinstance(p.get("data"), dict) else p["data"]
            if target:
                del target[rnd.choice(list(target))]
        elif where == 4:
            p[rnd.choice(["data", "device_id", "ts"])] = random_value(rnd)
        elif where == 5:
            topic = rnd.choice(
                ["iot/b8:27:eb:bf:9d:51/telemetry", "iot/x/telemetry", "", "iot/+/#"]
            )
        elif where == 6:
            depth = rnd.choice([10, 600, 1100])
            p["nest"] = json.loads("[" * depth + "]" * depth) if depth < 900 else None
            if depth >= 900:  # beyond orjson's nesting limit: build the text directly
                return (b'{"nest": ' + b"[" * depth + b"]" * depth + b"}", topic)
        else:
            text = json.dumps(p, allow_nan=True).encode()
            cut = rnd.randrange(len(text) + 1)
            return text[:cut] + bytes([rnd.randrange(256)]) + text[cut + 1 :], topic
    return json.dumps(p, allow_nan=True).encode(), topic


BATCH = 50


@fuzz(200)
@given(st.integers(min_value=0, max_value=2**64))
def test_random_payload_batches(seed: int) -> None:
    # 200 examples x 50 payloads = 10,000 payloads a run; hypothesis picks (and reports) the seed
    rnd = random.Random(seed)
    for _ in range(BATCH):
        raw, topic = random_payload(rnd)
        check(raw, topic)


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b"[" * 1000 + b"]" * 1000,
        b'{"a":' * 1000 + b"1" + b"}" * 1000,
        b'"' + b"x" * 10_000_000 + b'"',
        b"\x00" * 5000,
        "\ud800".encode("utf-8", "surrogatepass"),
        b'{"data": {}, "device_id": "\xff\xfe", "ts": 1}',
    ],
)
def test_pathological_payloads(raw: bytes) -> None:
    check(raw)
    check(raw.decode("latin-1"))


label_values = st.one_of(
    st.text(max_size=80),
    st.sampled_from(EVIL_STRINGS[:8] + ['x"} 1\nfake_metric{a="', "\\", '\\"', "{}", "a\\nb"]),
)


@fuzz(300)
@given(label_values)
def test_any_label_value_is_escaped_in_the_exposition(value: str) -> None:
    # Device ids that pass the contract are plain; still, whatever string reaches a label
    # comes out escaped: one sample line, parsed back to the very value.
    registry = CollectorRegistry()
    Gauge("iotcast_fuzz_celsius", "fuzz", ["device"], registry=registry).labels(value).set(1.0)
    text = generate_latest(registry).decode()
    # HELP, TYPE, one sample: nothing injected.  The format's line end is "\n" only
    # (prometheus_client escapes \\, " and \n; a \r stays raw inside the quotes).
    assert text.count("\n") == 3
    (family,) = text_string_to_metric_families(text)
    (sample,) = family.samples
    assert sample.labels == {"device": value} and sample.value == 1.0


DEAD_LETTER_KEY = re.compile(r"dead-letter/\d{4}-\d\d-\d\d/[0-9.-]+-[0-9a-f]{32}\.jsonl")


@fuzz(200)
@given(
    st.text(max_size=120) | st.sampled_from(EVIL_STRINGS[:8]),
    st.binary(max_size=300),
    st.floats(min_value=0, max_value=4e9),
)
def test_dead_letters_keep_hostile_input_inside_one_json_line(
    topic: str, payload: bytes, received_at: float
) -> None:
    # Bridge: the topic and payload are data in an escaped JSON line, never part of the key.
    try:
        message = str(decode_payload(payload, topic, now=NOW))
        reason = "none"
    except InvalidReading as exc:
        reason, message = exc.reason, str(exc)
    entry = dead_letter_entry(topic, payload, reason, message, received_at)
    line = orjson.dumps(entry) + b"\n"
    assert line.count(b"\n") == 1 and orjson.loads(line)["topic"] == topic
    assert DEAD_LETTER_KEY.fullmatch(dead_letter_key(received_at))
    # Processor: the same for a poison record.
    line = dead_letter_line(payload, reason, message, "shardId-0", "1", received_at or None)
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    assert processor_dead_letter_key().startswith("dead-letter/")
    assert re.fullmatch(r"dead-letter/\d{4}-\d\d-\d\d/\d{6}-[0-9a-f]{32}\.jsonl",
                        processor_dead_letter_key())  # fmt: skip

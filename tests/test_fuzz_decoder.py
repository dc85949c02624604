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
    MAX_PAYLOAD_BYTES,
    RANGES,
    REASONS,
    InvalidReading,
    Reading,
    _decode_checked,
    decode_payload,
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


def check(raw: bytes | str, topic: str | None = None) -> Reading | None:
    """The property: a safe, in-range Reading, or InvalidReading with a known reason. Nothing else."""
    try:
        r = decode_payload(raw, topic, now=NOW)
    except InvalidReading as exc:
        assert exc.reason in REASONS
        assert str(exc)
        return None
    assert type(r) is Reading
    assert SAFE_DEVICE.fullmatch(r.device)
    assert r.device.strip(".")  # "." and ".." would be path segments
    key = device_artifact_key("app", r.device, "1").split("/")
    assert key == ["models", "app", r.device, "all", "1", "model.pkl"]  # one segment, as given
    assert type(r.ts) is float and 946_684_800.0 <= r.ts <= NOW + 86_400
    for name, (lo, hi) in RANGES.items():
        value = getattr(r, name)
        assert type(value) is float and math.isfinite(value) and lo <= value <= hi
    assert type(r.light) is bool and type(r.motion) is bool
    if topic is not None:
        assert topic == f"iot/{r.device}/telemetry"
    return r


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
    # The one-expression fast path and the careful path agree on every parsed payload.
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return
    if len(raw) > MAX_PAYLOAD_BYTES:
        return
    try:
        careful = _decode_checked(obj, topic, NOW)
    except InvalidReading:
        careful = None
    assert careful == r


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

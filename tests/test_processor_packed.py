"""Packed records, device batches and old single-reading records through the processor.

The core (:class:`stream.core.StreamCore`, no network) is fed records as the bridge,
an older bridge and the AWS IoT rule write them; each reading must get exactly one
outcome, a bad part of a packed record is dead-lettered alone (reason, part index), a
stray copy (header naming another shard) is counted and not learned. The upgrade test
runs ``iotcast process`` on kinesalite over a stream holding old single-reading
records, then packed ones, then device batches (one JSON array a record).
"""

from __future__ import annotations

import base64
import itertools

import orjson
from prometheus_client import REGISTRY

from online_models.catalog import load_catalog
from online_models.config import TaskConfig
from stream.core import StreamCore
from stream.state import ShardState
from telemetry.envelope import pack
from telemetry.generate import generate
from telemetry.reading import Reading, encode
from tests import packing, support

MODELS = "persistence,rolling_mean"
TASK = TaskConfig(horizons=(0, 60))
OUTCOMES = ("learned", "held", "duplicate", "late", "glitch", "no_target")


def counted(shard: str) -> dict[str, float]:
    """The shard's record and reading counters, and its dead letters by reason."""
    out = {
        name: REGISTRY.get_sample_value(f"iotcast_{name}_total", {"shard": shard}) or 0.0
        for name in ("records_processed", "records_misrouted", "readings_processed")
    }
    for outcome in OUTCOMES:
        value = REGISTRY.get_sample_value(f"iotcast_readings_{outcome}_total", {"shard": shard})
        out[outcome] = value or 0.0
    for metric in REGISTRY.collect():
        if metric.name == "iotcast_records_poison":
            for s in metric.samples:
                if s.name.endswith("_total") and s.labels["shard"] == shard:
                    out[f"poison:{s.labels['reason']}"] = s.value
    return out


def readings(n: int, seed: int = 5) -> list[Reading]:
    return list(itertools.islice(generate(days=1, seed=seed), n))


def test_a_packed_record_with_bad_parts_dead_letters_only_those_parts(unique):
    shard = f"shardId-packed-{unique}"
    core = StreamCore(load_catalog(), TASK, models=MODELS)
    state = ShardState(shard, epoch=1)
    good = readings(6)
    bad_json, no_sensor = b"{", b'{"data": {"temp": 900.0}, "device_id": "a1", "ts": 1594512094}'
    messages = [encode(good[0]), bad_json, *map(encode, good[1:4]), no_sensor]
    messages += map(encode, good[4:])
    assert core.handle(state, "1", pack(messages, shard)) == "mixed"
    # --checkpoint-every counts readings: every part of the record (bad ones too)
    assert state.last_seq == "1" and state.since_checkpoint == len(messages)
    figures = counted(shard)
    assert figures["records_processed"] == 1 and figures["readings_processed"] == len(messages)
    assert figures["poison:invalid_json"] == figures["poison:no_sensor"] == 1
    learned = sum(figures[o] for o in OUTCOMES)
    assert learned == len(good) and figures["learned"] > 0
    lines = [orjson.loads(line) for line in state.dead_letters]
    assert [(base64.b64decode(d["payload_b64"]), d["reason"], d["part"]) for d in lines] == [
        (bad_json, "invalid_json", 1),
        (no_sensor, "no_sensor", 5),
    ]
    assert all(d["shard"] == shard and d["sequence"] == "1" for d in lines)


def test_a_stray_packed_record_is_counted_and_not_learned(unique):
    shard = f"shardId-stray-{unique}"
    core = StreamCore(load_catalog(), TASK, models=MODELS)
    state = ShardState(shard, epoch=1)
    rs = readings(20)
    assert core.handle(state, "7", pack([encode(r) for r in rs], "shardId-elsewhere")) == (
        "misrouted"
    )
    assert not state.devices and not state.dead_letters and state.last_seq == "7"
    figures = counted(shard)
    assert figures["records_processed"] == figures["records_misrouted"] == 1
    assert figures["readings_processed"] == 0 and sum(figures[o] for o in OUTCOMES) == 0
    # The same readings, packed for this shard (the bridge sends them again): learned.
    assert core.handle(state, "8", pack([encode(r) for r in rs], shard)) in ("learned", "mixed")
    assert counted(shard)["readings_processed"] == len(rs) and state.devices


def test_an_unreadable_envelope_dead_letters_the_record_whole(unique):
    shard = f"shardId-env-{unique}"
    core = StreamCore(load_catalog(), TASK, models=MODELS)
    state = ShardState(shard, epoch=1)
    record = pack([encode(r) for r in readings(3)], shard)
    assert core.handle(state, "1", record[:-5]) == "poison"  # truncated: the body does not add up
    assert core.handle(state, "2", b"\x00IC\x02" + record[4:]) == "poison"  # a newer version
    (a, b) = [orjson.loads(line) for line in state.dead_letters]
    assert (a["reason"], b["reason"]) == ("bad_envelope", "unknown_version")
    assert base64.b64decode(a["payload_b64"]) == record[:-5] and "part" not in a
    figures = counted(shard)
    assert figures["readings_processed"] == 2 and not state.devices


def test_every_reading_of_every_record_format_has_exactly_one_outcome(unique):
    """Old single records, packed records and device batches of the same readings, in one
    shard: the outcomes add up to the readings, and the models equal one uninterrupted pass."""
    shard = f"shardId-mixed-{unique}"
    core = StreamCore(load_catalog(), TASK, models=MODELS)
    state = ShardState(shard, epoch=1)
    rs = readings(1_500, seed=8)  # the generator's duplicates, late readings and glitches
    records = [encode(r) for r in rs[:500]]
    new = rs[500:1000]
    records += [pack([encode(r) for r in new[i : i + 40]], shard) for i in range(0, 500, 40)]
    by_device: dict[str, list[Reading]] = {}
    for r in rs[1000:]:
        by_device.setdefault(r.device, []).append(r)
    for device_readings in by_device.values():
        for i in range(0, len(device_readings), 12):
            records.append(orjson.dumps([r.to_payload() for r in device_readings[i : i + 12]]))
    for seq, data in enumerate(records, 1):
        core.handle(state, str(seq), data)
    figures = counted(shard)
    reference = support.reference(rs, load_catalog(), TASK, MODELS)
    assert figures["records_processed"] == len(records)
    assert figures["readings_processed"] == len(rs) == sum(figures[o] for o in OUTCOMES)
    assert figures["learned"] == sum(dm.n_learned for dm in reference.values())
    assert figures["duplicate"] == sum(dm.n_duplicate for dm in reference.values())
    assert {d: s.models.n_learned for d, s in state.devices.items()} == {
        d: dm.n_learned for d, dm in reference.items()
    }


def test_a_stream_upgraded_from_single_to_packed_records_is_read_whole_exactly_once(
    settings, tmp_path
):
    """kinesalite: old single-reading records, then packed ones (one with bad parts, one
    stray copy), then device batches as the IoT rule forwards them; one processor, stopped
    and started again halfway (it resumes after its manifests)."""
    support.create_resources(settings, 2)
    stream = readings(3_050, seed=17)
    rs, probe = stream[:3_000], stream[3_000:]
    old, new, batched = rs[:1_000], rs[1_000:2_000], rs[2_000:]
    support.put_records(settings, support.items_of(old))
    shards = packing.open_shards(settings)
    bad = [(b"{", "bad-1"), (b'{"data": {}, "device_id": "bad-2", "ts": 1594512094}', "bad-2")]
    packed = packing.put_packed(settings, support.items_of(new[:500]) + bad, per_record=60)
    stray = pack([encode(Reading(1594512000.0, "stray-1", temp=20.0))], shards[0][0])
    kinesis = settings.client("kinesis")  # addressed to shard 0, put on shard 1
    kinesis.put_record(
        StreamName=settings.stream, Data=stray, PartitionKey="x", ExplicitHashKey=str(shards[1][1])
    )
    flags = support.processor_flags(MODELS, TASK.horizons, checkpoint_every=5)
    with support.stops_cleanly(support.start_processor(settings, tmp_path, *flags)) as proc:
        first = support.learned_counts(old + new[:500], load_catalog(), TASK, MODELS)
        support.wait_checkpointed(settings, first, 120, "the old records and the first packed")
        records = support.metric_sum(proc, "iotcast_records_processed_total")
        misrouted = support.metric_sum(proc, "iotcast_records_misrouted_total")
    packed += packing.put_packed(settings, support.items_of(new[500:]), per_record=60)
    by_device: dict[str, list[Reading]] = {}
    for r in batched:
        by_device.setdefault(r.device, []).append(r)
    arrays = [
        (orjson.dumps([r.to_payload() for r in dr[i : i + 12]]), device)
        for device, dr in by_device.items()
        for i in range(0, len(dr), 12)
    ]
    support.put_records(settings, arrays)
    expected = support.reference(rs, load_catalog(), TASK, MODELS)
    want = {d: dm.n_taken for d, dm in expected.items()}
    with support.stops_cleanly(support.start_processor(settings, tmp_path, *flags)) as proc:
        support.wait_checkpointed(settings, want, 120, "every reading learned")
        text = support.scrape(proc)

    def total(name: str) -> float:
        return sum(support.metric_values(text, name).values())

    # The restarted processor read only what came after the manifests, each record once.
    assert records + total("iotcast_records_processed_total") == len(old) + packed + 1 + len(arrays)
    assert misrouted + total("iotcast_records_misrouted_total") == 1  # the stray copy
    assert total("iotcast_readings_processed_total") == len(new[500:]) + len(batched)
    learned = {d: n for d, n in support.device_samples(settings).items()}
    assert learned == want and "stray-1" not in learned
    for device, models in support.load_models(settings).items():
        assert models.n_taken == want[device]
        assert support.same_predictions(
            models, expected[device], [r for r in probe if r.device == device]
        )
    letters = []
    s3 = settings.client("s3")
    for obj in s3.list_objects_v2(Bucket=settings.bucket, Prefix="dead-letter/").get(
        "Contents", []
    ):
        body = s3.get_object(Bucket=settings.bucket, Key=obj["Key"])["Body"].read()
        letters += [orjson.loads(line) for line in body.splitlines() if line]
    got = {(base64.b64decode(d["payload_b64"]), d["reason"]) for d in letters}
    assert got == {(bad[0][0], "invalid_json"), (bad[1][0], "no_sensor")}
    assert all(isinstance(d["part"], int) for d in letters)

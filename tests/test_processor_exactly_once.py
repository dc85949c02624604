"""A processor SIGKILLed three times still learns every reading exactly once, whether the
stream holds one reading a record (an older bridge, the IoT rule) or packed records
(the bridge's default: ``tests/packing.py``; a packed record is learned all or nothing).

Kinesis is kinesalite (moto's PutRecords is too slow for 50,000 readings in a
test's budget); S3 and DynamoDB are the moto server.
"""

from __future__ import annotations

import base64
import itertools

import orjson
import pytest

from online_models.catalog import load_catalog
from online_models.config import TaskConfig
from telemetry.generate import generate
from tests import packing, support

MODELS = "rolling_mean,snarimax"
HORIZONS = (0, 60)
POISON = [b"not json at all", b'{"data": {}, "device_id": "x", "ts": 1594512094}', b"[1, 2]"]
# What the dead letter holds of them: "[1, 2]" is a batch of two parts, neither a reading.
DEAD_LETTERED = {*POISON[:2], b"1", b"2"}


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("record_format", ["single", "packed"])
def test_processor_killed_three_times_learns_each_reading_exactly_once(
    settings, tmp_path, record_format
):
    support.create_resources(settings, 2)
    stream = list(itertools.islice(generate(days=2, seed=11), 50_200))
    readings, probe = stream[:50_000], stream[50_000:]
    items = support.items_of(readings)
    for i, raw in zip((10, 20_000, 40_000), POISON, strict=True):
        items.insert(i, (raw, "poison"))
    # Fed in four parts, one at a time: kill i comes once the processor started i has learned
    # 7,000 readings, and part i alone holds over 12,000 it has yet to learn (it resumed at or
    # before the end of part i - 1). With one feed of everything, a restart slow enough on a
    # loaded machine left the last processor fewer than 7,000 to learn: it waited 180 s.
    parts = [items[i * len(items) // 4 : (i + 1) * len(items) // 4] for i in range(4)]

    def feed(part: list[tuple[bytes, str]]):
        if record_format == "packed":  # 100 readings a record, poison among them as parts
            return packing.feed_packed_in_background(settings, part, pause=0.06, per_record=100)
        return support.feed_in_background(settings, part, pause=0.15)

    flags = support.processor_flags(
        MODELS, HORIZONS, checkpoint_every=3000, checkpoint_seconds=2, shard_refresh=2
    )
    proc = support.start_processor(settings, tmp_path, *flags)
    try:
        expected = support.reference(
            readings, load_catalog(), TaskConfig(horizons=HORIZONS), MODELS
        )
        for part in parts[:3]:
            feeder = feed(part)
            support.wait_for(
                lambda p=proc: support.metric_sum(p, "iotcast_readings_learned_total") >= 7000,
                180,
                "the processor to learn 7000 readings",
            )
            proc.kill()
            feeder.join(120)
            assert not feeder.is_alive() and not feeder.errors
            proc = support.start_processor(settings, tmp_path, *flags)
        feeder = feed(parts[3])
        feeder.join(120)
        assert not feeder.is_alive() and not feeder.errors
        want = {d: dm.n_taken for d, dm in expected.items()}
        support.wait_for(
            lambda: support.device_samples(settings) == want,
            240,
            f"manifests to count {want} (last: {support.device_samples(settings)})",
            interval=2,
        )
        assert proc.stop(30) == 0, proc.log_tail()
    finally:
        proc.stop()

    # Exactly once: the counts match a single uninterrupted pass, and so do the models.
    assert support.device_samples(settings) == want
    checkpointed = support.load_models(settings)
    assert set(checkpointed) == set(expected)
    for device, models in checkpointed.items():
        assert models.n_learned == expected[device].n_learned
        assert models.n_duplicate == expected[device].n_duplicate
        assert support.same_predictions(
            models, expected[device], [r for r in probe if r.device == device]
        ), device

    # Poison was dead-lettered (at least once each; a kill may repeat one), never learned.
    s3 = settings.client("s3")
    lines = []
    for obj in s3.list_objects_v2(Bucket=settings.bucket, Prefix="dead-letter/").get(
        "Contents", []
    ):
        body = s3.get_object(Bucket=settings.bucket, Key=obj["Key"])["Body"].read()
        lines += [orjson.loads(line) for line in body.splitlines()]
    assert {base64.b64decode(d["payload_b64"]) for d in lines} == DEAD_LETTERED
    assert all(d["source"] == "processor" and d["shard"] and d["sequence"] for d in lines)
    parts = {base64.b64decode(d["payload_b64"]): d.get("part") for d in lines}
    assert parts[b"1"] is not None and parts[b"2"] == parts[b"1"] + 1
    if record_format == "single":  # a record of one message is dead-lettered as it is
        assert parts[POISON[0]] is None and parts[POISON[1]] is None

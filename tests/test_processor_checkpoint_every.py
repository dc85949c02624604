"""``iotcast process --checkpoint-every N`` counts readings, not Kinesis records: with packed
records (100 readings a record here) a shard is checkpointed every N readings, at the first
record boundary past them, as the flag's help says (it used to count records: 100 times
less often).

kinesalite for Kinesis, the moto server for S3 and DynamoDB; one shard, one processor.
"""

from __future__ import annotations

import itertools

import pytest

from telemetry.generate import generate
from tests import packing, support

MODELS = "rolling_mean"
PER_RECORD = 100
EVERY = 500  # readings: a checkpoint every 5 records of 100


def _put(settings, items: list[tuple[bytes, str]]) -> list[str]:
    """Put ``items`` packed, ``PER_RECORD`` a record, in order; their sequence numbers."""
    kinesis = settings.client("kinesis")
    seqs = []
    for sid, start, data in packing.packed_records(
        items, packing.open_shards(settings), PER_RECORD
    ):
        resp = kinesis.put_record(
            StreamName=settings.stream, Data=data, PartitionKey=sid, ExplicitHashKey=str(start)
        )
        seqs.append(resp["SequenceNumber"])
    return seqs


def _checkpointed_at(settings) -> str | None:
    manifest = support.manifests(settings).get("shardId-000000000000")
    return manifest.sequence if manifest else None


@pytest.mark.timeout(300)
def test_checkpoint_every_counts_readings_of_packed_records(settings, tmp_path):
    support.create_resources(settings, 1)
    readings = list(itertools.islice(generate(days=1, seed=5, devices=4), 4 * EVERY + 300))
    items = support.items_of(readings)
    flags = support.processor_flags(MODELS, (0,), checkpoint_every=EVERY)
    flags = (*flags, "--checkpoint-seconds", "3600")  # no periodic checkpoint in this test
    with support.stops_cleanly(support.start_processor(settings, tmp_path, *flags)) as proc:
        # Four steps of EVERY readings (5 records each): each ends in a checkpoint at its
        # last record, written to S3 (a record-counting processor would write none: 20 < 500).
        for step in range(4):
            seqs = _put(settings, items[step * EVERY : (step + 1) * EVERY])
            assert len(seqs) == EVERY // PER_RECORD
            support.wait_for(
                lambda last=seqs[-1]: _checkpointed_at(settings) == last,
                60,
                f"a checkpoint at the last record of step {step + 1} ({seqs[-1]}; "
                f"manifest at {_checkpointed_at(settings)})",
            )
        # Then 300 readings (3 records), fewer than EVERY: handled, and no checkpoint.
        at = _checkpointed_at(settings)
        _put(settings, items[4 * EVERY :])
        support.wait_for(
            lambda: support.metric_sum(proc, "iotcast_readings_processed_total") == len(items),
            60,
            "every reading processed",
        )
        assert _checkpointed_at(settings) == at
        checkpoints = support.metric_values(support.scrape(proc), "iotcast_checkpoints_total")
    ok = sum(v for k, v in checkpoints.items() if 'outcome="ok"' in k)
    assert ok == 4, checkpoints

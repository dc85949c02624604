"""Resharding 2 -> 4 during a run: parents finish first, models follow their devices.

With packed records (``tests/packing.py``) the bridge's side of a reshard is played too:
records packed for the parents (a stale shard map) land on the children, their header
naming a parent: stray copies, counted and not learned; the readings are sent again,
packed for the children, as the bridge does.

moto cannot reshard correctly (records keep going to the closed parent), so
Kinesis is kinesalite here; S3 and DynamoDB are the moto server.
"""

from __future__ import annotations

import itertools

import pytest

from online_models.catalog import load_catalog
from online_models.config import TaskConfig
from telemetry.generate import generate
from tests import packing, support

MODELS = "persistence,rolling_mean"


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("record_format", ["single", "packed"])
def test_split_from_two_to_four_shards_keeps_learning_exactly_once(
    settings, tmp_path, record_format
):
    support.create_resources(settings, 2)
    stream = list(itertools.islice(generate(days=1, seed=13, devices=10), 4_200))
    a, b, probe = stream[:2000], stream[2000:4000], stream[4000:]
    task = TaskConfig(horizons=(0, 60))
    flags = support.processor_flags(
        MODELS, checkpoint_every=500, session_timeout=4, shard_refresh=1
    )

    def counts(readings):
        return support.learned_counts(readings, load_catalog(), task, MODELS)

    packed = record_format == "packed"
    if packed:
        packing.put_packed(settings, support.items_of(a), per_record=50)
    else:
        support.put_records(settings, support.items_of(a))
    with support.stops_cleanly(support.start_processor(settings, tmp_path, *flags)) as proc:
        want = counts(a)
        support.wait_checkpointed(settings, want, 120, "batch A checkpointed")
        kinesis = settings.client("kinesis")
        parents = kinesis.list_shards(StreamName=settings.stream)["Shards"]
        for shard in parents:
            lo, hi = (
                int(shard["HashKeyRange"]["StartingHashKey"]),
                int(shard["HashKeyRange"]["EndingHashKey"]),
            )
            kinesis.split_shard(
                StreamName=settings.stream,
                ShardToSplit=shard["ShardId"],
                NewStartingHashKey=str((lo + hi) // 2),
            )
            kinesis.get_waiter("stream_exists").wait(
                StreamName=settings.stream, WaiterConfig={"Delay": 0.2}
            )
        strays = 0
        if packed:
            stale = [(s["ShardId"], int(s["HashKeyRange"]["StartingHashKey"])) for s in parents]
            some = support.items_of(b[:400])
            strays = packing.put_packed(settings, some, per_record=50, shards=stale)
            packing.put_packed(settings, support.items_of(b), per_record=50)
        else:
            support.put_records(settings, support.items_of(b))
        expected = support.reference(a + b, load_catalog(), task, MODELS)
        want = {d: dm.n_taken for d, dm in expected.items()}
        support.wait_checkpointed(settings, want, 240, "batch B learned on the children")
        misrouted = support.metric_sum(proc, "iotcast_records_misrouted_total")
        assert misrouted == strays and (strays > 0) == packed, (misrouted, strays)

    found = support.manifests(settings)
    parent_ids = {s["ShardId"] for s in parents}
    children = {sid: m for sid, m in found.items() if sid not in parent_ids}
    assert all(found[p].finished for p in parent_ids), "parents finished before their children"
    assert len(children) >= 3  # ten devices over four children
    for sid, manifest in children.items():
        shard = next(
            s
            for s in kinesis.list_shards(StreamName=settings.stream)["Shards"]
            if s["ShardId"] == sid
        )
        assert shard.get("ParentShardId") in parent_ids
        assert manifest.created >= max(found[p].created for p in parent_ids)
    # Each device lives in exactly one child, with the models it had in its parent plus batch B.
    owners = [d for m in children.values() for d in m.devices]
    assert len(owners) == len(set(owners))
    for device, models in support.load_models(settings).items():
        assert models.n_learned == want[device]
        assert support.same_predictions(
            models, expected[device], [r for r in probe if r.device == device]
        )

"""Resharding 2 -> 4 during a run: parents finish first, models follow their devices.

moto cannot reshard correctly (records keep going to the closed parent), so
Kinesis is kinesalite here; S3 and DynamoDB are the moto server.
"""

from __future__ import annotations

import itertools

import boto3
import pytest

from online_models.catalog import load_catalog
from online_models.config import TaskConfig
from telemetry.generate import generate
from telemetry.reading import encode
from tests.processor_support import (
    create_bucket,
    create_stream,
    device_samples,
    load_models,
    manifests,
    put_records,
    reference,
    same_predictions,
    start_processor,
    wait_for,
)

MODELS = "persistence,rolling_mean"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_split_from_two_to_four_shards_keeps_learning_exactly_once(settings, kinesalite, tmp_path):
    settings = settings.replace(kinesis_endpoint_url=kinesalite.url)
    create_stream(settings, shards=2)
    create_bucket(settings)
    stream = list(itertools.islice(generate(days=1, seed=13, devices=10), 4_200))
    a, b, probe = stream[:2000], stream[2000:4000], stream[4000:]
    task = TaskConfig(horizons=(0, 60))
    flags = (
        "--models",
        MODELS,
        "--horizons",
        "0,60",
        "--predictions",
        "none",
        "--checkpoint-every",
        "500",
        "--checkpoint-seconds",
        "1",
        "--session-timeout",
        "4",
        "--heartbeat",
        "1",
        "--shard-refresh",
        "1",
    )

    def counts(readings):
        return {
            d: dm.n_learned for d, dm in reference(readings, load_catalog(), task, MODELS).items()
        }

    put_records(settings, [(encode(r), r.device) for r in a])
    proc = start_processor(settings, tmp_path, *flags)
    try:
        want = counts(a)
        wait_for(lambda: device_samples(settings) == want, 120, "batch A checkpointed")
        kinesis = boto3.client("kinesis", **settings.kinesis_kwargs())
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
        put_records(settings, [(encode(r), r.device) for r in b])
        expected = reference(a + b, load_catalog(), task, MODELS)
        want = {d: dm.n_learned for d, dm in expected.items()}
        wait_for(
            lambda: device_samples(settings) == want,
            240,
            f"batch B learned on the children ({want})",
        )
    finally:
        assert proc.stop(30) == 0, proc.log_tail()

    found = manifests(settings)
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
    for device, models in load_models(settings).items():
        assert models.n_learned == want[device]
        assert same_predictions(models, expected[device], [r for r in probe if r.device == device])

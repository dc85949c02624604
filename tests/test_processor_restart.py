"""Restarts on the real moto server (Kinesis, S3, DynamoDB): graceful stop, lost lease table,
tampered checkpoint."""

from __future__ import annotations

import itertools

import boto3

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
    metric_sum,
    metric_values,
    put_records,
    reference,
    same_predictions,
    scrape,
    start_processor,
    wait_for,
)

MODELS = "persistence,rolling_mean"
FLAGS = (
    "--models",
    MODELS,
    "--horizons",
    "0,60",
    "--predictions",
    "none",
    "--checkpoint-every",
    "400",
    "--checkpoint-seconds",
    "1",
    "--session-timeout",
    "3",
    "--heartbeat",
    "1",
)


def test_restart_without_lease_table_resumes_from_s3_manifests(settings, tmp_path):
    create_stream(settings, shards=2)
    create_bucket(settings)
    stream = list(itertools.islice(generate(days=1, seed=21), 2_450))
    first, second, probe = stream[:1200], stream[1200:2400], stream[2400:]
    task = TaskConfig(horizons=(0, 60))
    put_records(settings, [(encode(r), r.device) for r in first])
    proc = start_processor(settings, tmp_path, *FLAGS)
    try:
        want = {d: dm.n_learned for d, dm in reference(first, load_catalog(), task, MODELS).items()}
        wait_for(lambda: device_samples(settings) == want, 120, f"first half checkpointed ({want})")
    finally:
        assert proc.stop(30) == 0, proc.log_tail()
    sequences = {s: m.sequence_int for s, m in manifests(settings).items()}

    # The lease table (with every DynamoDB checkpoint) is lost; S3 still has the manifests.
    ddb = boto3.client("dynamodb", **settings.boto_kwargs())
    ddb.delete_table(TableName=f"kinesis-checkpoints-{settings.app}")
    put_records(settings, [(encode(r), r.device) for r in second])
    proc = start_processor(settings, tmp_path, *FLAGS)
    try:
        expected = reference(first + second, load_catalog(), task, MODELS)
        want = {d: dm.n_learned for d, dm in expected.items()}
        wait_for(
            lambda: device_samples(settings) == want, 120, f"second half checkpointed ({want})"
        )
        # Resumed after the manifests' sequence numbers: the first half was not read again.
        assert metric_sum(proc, "iotcast_readings_processed_total") == len(second)
    finally:
        assert proc.stop(30) == 0, proc.log_tail()
    assert all(manifests(settings)[s].sequence_int > seq for s, seq in sequences.items())
    for device, models in load_models(settings).items():
        assert same_predictions(models, expected[device], [r for r in probe if r.device == device])


def test_tampered_checkpoint_is_refused_and_reported(settings, tmp_path):
    settings = settings.replace(hmac_key="k1")
    create_stream(settings, shards=1)
    create_bucket(settings)
    readings = list(itertools.islice(generate(days=1, seed=2), 300))
    put_records(settings, [(encode(r), r.device) for r in readings])
    flags = (*FLAGS, "--hmac-key", "k1")
    proc = start_processor(settings, tmp_path, *flags)
    try:
        wait_for(lambda: sum(device_samples(settings).values()) > 250, 120, "a signed checkpoint")
    finally:
        assert proc.stop(30) == 0, proc.log_tail()
    ((shard, manifest),) = manifests(settings).items()
    device, entry = next(iter(manifest.devices.items()))
    s3 = boto3.client("s3", **settings.boto_kwargs())
    s3.put_object(
        Bucket=settings.bucket, Key=entry.key, Body=b"not the model that was checkpointed"
    )

    put_records(
        settings, [(encode(r), r.device) for r in itertools.islice(generate(days=1, seed=3), 50)]
    )
    proc = start_processor(settings, tmp_path, *flags)
    try:
        wait_for(
            lambda: (
                metric_values(scrape(proc), "iotcast_checkpoints_total").get(
                    f'outcome="tampered",shard="{shard}"', 0
                )
                >= 1
            ),
            60,
            "the tampered checkpoint to be refused",
        )
        assert metric_sum(proc, "iotcast_readings_processed_total") == 0
    finally:
        assert proc.stop(30) == 0, proc.log_tail()
    assert "REFUSING shard" in proc.log_path.read_text()
    # Nothing was overwritten: the manifest still names the artifact a person must look at.
    assert manifests(settings)[shard].devices[device] == entry

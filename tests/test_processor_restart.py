"""Restarts on the real moto server (Kinesis, S3, DynamoDB): graceful stop, lost lease table,
tampered checkpoint; with one reading a record, and with packed records (``tests/packing.py``)."""

from __future__ import annotations

import itertools

import pytest

from online_models.catalog import load_catalog
from online_models.config import TaskConfig
from telemetry.generate import generate
from tests import packing, support

MODELS = "persistence,rolling_mean"
FLAGS = support.processor_flags(MODELS, checkpoint_every=400)


def _put(settings, readings, record_format: str) -> None:
    if record_format == "packed":
        packing.put_packed(settings, support.items_of(readings), per_record=50)
    else:
        support.put_records(settings, support.items_of(readings))


@pytest.mark.parametrize("record_format", ["single", "packed"])
def test_restart_without_lease_table_resumes_from_s3_manifests(settings, tmp_path, record_format):
    support.create_resources(settings, 2)
    stream = list(itertools.islice(generate(days=1, seed=21), 2_450))
    first, second, probe = stream[:1200], stream[1200:2400], stream[2400:]
    task = TaskConfig(horizons=(0, 60))
    _put(settings, first, record_format)
    with support.stops_cleanly(support.start_processor(settings, tmp_path, *FLAGS)) as proc:
        want = support.learned_counts(first, load_catalog(), task, MODELS)
        support.wait_checkpointed(settings, want, 120, "first half checkpointed")
    sequences = {s: m.sequence_int for s, m in support.manifests(settings).items()}

    # The lease table (with every DynamoDB checkpoint) is lost; S3 still has the manifests.
    ddb = settings.client("dynamodb")
    ddb.delete_table(TableName=f"kinesis-checkpoints-{settings.app}")
    _put(settings, second, record_format)
    with support.stops_cleanly(support.start_processor(settings, tmp_path, *FLAGS)) as proc:
        expected = support.reference(first + second, load_catalog(), task, MODELS)
        want = {d: dm.n_taken for d, dm in expected.items()}
        support.wait_checkpointed(settings, want, 120, "second half checkpointed")
        # Resumed after the manifests' sequence numbers: the first half was not read again.
        assert support.metric_sum(proc, "iotcast_readings_processed_total") == len(second)
    assert all(support.manifests(settings)[s].sequence_int > seq for s, seq in sequences.items())
    for device, models in support.load_models(settings).items():
        assert support.same_predictions(
            models, expected[device], [r for r in probe if r.device == device]
        )


def test_tampered_checkpoint_is_refused_and_reported(settings, tmp_path):
    settings = settings.replace(hmac_key="k1")
    support.create_resources(settings, 1)
    readings = list(itertools.islice(generate(days=1, seed=2), 300))
    support.put_records(settings, support.items_of(readings))
    flags = (*FLAGS, "--hmac-key", "k1")
    with support.stops_cleanly(support.start_processor(settings, tmp_path, *flags)) as proc:
        support.wait_for(
            lambda: sum(support.device_samples(settings).values()) > 250, 120, "a signed checkpoint"
        )
    ((shard, manifest),) = support.manifests(settings).items()
    device, entry = next(iter(manifest.devices.items()))
    s3 = settings.client("s3")
    s3.put_object(
        Bucket=settings.bucket, Key=entry.key, Body=b"not the model that was checkpointed"
    )

    support.put_records(settings, support.items_of(itertools.islice(generate(days=1, seed=3), 50)))
    with support.stops_cleanly(support.start_processor(settings, tmp_path, *flags)) as proc:
        support.wait_for(
            lambda: (
                support.metric_values(support.scrape(proc), "iotcast_checkpoints_total").get(
                    f'outcome="tampered",shard="{shard}"', 0
                )
                >= 1
            ),
            60,
            "the tampered checkpoint to be refused",
        )
        assert support.metric_sum(proc, "iotcast_readings_processed_total") == 0
    assert "REFUSING shard" in proc.log_path.read_text()
    # Nothing was overwritten: the manifest still names the artifact a person must look at.
    assert support.manifests(settings)[shard].devices[device] == entry

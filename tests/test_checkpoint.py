"""Checkpoint store on the real moto S3: artifacts and manifests, sha256 and HMAC verification."""

from __future__ import annotations

import pickle

import pytest

from online_models.catalog import load_catalog
from online_models.config import TaskConfig
from online_models.device import DeviceModels
from stream.checkpoint import CheckpointStore, ShardManifest, TamperedCheckpoint
from telemetry.generate import generate


@pytest.fixture
def store(settings, boto):
    s3 = boto("s3")
    s3.create_bucket(Bucket=settings.bucket)
    return CheckpointStore(s3, settings.bucket, settings.app, hmac_key="secret")


def _trained() -> DeviceModels:
    readings = [r for r in generate(days=0.02, seed=3) if r.device == "b8:27:eb:bf:9d:51"]
    dm = DeviceModels("b8:27:eb:bf:9d:51", load_catalog(), TaskConfig(horizons=(0, 60)))
    for r in readings:
        dm.step(r)
    return dm


def test_checkpoint_round_trip_restores_the_same_models(store):
    dm = _trained()
    payload = pickle.dumps(dm)
    entry = store.put_device(
        dm.device, 3, payload, dm.n_learned, {}, shard_id="shardId-0", sequence="99"
    )
    store.put_shard_manifest(ShardManifest("shardId-0", "99", {dm.device: entry}))
    manifest = store.load_shard_manifest("shardId-0")
    assert manifest.sequence_int == 99 and manifest.devices[dm.device].samples == dm.n_learned
    assert entry.key.startswith(f"models/{store.app}/{dm.device}/all/00000003-")
    restored = pickle.loads(store.load_device(dm.device, manifest.devices[dm.device]))
    assert restored.summary() == dm.summary()
    beside = store.s3.get_object(
        Bucket=store.bucket, Key=entry.key.replace("model.pkl", "manifest.json")
    )
    assert b'"sha256"' in beside["Body"].read()


def test_tampered_artifact_is_refused(store):
    dm = _trained()
    entry = store.put_device(
        dm.device, 1, pickle.dumps(dm), dm.n_learned, {}, shard_id="s", sequence="5"
    )
    payload = bytearray(pickle.dumps(dm))
    payload[len(payload) // 2] ^= 0x01
    store.s3.put_object(Bucket=store.bucket, Key=entry.key, Body=bytes(payload))
    with pytest.raises(TamperedCheckpoint) as exc:
        store.load_device(dm.device, entry)
    assert exc.value.reason == "bad_sha256"


def test_tampered_or_unsigned_manifest_is_refused(store):
    store.put_shard_manifest(
        ShardManifest("shardId-1", "1000000000000000000000000000000000000000007", {})
    )
    key = f"checkpoints/{store.app}/shardId-1/manifest.json"
    raw = store.s3.get_object(Bucket=store.bucket, Key=key)["Body"].read()
    store.s3.put_object(Bucket=store.bucket, Key=key, Body=raw.replace(b"0007", b"0009"))
    with pytest.raises(TamperedCheckpoint) as exc:
        store.load_shard_manifest("shardId-1")
    assert exc.value.reason == "bad_signature"
    unsigned = CheckpointStore(store.s3, store.bucket, store.app)
    unsigned.put_shard_manifest(ShardManifest("shardId-2", "1", {}))
    with pytest.raises(TamperedCheckpoint) as exc:
        store.load_shard_manifest("shardId-2")
    assert exc.value.reason == "unsigned"


def test_sequence_numbers_compare_as_integers():
    # 56-digit AWS sequence numbers: "9..." > "10..." as strings, not as numbers.
    small = ShardManifest("s", "9" * 55, {})
    big = ShardManifest("s", "1" + "0" * 55, {})
    assert small.sequence > big.sequence and small.sequence_int < big.sequence_int


def test_missing_manifest_is_none(store):
    assert store.load_shard_manifest("shardId-404") is None

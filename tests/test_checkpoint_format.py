"""Checkpoints carry their model-set format; old ones load (or migrate), unreadable ones are refused.

The fixtures under ``tests/fixtures/checkpoints/v<N>/`` are real checkpoints written by
``make_fixture.py`` with the code of format N; ``v1`` was written by the code before
formats were recorded (its manifests carry no ``format``).  Each is uploaded to the
moto server's S3 and read back the way the processor reads it.
"""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import orjson
import pytest

from online_models import checkpoint_format
from online_models.catalog import load_catalog
from online_models.config import TaskConfig
from stream.checkpoint import CheckpointStore, TamperedCheckpoint, sha256_hex
from stream.registry import ModelRegistry
from telemetry.generate import generate
from telemetry.reading import encode
from tests.support import (
    IOTCAST,
    create_stream,
    device_samples,
    manifests,
    put_records,
    reference,
    same_predictions,
    start_processor,
    wait_for,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "checkpoints"
VERSIONS = sorted(FIXTURES.glob("v*/expected.json"))


def upload(settings, root: Path) -> dict:
    """Put every file of a fixture into the test's bucket (key = path); its expected.json."""
    s3 = settings.client("s3")
    s3.create_bucket(Bucket=settings.bucket)
    for path in root.rglob("*"):
        if path.is_file() and path.name != "expected.json":
            s3.put_object(
                Bucket=settings.bucket, Key=str(path.relative_to(root)), Body=path.read_bytes()
            )
    return orjson.loads((root / "expected.json").read_bytes())


def store_for(settings, app: str) -> CheckpointStore:
    return CheckpointStore(settings.client("s3"), settings.bucket, app)


def fixture_readings(expected: dict, extra: int = 0) -> list:
    n = expected["readings"] + expected["probe"] + extra
    return list(itertools.islice(generate(days=1, seed=expected["seed"], devices=3), n))


def test_there_is_a_fixture_of_the_format_this_code_writes() -> None:
    formats = {orjson.loads(p.read_bytes())["format"] for p in VERSIONS}
    assert checkpoint_format.FORMAT in formats, (
        "run tests/fixtures/checkpoints/make_fixture.py after bumping FORMAT"
    )
    assert 1 in formats  # the checkpoints written before formats were recorded


def test_the_legacy_fixture_records_no_format() -> None:
    raw = (
        FIXTURES / "v1" / "checkpoints" / "fixture" / "shardId-000000000000" / "manifest.json"
    ).read_bytes()
    assert b'"format"' not in raw  # written by the code of commit 0e4ad41


@pytest.mark.parametrize("expected_json", VERSIONS, ids=lambda p: p.parent.name)
def test_every_fixture_loads_or_is_refused_with_what_to_do(settings, expected_json: Path) -> None:
    root = expected_json.parent
    expected = upload(settings, root)
    fmt, app = expected["format"], expected["app"]
    store = store_for(settings, app)
    manifest = store.load_shard_manifest(expected["shard"])
    assert manifest is not None and manifest.sequence == expected["sequence"]
    assert set(manifest.devices) == set(expected["devices"])
    probe = fixture_readings(expected)[expected["readings"] :]
    for device, entry in manifest.devices.items():
        assert entry.format == fmt
        if fmt not in checkpoint_format.READS:
            with pytest.raises(TamperedCheckpoint) as refused:
                store.load_models(device, entry)
            assert refused.value.reason == "incompatible_format"
            assert f"format {fmt}" in str(refused.value)
            continue
        models = store.load_models(device, entry)
        assert models.device == device
        assert models.n_learned == expected["devices"][device]["n_learned"] == entry.samples
        steps = [models.step(r) for r in probe if r.device == device]
        assert len(steps) == len(expected["devices"][device]["probe"])
        if fmt == checkpoint_format.FORMAT:
            # The current format: the loaded models predict what they did when written, to the
            # last few bits (a reordering of the same arithmetic, as when the scaler's learn
            # and transform became one pass, moves a prediction by an ulp or two).
            got = [
                {
                    "ts": r.ts,
                    "status": s.status,
                    "predictions": sorted([p.model, p.horizon, p.value] for p in s.predictions),
                }
                for r, s in zip((r for r in probe if r.device == device), steps, strict=True)
            ]
            want = expected["devices"][device]["probe"]
            assert [(g["ts"], g["status"]) for g in got] == [(w["ts"], w["status"]) for w in want]
            for g, w in zip(got, want, strict=True):
                assert [p[:2] for p in g["predictions"]] == [p[:2] for p in w["predictions"]]
                values = [p[2] for p in g["predictions"]]
                assert values == pytest.approx([p[2] for p in w["predictions"]], rel=1e-12), device
        else:
            # An older format, migrated: it goes on learning and predicting.
            assert any(s.predictions for s in steps)


def test_a_newer_format_is_refused_before_anything_is_unpickled(settings, unique) -> None:
    s3 = settings.client("s3")
    s3.create_bucket(Bucket=settings.bucket)
    store = store_for(settings, settings.app)
    newer = checkpoint_format.FORMAT + 1
    payload = b"a pickle this code must never open"
    entry = store.put_device("d1", 1, payload, 10, {}, shard_id="s", sequence="5")
    entry = type(entry)(**{**entry.__dict__, "format": newer})
    assert entry.sha256 == sha256_hex(payload)
    with pytest.raises(TamperedCheckpoint) as refused:
        store.load_models("d1", entry)
    message = str(refused.value)
    assert refused.value.reason == "incompatible_format"
    assert f"model-set format {newer}" in message
    assert f"writes format {checkpoint_format.FORMAT}" in message
    assert "newer iotcast" in message and "Run the newer image" in message
    # ... and the same through the registry (operator commands: show, export, rollback).
    registry = ModelRegistry(store)
    beside = f"models/{settings.app}/d1/all/{entry.key.rsplit('/', 2)[-2]}/manifest.json"
    body = orjson.loads(s3.get_object(Bucket=settings.bucket, Key=beside)["Body"].read())
    s3.put_object(Bucket=settings.bucket, Key=beside, Body=orjson.dumps({**body, "format": newer}))
    version = registry.version("d1", entry.key.rsplit("/", 2)[-2])
    assert version.format == newer
    with pytest.raises(TamperedCheckpoint, match="newer iotcast"):
        registry.load(version)


def test_a_dropped_old_format_is_refused_naming_what_to_do(monkeypatch) -> None:
    monkeypatch.setattr(checkpoint_format, "FORMAT", 3)
    monkeypatch.setattr(checkpoint_format, "READS", {2: lambda m: m, 3: lambda m: m})
    with pytest.raises(checkpoint_format.IncompatibleFormat) as refused:
        checkpoint_format.loads(b"never unpickled", 1, "d1")
    assert "no longer reads it" in str(refused.value) and "reads 2, 3" in str(refused.value)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("fixture", ["v1", "v4"])
def test_the_processor_resumes_from_a_previous_format_checkpoint_and_rollback_still_works(
    settings_moto_only, tmp_path, fixture
):
    """The rollout case: a processor of this code takes a shard whose checkpoint an older code
    wrote (v1: before formats were recorded; v4: the code before bundles, one object per
    device), skips what it had learned, learns the rest exactly once, writes bundles from then
    on, lists both layouts, and the operator can roll a device back to the old version.  On
    moto's Kinesis: the fixture's manifest names the sequence number moto gave the old code's
    400th record (moto numbers records 1, 2, ...)."""
    settings = settings_moto_only
    expected = orjson.loads((FIXTURES / fixture / "expected.json").read_bytes())
    settings = settings.replace(app=expected["app"])  # the fixture's keys name its app
    upload(settings, FIXTURES / fixture)
    create_stream(settings, shards=1)
    readings = fixture_readings(expected, extra=300)
    old, new = readings[: expected["readings"]], readings[expected["readings"] : -40]
    probe = readings[-40:]
    # The stream holds what the old processor had learned (records 1..400) and then new ones.
    put_records(settings, [(encode(r), r.device) for r in old + new])
    models, horizons = expected["models"], tuple(expected["horizons"])
    task = TaskConfig(horizons=horizons)
    want = reference(old + new, load_catalog(), task, models)
    proc = start_processor(
        settings, tmp_path, "--models", models, "--horizons", ",".join(map(str, horizons)),
        "--predictions", "none", "--checkpoint-seconds", "1", "--session-timeout", "6",
    )  # fmt: skip
    try:
        counts = {d: dm.n_taken for d, dm in want.items()}
        wait_for(lambda: device_samples(settings) == counts, 120, f"{counts} learned")
        (manifest,) = manifests(settings).values()
        assert {e.format for e in manifest.devices.values()} == {checkpoint_format.FORMAT}
        assert all(e.offset is not None for e in manifest.devices.values())  # bundles now
        registry = ModelRegistry(store_for(settings, settings.app))
        for device, dm in want.items():
            versions, _ = registry.versions(device)
            assert versions[-1].layout == "object" and versions[-1].version == 1  # the old one
            assert versions[0].layout == "bundle"
            loaded = registry.load(versions[0])
            assert loaded.n_learned == dm.n_learned  # the 400 old readings not learned again
            if expected["format"] == checkpoint_format.FORMAT:
                assert same_predictions(loaded, dm, [r for r in probe if r.device == device])
        # Roll a device back to the legacy artifact: the running processor loads it.
        device = sorted(want)[0]
        rolled = subprocess.run(
            [IOTCAST, "models", "rollback", device, "--to", "1", "--reason", "format test",
             "--endpoint-url", str(settings.endpoint_url), "--region", settings.region,
             "--bucket", settings.bucket, "--app", settings.app, "--wait", "30"],
            capture_output=True, text=True, timeout=90,
        )  # fmt: skip
        assert rolled.returncode == 0 and "applied by" in rolled.stdout, (
            rolled.stdout + rolled.stderr
        )
        n_old = expected["devices"][device]["n_learned"]
        wait_for(lambda: device_samples(settings)[device] == n_old, 30, "the rollback checkpointed")
    finally:
        assert proc.stop(30) == 0, proc.log_tail()


def test_the_anomaly_watch_is_checkpointed_and_older_formats_get_a_fresh_one(settings) -> None:
    """Format 6 carries each device's watch (what it learned of the device's cadence: a long
    silence is reported at once after a restore); format 5 migrates to a fresh watch, which
    has learned nothing yet and reports nothing."""
    silent = {}
    for fmt in (5, 6):
        expected = upload(
            settings.replace(bucket=f"{settings.bucket}-v{fmt}"), FIXTURES / f"v{fmt}-bundle"
        )
        store = store_for(settings.replace(bucket=f"{settings.bucket}-v{fmt}"), expected["app"])
        manifest = store.load_shard_manifest(expected["shard"])
        assert manifest is not None
        for device, entry in manifest.devices.items():
            models = store.load_models(device, entry)
            assert models.watch is not None and models.ongoing is not None
            assert models.last_ts is not None
            event = models.silence(models.last_ts + 86_400)
            silent[(fmt, device)] = None if event is None else (event.kind, event.figures["phase"])
    assert {v for (fmt, _), v in silent.items() if fmt == 5} == {None}
    assert {v for (fmt, _), v in silent.items() if fmt == 6} == {("silent", "start")}

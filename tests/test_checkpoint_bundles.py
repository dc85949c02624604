"""Checkpoints as one bundle per shard per checkpoint, on the real moto S3: write requests
counted, one device restored with one ranged GET, versions listed along their chain, and
retention (the last N versions and every pinned one) through ``iotcast models prune``."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import pickle
from concurrent.futures import ThreadPoolExecutor

import pytest

from iotcast.commands import models as models_command
from iotcast.settings import Settings
from stream.checkpoint import (
    ArtifactKey,
    CheckpointStore,
    ShardManifest,
    TamperedCheckpoint,
    bundles_prefix,
)
from stream.checkpointing import Checkpointer
from stream.registry import ModelRegistry
from stream.state import DeviceSlot, ShardState
from tests.support import S3Calls as Calls
from tests.support import create_bucket

PART = 8 * 1024 * 1024


class Blob:
    """A device's models as the checkpointer sees them: picklable, with a summary."""

    def __init__(self, device: str, size: int, n: int = 10) -> None:
        self.device = device
        self.state = os.urandom(size)  # incompressible: the bundle's size is known
        self.n_learned = n

    def summary(self) -> dict:
        return {"n_learned": self.n_learned, "champion": {"0": "linear"}, "models": []}


class Owner:
    """The lease side of a checkpoint: this process holds every shard."""

    def check_owner(self, shard_id: str, ref: str) -> None:
        pass

    def get_ref(self) -> str:
        return "test"

    async def write_sequence(self, shard_id: str, sequence: str) -> None:
        self.sequence = sequence


@pytest.fixture
def store(settings_moto_only: Settings) -> CheckpointStore:
    create_bucket(settings_moto_only)
    s = settings_moto_only
    return CheckpointStore(s.client("s3"), s.bucket, s.app, s.hmac_key)


def checkpoint(store: CheckpointStore, state: ShardState) -> bool:
    async def run() -> bool:
        with ThreadPoolExecutor(4) as pool:
            owner = Owner()
            writer = Checkpointer(store, pool, owner, owner, on_lost_lease=None)
            return await writer.checkpoint(state, final=True)

    return asyncio.run(run())


def shard_of(devices: int, size: int) -> ShardState:
    state = ShardState("shardId-000000000000", epoch=1)
    for i in range(devices):
        device = f"dev-{i:05d}"
        state.devices[device] = DeviceSlot(Blob(device, size))
        state.changed(device)
    state.last_seq = "1000"
    state.dead_letters.append(b'{"reason": "test"}\n')
    state.events.append(b'{"event": "test"}\n')
    return state


@pytest.mark.parametrize(("devices", "size"), [(3, 2000), (2000, 2000), (2600, 8 * 1024)])
def test_a_checkpoint_is_at_most_five_writes_plus_one_per_part(store, devices, size):
    calls = Calls(store.s3)
    state = shard_of(devices, size)
    assert checkpoint(store, state)
    (manifest,) = [store.load_shard_manifest(state.shard_id)]
    (bundle,) = {e.key for e in manifest.devices.values()}
    total = store.s3.head_object(Bucket=store.bucket, Key=bundle)["ContentLength"]
    parts = calls.names().count("UploadPart")
    assert parts == (-(-total // PART) if total > PART else 0)
    writes = calls.writes()
    # dead letters, events, the bundle (1 PUT, or create + parts + complete), the manifest
    assert len(writes) <= 5 + parts, writes
    assert len(writes) == (4 if parts == 0 else 5 + parts), writes
    print(f"{devices} devices, bundle {total / 2**20:.1f} MiB: {len(writes)} S3 writes")


def test_restoring_one_device_is_one_ranged_get_and_a_changed_byte_is_refused(store):
    state = shard_of(50, 3000)
    assert checkpoint(store, state)
    manifest = store.load_shard_manifest(state.shard_id)
    entry = manifest.devices["dev-00017"]
    calls = Calls(store.s3)
    restored = pickle.loads(store.load_device("dev-00017", entry))
    assert restored.state == state.devices["dev-00017"].models.state
    ((name, params),) = calls.seen
    assert name == "GetObject" and params["Range"] == entry.extent.range_header
    # A takeover reads the whole shard in a few ranged GETs, each device checked.
    calls.seen.clear()
    payloads = store.load_devices(manifest.devices)
    assert len(payloads) == 50 and calls.names() == ["GetObject"]
    # One changed byte of the bundle: that device is refused.
    body = bytearray(store.s3.get_object(Bucket=store.bucket, Key=entry.key)["Body"].read())
    body[entry.offset + 10] ^= 1
    store.s3.put_object(Bucket=store.bucket, Key=entry.key, Body=bytes(body))
    with pytest.raises(TamperedCheckpoint) as refused:
        store.load_device("dev-00017", entry)
    assert refused.value.reason == "bad_sha256"
    assert store.load_device("dev-00018", manifest.devices["dev-00018"])


def write_versions(store: CheckpointStore, n: int, quiet: str | None = None, before=None):
    """``n`` checkpoints of device ``a`` (and one of ``quiet``, in the first), as the
    checkpointer writes them; after checkpoint ``v``, ``before(v)`` runs."""
    committed: dict = {}
    payloads = {}
    for v in range(1, n + 1):
        payloads[v] = pickle.dumps({"a": v})
        metrics = {"champion": {"0": "persistence"}, "models": {"linear@0": {"n": v}}}
        artifacts = [("a", v, payloads[v], v, metrics)]
        if quiet and v == 1:
            artifacts.append((quiet, 1, pickle.dumps({quiet: 1}), 1, metrics))
        entries = store.put_bundle("shardId-000000000000", str(v), artifacts, committed)
        committed = {**committed, **entries}
        store.put_shard_manifest(ShardManifest("shardId-000000000000", str(v), committed))
        if before:
            before(v)
    return payloads


def cli(settings: Settings, *argv: str) -> tuple[int, str]:
    from iotcast.cli import build_parser

    args = build_parser().parse_args(
        ["models", *argv, "--endpoint-url", str(settings.endpoint_url), "--bucket",
         settings.bucket, "--app", settings.app]
    )  # fmt: skip
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = models_command.run(settings, args)
    return code, out.getvalue()


def test_versions_chain_back_through_the_bundles(store):
    payloads = write_versions(store, 6)
    registry = ModelRegistry(store)
    versions, more = registry.versions("a")
    assert [v.version for v in versions] == [6, 5, 4, 3, 2, 1] and not more
    assert all(v.layout == "bundle" for v in versions)
    assert registry.payload(versions[2]) == payloads[4]
    newest, more = registry.versions("a", 2)
    assert [v.version for v in newest] == [6, 5] and more
    assert registry.resolve("a", "2") == versions[4].version_id
    assert registry.version("a", versions[4].version_id).samples == 2


def test_prune_keeps_the_last_n_versions_and_every_pinned_one(store, settings_moto_only):
    """30 versions of a device; version 3 promoted (while current), a rollback to version 5;
    a quiet device written once.  After pruning with N=10: versions 21..30, 3 and 5 remain
    (3 and 5 as copies of their own), the quiet device's bundle stays, nothing else does."""
    settings = settings_moto_only

    def operator(v: int) -> None:
        if v == 3:
            code, out = cli(settings, "promote", "a", "linear", "--wait", "0", "--reason", "t")
            assert code == 0, out

    payloads = write_versions(store, 30, quiet="q", before=operator)
    code, out = cli(settings, "rollback", "a", "--to", "5", "--wait", "0", "--reason", "t")
    assert code == 0, out
    registry = ModelRegistry(store)
    assert len(registry.version_ids("a")) == 30

    code, out = cli(settings, "prune", "--keep", "10", "--min-age", "0", "--dry-run", "--json")
    assert code == 0 and json.loads(out)["bundles"]["deleted"] == 19  # 2..20 (1: the quiet one's)
    assert len(registry.version_ids("a")) == 30  # a dry run deletes nothing
    code, out = cli(settings, "prune", "--keep", "10", "--min-age", "0", "--json")
    assert code == 0, out
    summary = json.loads(out)
    assert summary["bundles"]["deleted"] == 19 and summary["pinned"]["a"]

    registry = ModelRegistry(store)
    versions, more = registry.versions("a")
    assert sorted(v.version for v in versions) == [3, 5, *range(21, 31)] and not more
    for v in versions:  # each one loads, its bytes verified
        assert registry.payload(v) == payloads[v.version]
        assert v.pinned == (v.version in (3, 5))
        assert v.layout == ("object" if v.version in (3, 5) else "bundle")
    left = store.s3.list_objects_v2(Bucket=store.bucket, Prefix=bundles_prefix(store.app))
    assert len(left["Contents"]) == 11  # 21..30, and the first (the quiet device's current)
    assert registry.payload(registry.versions("q")[0][0]) == pickle.dumps({"q": 1})
    folders = store.s3.list_objects_v2(
        Bucket=store.bucket, Prefix=ArtifactKey.versions_prefix(store.app, "a")
    )
    assert {ArtifactKey.parse(o["Key"]).version for o in folders["Contents"]} == {3, 5}
    # A second prune finds nothing more to delete.
    code, out = cli(settings, "prune", "--keep", "10", "--min-age", "0", "--json")
    assert json.loads(out)["bundles"]["deleted"] == 0


def test_prune_keeps_the_newest_versions_stored_as_objects(store, settings_moto_only):
    """Versions written before bundles (one object each) count toward the N kept."""
    for v in range(1, 16):
        store.put_device("old", v, pickle.dumps(v), v, {}, shard_id="s", sequence=str(v))
    code, out = cli(settings_moto_only, "prune", "--keep", "10", "--min-age", "0", "--json")
    assert code == 0, out
    registry = ModelRegistry(store)
    assert [int(i[:8]) for i in registry.version_ids("old")] == list(range(6, 16))

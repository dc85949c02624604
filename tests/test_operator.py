"""The operator's commands against a running stack: moto server (Kinesis, S3, DynamoDB) and a
real ``iotcast process`` child, fed through PutRecords.

One stack for the module (a processor start costs seconds): the tests run in file order,
status / list / show / export first, then a promotion, then a rollback, then a restart that
must not apply the commands again.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import io
import itertools
import json
import pickle
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from iotcast.cli import local_env, main
from iotcast.settings import Settings
from online_models.catalog import load_catalog
from online_models.config import TaskConfig
from online_models.features import nowcast_view
from stream.checkpoint import ArtifactKey, CheckpointStore, sha256_hex
from stream.control import Command, ControlChannel, ControlLog
from stream.core import StreamCore
from stream.events import read_events
from stream.registry import ModelRegistry
from stream.state import DeviceSlot, ShardState
from telemetry.generate import generate
from tests import support

MODELS = "persistence,rolling_mean,linear"
TASK = TaskConfig(horizons=(0, 60))
FLAGS = support.processor_flags(MODELS, checkpoint_every=300)


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


class Stack:
    """The module's stack: settings, the readings fed so far, the processor."""

    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.settings = settings
        self.workdir = workdir
        stream = list(itertools.islice(generate(days=1, seed=7), 2_400))
        self.fed, self.later = stream[:1500], stream[1500:]
        self.proc = None

    def start(self) -> None:
        """The processor, watching every device of the stream (per-device series in /metrics)."""
        devices = sorted({r.device for r in self.fed + self.later})
        self.proc = support.start_processor(
            self.settings, self.workdir, *FLAGS, "--watch", ",".join(devices)
        )

    def cli(self, *argv: str, check: bool = True, subprocess_: bool = False) -> Done:
        """Run ``iotcast <argv>`` in this process (``iotcast.cli.main``) or as a child process."""
        full = support.operator_argv(self.settings, *argv)
        if subprocess_:
            child = subprocess.run(
                [support.IOTCAST, *full],
                capture_output=True,
                text=True,
                timeout=120,
                env=local_env(self.settings),
            )
            done = Done(child.returncode, child.stdout, child.stderr)
        else:
            out, err = io.StringIO(), io.StringIO()
            with (
                contextlib.redirect_stdout(out),
                contextlib.redirect_stderr(err),
                support.endpoints_env(self.settings),
            ):
                code = main(full)
            done = Done(code, out.getvalue(), err.getvalue())
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done

    def json(self, *argv: str, code: int = 0) -> dict:
        done = self.cli(*argv, check=False)
        assert done.returncode == code, done.stdout + done.stderr
        return json.loads(done.stdout)

    def registry(self) -> ModelRegistry:
        s3 = self.settings.client("s3")
        return ModelRegistry(
            CheckpointStore(s3, self.settings.bucket, self.settings.app, self.settings.hmac_key)
        )

    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.proc.port}/metrics"


@pytest.fixture(scope="module")
def stack(moto_server, kinesalite, tmp_path_factory):
    settings = support.settings_on(moto_server.url, kinesis_url=kinesalite.url)
    support.create_resources(settings, 1)
    st = Stack(settings, tmp_path_factory.mktemp("operator"))
    support.put_records(settings, support.items_of(st.fed))
    st.start()
    want = support.learned_counts(st.fed, load_catalog(), TASK, MODELS)
    try:
        support.wait_checkpointed(settings, want, 90, "the readings checkpointed")
        yield st
    finally:
        assert st.proc.stop() == 0, st.proc.log_tail()


def test_status_reports_leases_checkpoints_lag_and_devices(stack):
    want = {d: dm for d, dm in support.reference(stack.fed, load_catalog(), TASK, MODELS).items()}
    report = stack.json(
        "status", "--json", "--scrape", stack.metrics_url(), "http://127.0.0.1:9/metrics", code=1
    )
    (shard,) = report["shards"]
    assert shard["open"] and shard["owner"] and shard["lease_age_seconds"] < 10
    (process,) = report["processes"]
    assert (
        shard["owner"] == f"{stack.settings.app}/{process['process']}"
    )  # async-kinesis' lease ref
    manifest = stack.registry().shard_manifests()[shard["shard_id"]]
    assert shard["checkpoint_sequence"] == manifest.sequence and shard["devices"] == len(want)
    assert shard["records_behind"] == 0 and not shard["records_behind_capped"]
    processor, down = report["components"]
    assert processor["reachable"] and processor["role"] == "processor"
    assert processor["shards_owned"] == [shard["shard_id"]] and processor["learned"] == sum(
        dm.n_learned for dm in want.values()
    )
    assert not down["reachable"]
    devices = {d["device"]: d for d in report["devices"]}
    assert {d: v["samples"] for d, v in devices.items()} == {
        d: dm.n_taken for d, dm in want.items()
    }
    for device, dm in want.items():
        assert devices[device]["champion"] == dm.summary()["champion"]
        assert devices[device]["live_champion"] == dm.champion(0)
        champion_mae = dm.stats(dm.champion(0), 0).rolling_mae
        assert devices[device]["champion_rolling_mae"]["0"] == pytest.approx(
            champion_mae, rel=1e-12
        )
    # The status command says so when a component it was asked to check is down.
    assert (
        stack.cli(
            "status", "--scrape", "http://127.0.0.1:9/metrics", check=False, subprocess_=True
        ).returncode
        == 1
    )


def test_models_list_show_and_export_give_verified_versions(stack, tmp_path):
    listing = stack.json("models", "list", "--json", "--limit", "0")
    current = stack.registry().current()
    assert set(listing) == set(current)
    for device, info in listing.items():
        versions = info["versions"]
        assert len(versions) == info["versions_total"] >= 2  # several checkpoints were written
        (cur,) = [v for v in versions if v["current"]]
        assert cur["key"] == current[device][1].key and cur["sha256"] == current[device][1].sha256
        assert [v["version"] for v in versions] == sorted(
            (v["version"] for v in versions), reverse=True
        )
    device = sorted(listing)[0]
    shown = stack.json("models", "show", device, "linear", "--json")
    entry = current[device][1]
    assert shown["version"]["samples"] == entry.samples
    assert {(f["model"], f["horizon"]) for f in shown["models"]} == {("linear", 0), ("linear", 60)}
    assert shown["models"][0]["n"] == entry.metrics["models"]["linear@0"]["n"]
    assert stack.cli("models", "show", device, "forest", check=False).returncode == 1

    out = tmp_path / "linear.pkl"
    stack.cli("models", "export", device, "linear", "--out", str(out))
    side = json.loads(out.with_name("linear.pkl.manifest.json").read_text())
    assert side["exported"]["sha256"] == sha256_hex(out.read_bytes())
    assert side["sha256"] == entry.sha256 and side["samples"] == entry.samples
    exported = pickle.loads(out.read_bytes())
    models = stack.registry().load(stack.registry().version(device, entry.version_id))
    probe = [r for r in stack.later if r.device == device][:20]
    features = copy.deepcopy(exported["features"])
    for r in probe:  # the exported model predicts what the checkpoint's model predicts
        x = nowcast_view(features.update(r), exported["target"])
        assert exported["horizons"][0].predict_one(x) == models.horizons[0].models[
            "linear"
        ].predict_one(x)
    whole = tmp_path / "all.pkl"
    stack.cli("models", "export", device, "all", "--out", str(whole))
    assert support.same_predictions(pickle.loads(whole.read_bytes()), models, probe)


def assert_applied_once(stack: Stack, cli_output: str) -> None:
    """The processor applied the command the CLI issued, exactly once."""
    command_id = cli_output.split("issued ", 1)[1].split(":", 1)[0]
    support.wait_for(
        lambda: f"operator command {command_id} applied" in stack.proc.log_path.read_text(),
        10,
        "the processor's log line",
    )
    assert stack.proc.log_path.read_text().count(f"operator command {command_id} applied") == 1


def test_promotion_reaches_the_running_processor_within_seconds(stack):
    registry = stack.registry()
    device, (_, entry) = sorted(registry.current().items())[0]
    champion = entry.metrics["champion"]["0"]
    model = next(m for m in MODELS.split(",") if m != champion)
    label = f'device="{device}",model="{model}"'
    before = support.metric_values(support.scrape(stack.proc), "iotcast_promotions_total").get(
        f'model="{model}"', 0.0
    )
    t0 = time.monotonic()
    done = stack.cli("models", "promote", device, model, "--reason", "test", "--by", "tester")
    assert "applied by" in done.stdout, done.stdout
    assert_applied_once(stack, done.stdout)
    support.wait_for(
        lambda: (
            support.metric_values(support.scrape(stack.proc), "iotcast_champion_info").get(label)
            == 1.0
        ),
        10,
        "the new champion in /metrics",
        interval=0.1,
    )
    took = time.monotonic() - t0
    text = support.scrape(stack.proc)
    assert (
        support.metric_values(text, "iotcast_champion_info")[
            f'device="{device}",model="{champion}"'
        ]
        == 0.0
    )
    # One promotion per horizon whose champion changed, counted by model (fleet-wide).
    assert support.metric_values(text, "iotcast_promotions_total")[f'model="{model}"'] >= before + 1
    print(f"promotion visible in /metrics {took:.1f}s after the command started")

    def in_status() -> bool:
        report = stack.json("status", "--json", "--count-limit", "0")
        dev = next(d for d in report["devices"] if d["device"] == device)
        cmd = [c for c in report["commands"] if c["device"] == device and c["kind"] == "promote"]
        return (
            dev["champion"] == {"0": model, "60": model}
            and cmd[-1]["state"] == "applied, checkpointed"
        )

    support.wait_for(in_status, 20, "the promotion in a checkpoint and in status")
    events = read_events(stack.settings.client("s3"), stack.settings.bucket, stack.settings.app)
    promoted = [e for e in events if e["event"] == "promotion" and e["device"] == device]
    by_tester = [e for e in promoted if e["model"] == model and "by tester" in e["reason"]]
    assert 0 in {e["horizon"] for e in by_tester}, promoted
    # Every device with a checkpoint, at one horizon.
    done = stack.cli(
        "models", "promote", "all", "rolling_mean", "--horizon", "60", "--reason", "test"
    )
    assert done.stdout.count("applied by") == len(registry.current()), done.stdout
    # A model the device does not run is refused before anything is written.
    refused = stack.cli("models", "promote", device, "forest", check=False)
    assert refused.returncode == 1 and "does not run" in refused.stderr


def test_rollback_restores_the_earlier_versions_predictions(stack):
    registry = stack.registry()
    device = sorted(registry.current())[1]
    current_id = registry.current()[device][1].version_id
    ids = registry.version_ids(device)
    latest_samples = registry.version(device, current_id).samples
    # The newest version with fewer samples (the versions since may only hold a promotion).
    target = next(
        v
        for v in (registry.version(device, i) for i in reversed(ids))
        if v.samples < latest_samples
    )
    earlier = registry.load(target)
    latest = registry.load(registry.version(device, current_id))
    probe = [r for r in stack.later if r.device == device]
    first, second = probe[: len(probe) // 2], probe[len(probe) // 2 :]
    assert earlier.n_learned < latest.n_learned
    assert not support.same_predictions(
        earlier, latest, second
    )  # the test can tell the versions apart

    done = stack.cli(
        "models", "rollback", device, "--to", str(target.version), "--reason", "bad data"
    )
    assert "applied by" in done.stdout, done.stdout
    assert_applied_once(stack, done.stdout)
    support.wait_for(
        lambda: support.device_samples(stack.settings)[device] == target.samples,
        20,
        "the rollback checkpointed",
    )
    # The processor now learns the probe's first half on top of the restored version: its next
    # checkpoint must equal the earlier artifact stepped offline through the same readings.
    support.put_records(stack.settings, support.items_of(first))
    learned = [earlier.step(r).status for r in first].count("learned")
    support.wait_for(
        lambda: support.device_samples(stack.settings)[device] == target.samples + learned,
        30,
        "the probe learned after the rollback",
    )
    after = registry.load(registry.version(device, registry.current()[device][1].version_id))
    assert after.n_learned == earlier.n_learned
    assert support.same_predictions(after, earlier, second)


def test_restart_does_not_apply_commands_again(stack):
    before = support.device_samples(stack.settings)
    champions = {d: e.metrics["champion"] for d, (_, e) in stack.registry().current().items()}
    assert stack.proc.stop() == 0, stack.proc.log_tail()
    stack.start()
    support.wait_for(
        lambda: support.metric_values(support.scrape(stack.proc), "iotcast_shard_owned"),
        30,
        "the shard leased again",
    )
    time.sleep(5)  # two rounds of the control channel
    log = stack.proc.log_path.read_text()
    assert "operator command" not in log, log[-2000:]
    assert support.device_samples(stack.settings) == before
    assert {
        d: e.metrics["champion"] for d, (_, e) in stack.registry().current().items()
    } == champions


def test_command_not_yet_in_a_checkpoint_is_applied_again_by_the_next_owner(settings):
    """The control channel's exactly-once rule, on the real S3 (moto) with real shard states:
    a command is done for a device once a checkpoint newer than its acknowledgement holds it."""
    support.create_bucket(settings)
    store = CheckpointStore(settings.client("s3"), settings.bucket, settings.app)
    catalog, readings = load_catalog(), list(itertools.islice(generate(days=1, seed=3), 300))
    device = readings[0].device
    models = support.reference(readings, catalog, TASK, MODELS)[device]
    payload = pickle.dumps(models)
    store.put_device(device, 1, payload, models.n_learned, {}, shard_id="s0", sequence="1")
    core = StreamCore(catalog, TASK, models=MODELS)

    def owner(version: int, name: str) -> tuple[ControlChannel, ShardState]:
        state = ShardState(
            "s0", epoch=1, devices={device: DeviceSlot(pickle.loads(payload), version)}
        )
        channel = ControlChannel(store, name, {"s0": state}, core)
        channel.adopt(state)
        return channel, state

    log = ControlLog(store)
    log.issue(Command.new("promote", [device], model="linear", reason="r", by="t"))
    a, state_a = owner(3, "A")
    (ack,) = asyncio.run(a.tick())
    assert ack["outcome"] == "applied" and ack["version"] == 3 and device in state_a.dirty
    assert state_a.devices[device].models.champion(0) == "linear"
    assert asyncio.run(a.tick()) == []  # once per owner

    # A crashed before any checkpoint newer than version 3: the next owner loads version 3.
    b, state_b = owner(3, "B")
    (ack,) = asyncio.run(b.tick())
    assert ack["process"] == "B" and state_b.devices[device].models.champion(0) == "linear"
    # B's checkpoint (version 4) holds it: the owner after B does not apply it again.
    c, state_c = owner(4, "C")
    assert asyncio.run(c.tick()) == []

    # A rollback to an artifact that fails its sha256 is refused, with the reason, and not retried.
    version_id = store.put_device(device, 2, payload, 1, {}, shard_id="s0", sequence="2").version_id
    store.put_object(str(ArtifactKey(settings.app, device, version_id)), b"tampered")
    log.issue(Command.new("rollback", [device], to_version=version_id, reason="r", by="t"))
    (ack,) = asyncio.run(c.tick())
    assert ack["outcome"] == "refused" and "sha256" in ack["message"]
    assert asyncio.run(c.tick()) == []
    assert state_c.devices[device].models.n_learned == models.n_learned


def test_signed_versions_verify_and_tampered_manifests_are_refused(settings):
    """The registry checks the artifact manifests the processor signs (same HMAC as the store's)."""
    from stream.checkpoint import TamperedCheckpoint

    support.create_bucket(settings)
    s3 = settings.client("s3")
    store = CheckpointStore(s3, settings.bucket, settings.app, hmac_key="k1")
    entry = store.put_device(
        "d1", 3, b"payload", 7, {"champion": {"0": "linear"}}, shard_id="s0", sequence="9"
    )
    registry = ModelRegistry(store)
    (version_id,) = registry.version_ids("d1")
    assert registry.resolve("d1", "3") == version_id
    version = registry.version("d1", version_id)
    assert (version.samples, version.sha256, version.sequence) == (7, entry.sha256, "9")
    assert registry.payload(version) == b"payload"
    with pytest.raises(TamperedCheckpoint, match="signature"):
        ModelRegistry(CheckpointStore(s3, settings.bucket, settings.app, hmac_key="other")).version(
            "d1", version_id
        )
    key = ArtifactKey.parse(entry.key).manifest_key
    body = s3.get_object(Bucket=settings.bucket, Key=key)["Body"].read()
    s3.put_object(
        Bucket=settings.bucket, Key=key, Body=body.replace(b'"samples": 7', b'"samples": 70')
    )
    with pytest.raises(TamperedCheckpoint, match="signature"):
        registry.version("d1", version_id)


def test_status_of_an_empty_stack_says_what_is_missing(settings, capsys):
    from iotcast.commands import status

    report = status.collect(settings)
    assert (
        report["stream"]["status"] == "MISSING"
        and report["shards"] == []
        and report["devices"] == []
    )
    assert report["problems"] == [f"bucket {settings.bucket!r} does not exist (no checkpoints yet)"]
    args = main_args(settings, "status")
    assert status.run(settings, args) == 1
    assert "does not exist" in capsys.readouterr().out


def main_args(settings: Settings, *argv: str):
    from iotcast.cli import build_parser

    return build_parser().parse_args([*argv, "--endpoint-url", str(settings.endpoint_url)])

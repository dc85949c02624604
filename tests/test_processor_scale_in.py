"""Graceful scale-in: SIGTERM under load -> final checkpoint -> leases released, within ECS's stop timeout.

ECS stops a task by sending SIGTERM and, ``stopTimeout`` seconds later, SIGKILL.  Two
processors share a 4-shard stream while readings keep arriving; one gets SIGTERM (as
when Application Auto Scaling lowers the processors' desired count).  The test plays
ECS: it waits at most the ``StopTimeout`` of the processor's task definition in
deploy/iotcast.template.json, then kills.  The processor must have exited by itself,
with status 0, its shards' leases no longer its own (the session timeout of the task
definition, 60 s, has not passed: only a release frees them), and the survivor must
take its shards over with 0 readings lost and 0 learned twice.

Kinesis is kinesalite (sustained PutRecords); S3 and DynamoDB are the moto server.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from online_models.catalog import load_catalog
from online_models.config import TaskConfig
from telemetry.generate import generate
from telemetry.reading import encode
from tests.support import (
    create_bucket,
    create_stream,
    device_samples,
    feed_in_background,
    load_models,
    metric_sum,
    reference,
    same_predictions,
    start_processor,
    wait_for,
)

TEMPLATE = Path(__file__).resolve().parent.parent / "deploy" / "iotcast.template.json"
MODELS = "persistence,rolling_mean"


def task_definition() -> tuple[int, list[str]]:
    """The processor container's StopTimeout and its command's flags, parameters at defaults."""
    tpl = json.loads(TEMPLATE.read_text())
    (container,) = tpl["Resources"]["ProcessorTask"]["Properties"]["ContainerDefinitions"]
    defaults = {k: str(p.get("Default", "")) for k, p in tpl["Parameters"].items()}
    flags = [defaults[a["Ref"]] if isinstance(a, dict) else a for a in container["Command"][1:]]
    return int(container["StopTimeout"]), flags


def leases(settings) -> dict[str, str | None]:
    ddb = settings.client("dynamodb")
    items = ddb.scan(TableName=f"kinesis-checkpoints-{settings.app}", ConsistentRead=True)["Items"]
    return {
        it["shard_id"]["S"]: it.get("ref", {}).get("S")
        for it in items
        if it["shard_id"]["S"].startswith("shardId-")
    }


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigterm_under_load_checkpoints_and_releases_within_the_stop_timeout(settings, tmp_path):
    stop_timeout, task_flags = task_definition()
    assert "--session-timeout" in task_flags
    session = float(task_flags[task_flags.index("--session-timeout") + 1])
    create_stream(settings, shards=4)
    create_bucket(settings)
    stream = list(itertools.islice(generate(days=3, seed=21, devices=16), 40_200))
    readings, probe = stream[:40_000], stream[40_000:]
    flags = (
        *task_flags,  # the task definition's --checkpoint-seconds/-every and --session-timeout
        "--models", MODELS, "--horizons", "0,60", "--predictions", "none", "--heartbeat", "1",
    )  # fmt: skip
    items = [(encode(r), r.device) for r in readings]
    # The survivor checkpoints often so that the test sees its progress; p2, the one stopped,
    # runs exactly the task definition's checkpoint flags (its final checkpoint writes it all).
    p1 = start_processor(settings, tmp_path, *flags, "--checkpoint-seconds", "2", name="p1")
    p2 = None
    feeder = feed_in_background(settings, items[:4_000], pause=0.0)
    try:
        wait_for(lambda: metric_sum(p1, "iotcast_shard_owned") == 4, 90, "p1 to hold all 4 shards")
        feeder.join(60)
        p2 = start_processor(settings, tmp_path, *flags, name="p2")
        wait_for(
            lambda: (
                metric_sum(p1, "iotcast_shard_owned") == 2
                and metric_sum(p2, "iotcast_shard_owned") == 2
            ),
            90,
            "a 2 + 2 split",
        )
        owners = leases(settings)
        p2_ref = next(
            ref for ref in set(owners.values()) if ref and ref.endswith(f"-{p2.proc.pid}")
        )
        p2_shards = {s for s, ref in owners.items() if ref == p2_ref}
        assert len(p2_shards) == 2, owners
        # Load: the rest of the readings arrive while p2 is stopped.
        feeder = feed_in_background(settings, items[4_000:], pause=0.15)
        before = metric_sum(p2, "iotcast_readings_learned_total")
        wait_for(
            lambda: metric_sum(p2, "iotcast_readings_learned_total") >= before + 2_000,
            120,
            "p2 to learn under load",
        )
        assert feeder.is_alive(), "the feed should still be running at the SIGTERM"
        p2.proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        try:
            code = p2.proc.wait(stop_timeout)  # then ECS would SIGKILL
        except subprocess.TimeoutExpired:
            p2.kill()
            pytest.fail(f"p2 still running {stop_timeout}s after SIGTERM:\n{p2.log_tail(30)}")
        held_after = leases(settings)
        print(
            f"p2 exited {time.monotonic() - sent:.1f}s after SIGTERM (stop timeout {stop_timeout}s)"
        )
        assert code == 0, p2.log_tail(30)
        log = p2.log_path.read_text()
        assert "final checkpoints written; releasing leases" in log
        # Released, not expired: the session timeout has not passed since p2's last heartbeat.
        assert session >= 60
        assert all(held_after.get(s) != p2_ref for s in p2_shards), held_after
        wait_for(lambda: metric_sum(p1, "iotcast_shard_owned") == 4, 60, "p1 to take over")
        feeder.join(300)
        assert not feeder.errors
        task = TaskConfig(horizons=(0, 60))
        expected = reference(readings, load_catalog(), task, MODELS)
        want = {d: dm.n_taken for d, dm in expected.items()}
        wait_for(lambda: device_samples(settings) == want, 240, "p1 to checkpoint every reading")
        assert p1.stop(stop_timeout) == 0, p1.log_tail(30)
    finally:
        if p2 is not None:
            p2.stop()
        p1.stop()

    got = device_samples(settings)
    lost = sum(max(0, n - got.get(d, 0)) for d, n in want.items())
    twice = sum(max(0, got.get(d, 0) - n) for d, n in want.items())
    print(
        f"scale-in: stop timeout {stop_timeout}s, {len(readings)} readings, lost {lost}, twice {twice}"
    )
    assert (lost, twice) == (0, 0), (want, got)
    for device, models in load_models(settings).items():
        assert same_predictions(
            models, expected[device], [r for r in probe if r.device == device]
        ), device

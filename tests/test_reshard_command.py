"""``iotcast reshard``: 2 -> 4 -> 2 shards while a processor runs and readings keep coming.

Kinesis is kinesalite (moto keeps writing to closed parents; kinesalite reshards
correctly but has no UpdateShardCount, so the command's ``--method split-merge`` does
it there); S3 and DynamoDB are the moto server.  ``--method update`` (UpdateShardCount)
runs against moto, which implements it, without a processor.  Exactly once: every
device's checkpointed sample count and predictions equal one uninterrupted pass.
"""

from __future__ import annotations

import itertools
import json
import subprocess

import pytest

from iotcast.cli import local_env
from online_models.catalog import load_catalog
from online_models.config import TaskConfig
from telemetry.generate import generate
from telemetry.reading import encode
from tests.support import (
    create_bucket,
    create_stream,
    device_samples,
    feed_in_background,
    iotcast_argv,
    load_models,
    manifests,
    put_records,
    reference,
    same_predictions,
    start_processor,
    wait_for,
)

MODELS = "persistence,rolling_mean"


def reshard(settings, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    argv = iotcast_argv(settings, "reshard", "--interval", "0.5", *args)
    env = local_env(settings)  # Kinesis elsewhere: AWS_ENDPOINT_URL_KINESIS
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_reshard_two_four_two_while_a_processor_runs_learns_exactly_once(settings, tmp_path):
    create_stream(settings, shards=2)
    create_bucket(settings)
    stream = list(itertools.islice(generate(days=2, seed=31, devices=12), 9_200))
    a, b, c, probe = stream[:3000], stream[3000:6000], stream[6000:9000], stream[9000:]
    task = TaskConfig(horizons=(0, 60))
    flags = ("--models", MODELS, "--horizons", "0,60", "--predictions", "none",
             "--checkpoint-every", "500", "--checkpoint-seconds", "1", "--session-timeout", "4",
             "--heartbeat", "1", "--shard-refresh", "1")  # fmt: skip

    def counts(readings):
        return {d: dm.n_taken for d, dm in reference(readings, load_catalog(), task, MODELS).items()}  # fmt: skip

    put_records(settings, [(encode(r), r.device) for r in a])
    proc = start_processor(settings, tmp_path, *flags)
    try:
        wait_for(lambda: device_samples(settings) == counts(a), 120, "batch A checkpointed")

        # 2 -> 4, readings arriving meanwhile; machine-readable report.
        feeder = feed_in_background(settings, [(encode(r), r.device) for r in b], pause=0.1)
        up = reshard(settings, "--shards", "4", "--method", "split-merge", "--json")
        assert up.returncode == 0, up.stdout + up.stderr
        report = json.loads(up.stdout)
        assert report["done"] and (report["from"], report["to"]) == (2, 4)
        kinds = [e["event"] for e in report["events"]]
        assert kinds.count("opened") == 4 and kinds.count("closed") == 2, kinds
        assert kinds.count("drained") == 2 and kinds.count("leased") >= 4, kinds
        opened = [s for s in report["shards"] if s["open"]]
        assert len(opened) == 4 and all(s["owner"] and len(s["parents"]) == 1 for s in opened)
        assert all(s["finished"] for s in report["shards"] if not s["open"])
        feeder.join(120)
        assert not feeder.errors
        wait_for(lambda: device_samples(settings) == counts(a + b), 120, "batch B checkpointed")

        # 4 -> 2, as an operator sees it.
        feeder = feed_in_background(settings, [(encode(r), r.device) for r in c], pause=0.1)
        down = reshard(settings, "--shards", "2", "--method", "split-merge")
        assert down.returncode == 0, down.stdout + down.stderr
        print(down.stdout)
        lines = down.stdout.splitlines()
        assert lines[0].startswith(f"resharding {settings.stream}")
        assert sum("opened: child of" in line and " + " in line for line in lines) == 2
        assert sum(" drained: " in line for line in lines) == 4
        assert any(" leased by " in line for line in lines)
        assert "every parent drained, every open shard leased" in lines[-1]
        feeder.join(120)
        assert not feeder.errors
        expected = reference(a + b + c, load_catalog(), task, MODELS)
        want = {d: dm.n_taken for d, dm in expected.items()}
        wait_for(lambda: device_samples(settings) == want, 180, f"batch C checkpointed ({want})")
    finally:
        assert proc.stop(30) == 0, proc.log_tail()

    # Exactly once across both reshardings: counts and models equal one uninterrupted pass.
    found = manifests(settings)
    assert len(found) == 8  # 2 original + 4 split children + 2 merged children
    open_now = [s for s, m in found.items() if not m.finished]
    assert len(open_now) == 2
    owners = [d for s in open_now for d in found[s].devices]
    assert len(owners) == len(set(owners)) == len(want)  # each device in one open shard
    for device, models in load_models(settings).items():
        assert models.n_learned == want[device]
        assert same_predictions(models, expected[device], [r for r in probe if r.device == device])


def test_update_shard_count_on_moto_and_refusals(settings, settings_moto_only) -> None:
    moto = settings_moto_only
    create_stream(moto, shards=2)
    create_bucket(moto)
    up = reshard(moto, "--shards", "4", "--json")  # UpdateShardCount (moto implements it)
    assert up.returncode == 0, up.stderr
    report = json.loads(up.stdout)
    assert report["done"] and sum(s["open"] for s in report["shards"]) == 4
    assert report["live_processors"] == 0  # nothing to follow
    assert report["events"][0]["event"] == "stream"
    # Beyond double or half per call: refused, saying what to do.
    far = reshard(moto, "--shards", "9")
    assert far.returncode == 2 and "at most to double or half" in far.stderr
    assert "--shards 8 first" in far.stderr
    same = reshard(moto, "--shards", "4")
    assert same.returncode == 0 and "nothing to do" in same.stdout
    # split-merge cannot reach 3 from 4 by halving/doubling rounds.
    odd = reshard(moto, "--shards", "3", "--method", "split-merge")
    assert odd.returncode == 2 and "use --method update" in odd.stderr
    # kinesalite has no UpdateShardCount: the message names the way out.
    create_stream(settings, shards=1)
    refused = reshard(settings, "--shards", "2")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "use --method split-merge" in refused.stderr

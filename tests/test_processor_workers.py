"""``iotcast process --workers 2``: two processes under one command, on the local stack.

The workers share the stream through the leases, each serves /metrics on
its own port (base + i) and ``iotcast status --scrape`` finds both; a worker
that dies is reported and stops the command with exit 1, the other worker
stopping cleanly; a restarted command takes the dead worker's shards over,
and a SIGTERM stops both workers with their final checkpoints (the checkpoint
interval is longer than the run: only the stop and hand-overs write them).
Across all of it every reading is learned exactly once.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import re
import signal
import subprocess
from collections.abc import Iterator

import pytest

from iotcast.cli import local_env
from iotcast.stack import ManagedProcess, port_in_use
from online_models.catalog import load_catalog
from online_models.config import TaskConfig
from telemetry.generate import generate
from tests.support import (
    IOTCAST,
    create_resources,
    device_samples,
    items_of,
    learned_counts,
    metric_sum,
    metric_values,
    operator_argv,
    processor_flags,
    put_records,
    scrape,
    start_processor,
    wait_checkpointed,
    wait_for,
)

MODELS = "persistence,rolling_mean"
TASK = TaskConfig(horizons=(0, 60))


def two_free_ports() -> int:
    """A port ``p`` with ``p`` and ``p + 1`` free (the two workers' /metrics), below the
    kernel's ephemeral range: the other tests' servers take ports from that range (bind to
    port 0), so nothing of theirs can land on ``p + 1`` between this check and the workers'
    start."""
    rng = random.Random()

    def pick() -> int | None:
        p = rng.randrange(20_000, 32_000)
        return p if not (port_in_use(p) or port_in_use(p + 1)) else None

    return wait_for(pick, 10, "two consecutive free ports", interval=0)


def start_workers(settings, tmp_path, *flags: str) -> tuple[ManagedProcess, list[ManagedProcess]]:
    """``iotcast process --workers 2`` ready once both workers serve /metrics; the command
    and one handle per worker (for scraping: same port scheme, no process of its own)."""
    base = two_free_ports()
    ports = (base, base + 1)
    proc = start_processor(
        settings, tmp_path, "--workers", "2", "--metrics-port", str(base), *flags,
        name="workers", ready=lambda p: all(port_in_use(x) for x in ports),
    )  # fmt: skip
    views = [
        ManagedProcess(f"worker-{i + 1}", [], port, proc.log_path) for i, port in enumerate(ports)
    ]
    return proc, views


def worker_pids(proc: ManagedProcess) -> dict[int, int]:
    return {
        int(i): int(pid)
        for i, pid in re.findall(r"worker (\d)/2: pid (\d+)", proc.log_path.read_text())
    }


def owned(view: ManagedProcess) -> float:
    return sum(metric_values(scrape(view), "iotcast_shard_owned").values())


@contextlib.contextmanager
def stopped_after(proc: ManagedProcess) -> Iterator[ManagedProcess]:
    """``proc`` for the block; whatever happens, not left running after it."""
    try:
        yield proc
    finally:
        if proc.alive():
            proc.stop(60)


@pytest.mark.timeout(300)
def test_two_workers_share_the_stream_stop_together_and_survive_a_dead_worker(settings, tmp_path):
    create_resources(settings, 4)
    stream = list(itertools.islice(generate(days=1, seed=5, devices=8), 6_000))
    first, second = stream[:3_000], stream[3_000:]
    put_records(settings, items_of(first))
    quick = processor_flags(MODELS, checkpoint_seconds=1, session_timeout=3, heartbeat=1)

    # Both workers lease shards and learn; then one dies: reported, the other stops, exit 1.
    proc, views = start_workers(settings, tmp_path, *quick)
    with stopped_after(proc):
        want_first = learned_counts(first, load_catalog(), TASK, MODELS)
        wait_checkpointed(settings, want_first, 120, "the first readings checkpointed")
        wait_for(lambda: all(owned(v) >= 1 for v in views), 60, "each worker to own a shard")
        os.kill(worker_pids(proc)[2], signal.SIGKILL)
        assert proc.proc.wait(60) == 1, proc.log_tail(30)
    log = proc.log_path.read_text()
    assert "worker 2/2" in log and "exited by itself (signal SIGKILL)" in log, proc.log_tail(30)
    assert "worker 1/2 iotcast.commands.process: processor exited with code 0" in log

    # Restarted, checkpoints only at the stop: the dead worker's shards are taken over, and
    # SIGTERM makes both workers write their final checkpoints.
    put_records(settings, items_of(second))
    slow = processor_flags(MODELS, checkpoint_seconds=600, session_timeout=3, heartbeat=1)
    proc, views = start_workers(settings, tmp_path, *slow, "--checkpoint-every", "1000000")
    with stopped_after(proc):
        want = learned_counts(stream, load_catalog(), TASK, MODELS)
        new = sum(want.values()) - sum(want_first.values())
        wait_for(
            lambda: sum(metric_sum(v, "iotcast_readings_learned_total") for v in views) >= new,
            120,
            f"{new} readings learned by the restarted workers",
        )
        status = subprocess.run(
            [IOTCAST, *operator_argv(settings, "status", "--json", "--scrape")],
            capture_output=True, text=True, timeout=60, env=local_env(settings),
        )  # fmt: skip
        components = json.loads(status.stdout)["components"]
        ports = sorted(int(c["url"].rsplit(":", 1)[1].split("/")[0]) for c in components)
        assert ports == [v.port for v in views], components
        assert all(c["reachable"] and c["shards_owned"] for c in components), components
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(60) == 0, proc.log_tail(30)
    assert "all 2 workers stopped cleanly" in proc.log_path.read_text()
    assert device_samples(settings) == want  # each reading learned once, across both runs
    for pid in worker_pids(proc).values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

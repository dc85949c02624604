"""Device flood: N distinct device ids through the processor's core, memory printed.

Feeds three real devices' readings (watched: ``StreamCore(watch=...)``),
interleaved with one reading each of ``--devices`` new ids (100,000 by
default), into :class:`stream.core.StreamCore` with the real catalog (default
models, horizons 0/60/900/3600) and ``--max-devices``.  Every
``--checkpoint-every`` readings (one per record here) it takes the shard's snapshot, as the
processor's checkpoint does (pickles of changed devices, dead-letter lines
handed over), and sweeps the fleet's gauges (worst-k among them).  Prints RSS
(from /proc) and the ``iotcast_*`` series of the process's registry at each
10 % of the flood (none may name a flood id but the worst-k gauges; the others
grow as the known devices' models score at more horizons), devices held, records
dead-lettered with reason ``device_limit``, the largest dead-letter backlog
before a snapshot, and the time taken.

Run::

    .venv/bin/python bench/flood.py --devices 100000 --max-devices 1000
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import time

from prometheus_client import REGISTRY

from online_models.catalog import load_catalog
from online_models.config import TaskConfig
from stream.core import StreamCore
from stream.state import ShardState
from telemetry.generate import Faults, generate
from telemetry.reading import Reading, encode


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def series(watched: frozenset[str]) -> tuple[int, int, int]:
    """The ``iotcast_*`` samples of the process's registry (each one a Prometheus series):
    (those naming no watched device, those naming one, those naming a flood id). The first
    two grow as the known devices' models score at more horizons (the error histograms by
    model and horizon; the watched devices' per-device set), not with the flood."""
    fleet = mine = flood = 0
    for metric in REGISTRY.collect():
        if metric.name.startswith("iotcast_"):
            for s in metric.samples:
                device = s.labels.get("device")
                if device in watched:
                    mine += 1
                else:
                    fleet += 1
                    flood += device is not None and device.startswith("flood-")
    return fleet, mine, flood


def said(counts: tuple[int, int, int]) -> str:
    return f"{counts[0]:,} + {counts[1]:,} of the watched devices ({counts[2]} name a flood id)"


def flood_payload(i: int, ts: float) -> bytes:
    return encode(Reading(ts, f"flood-{i:06d}", 0.005, 50.0, False, 0.007, False, 0.02, 21.5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--max-devices", type=int, default=1000)
    ap.add_argument("--checkpoint-every", type=int, default=10_000)
    ap.add_argument("--known-days", type=float, default=0.02)
    a = ap.parse_args()

    known = [
        dataclasses.replace(r, device=f"known-{r.device}")
        for r in generate(days=a.known_days, seed=3, faults=Faults.none())
    ]
    watch = frozenset(r.device for r in known)
    core = StreamCore(load_catalog(), TaskConfig(), max_devices=a.max_devices, watch=watch)
    state = ShardState("shardId-000000000000", epoch=1)
    outcomes: dict[str, int] = {}
    seq = 0
    backlog_max = 0
    dead = 0

    def handle(data: bytes) -> None:
        nonlocal seq, backlog_max, dead
        seq += 1
        out = core.handle(state, str(seq), data)
        outcomes[out] = outcomes.get(out, 0) + 1
        if state.since_checkpoint >= a.checkpoint_every:
            backlog_max = max(backlog_max, len(state.dead_letters))
            dead += len(state.snapshot().dead_letters)
            core.sweep([state])

    rss0 = rss_mib()
    t0 = time.perf_counter()
    # The known devices arrive first (they hold their models before the flood starts).
    k = 0
    first_seen: set[str] = set()
    while len(first_seen) < len({r.device for r in known}):
        first_seen.add(known[k].device)
        handle(encode(known[k]))
        k += 1
    per_flood = max(1, a.devices // max(1, len(known) - k))
    core.sweep([state])
    series0 = series(watch)
    print(
        f"start: RSS {rss0:.1f} MiB, {len(known)} known readings (3 devices, watched), "
        f"series {said(series0)}; flood {a.devices:,} ids"
    )
    step = max(1, a.devices // 10)
    for i in range(a.devices):
        if i % per_flood == 0 and k < len(known):
            handle(encode(known[k]))
            k += 1
        handle(flood_payload(i, known[0].ts + i * 1e-3))
        if (i + 1) % step == 0:
            print(
                f"  {i + 1:>7,} flood ids: RSS {rss_mib():7.1f} MiB, series {said(series(watch))}, "
                f"held {core.devices_held:,}, "
                f"device_limit {outcomes.get('device_limit', 0):,}, "
                f"dead-letter backlog {len(state.dead_letters):,}"
            )
    for r in known[k:]:
        handle(encode(r))
    backlog_max = max(backlog_max, len(state.dead_letters))
    dead += len(state.snapshot().dead_letters)
    core.sweep([state])
    elapsed = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"done in {elapsed:.1f} s: outcomes {outcomes}; devices held {core.devices_held:,} "
        f"(--max-devices {a.max_devices:,}); dead-lettered {dead:,}; largest dead-letter "
        f"backlog before a snapshot {backlog_max:,} (--checkpoint-every {a.checkpoint_every:,}); "
        f"RSS {rss0:.1f} -> {rss_mib():.1f} MiB (peak {peak:.1f} MiB); "
        f"iotcast_* series {said(series0)} -> {said(series(watch))}"
    )


if __name__ == "__main__":
    main()

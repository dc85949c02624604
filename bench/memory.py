"""Memory per device: pickled size and heap of the default model set after a day and a week,
and RSS per device with many day-trained devices in one process. Prints figures; not a test.

1. Each of the three generated devices (their real cadence: 3.7 to 6.5 s) is stepped
   through one day, then seven, of its readings; its pickled size (what a checkpoint
   writes) and the Python heap one unpickled copy holds (tracemalloc, over 200 copies)
   are printed after each.
2. ``--devices`` copies of the day-trained devices, unpickled from their checkpoint bytes
   (what a processor holds after taking over a shard), with the RSS they add per device.

    .venv/bin/python bench/memory.py                    # 10,000 day-trained devices
    .venv/bin/python bench/memory.py --devices 1000 --days 1
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from online_models.catalog import load_catalog  # noqa: E402
from online_models.config import TaskConfig  # noqa: E402
from online_models.device import DeviceModels  # noqa: E402
from telemetry.generate import PROFILES, generate  # noqa: E402


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def heap_per_copy(blob: bytes, copies: int) -> float:
    """Python heap (tracemalloc) held per model set by ``copies`` unpickled copies of ``blob``.

    Not RSS: the allocator reuses what earlier measurements freed, so a small RSS delta
    says little; the fleet figure below is RSS, on a fresh heap.
    """
    gc.collect()
    tracemalloc.start()
    held = [pickle.loads(blob) for _ in range(copies)]
    gc.collect()
    per = tracemalloc.get_traced_memory()[0] / copies
    tracemalloc.stop()
    del held
    return per


def trained(days: float, seed: int) -> dict[str, DeviceModels]:
    """The default model set of each generated device after ``days`` of its readings (with its
    anomaly watch, as the processor holds it)."""
    catalog, task = load_catalog(), TaskConfig()
    held: dict[str, DeviceModels] = {}
    for r in generate(days=days, seed=seed):
        dm = held.get(r.device)
        if dm is None:
            dm = held[r.device] = DeviceModels(r.device, catalog, task, anomalies=True)
        dm.step(r)
    return held


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--devices", type=int, default=10_000, help="day-trained devices in one process")
    p.add_argument("--days", default="1,7", help="training lengths to report, days")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}; default set, horizons {TaskConfig().horizons}")
    print(f"{'device':<19}{'days':>5}{'readings':>10}{'pickled KiB':>13}{'heap KiB':>10}")
    blobs: dict[float, list[bytes]] = {}
    for days in (float(d) for d in args.days.split(",")):
        t0 = time.process_time()
        held = trained(days, args.seed)
        blobs[days] = []
        for profile in PROFILES:
            dm = held[profile.device]
            blob = pickle.dumps(dm, protocol=pickle.HIGHEST_PROTOCOL)
            blobs[days].append(blob)
            print(
                f"{profile.device:<19}{days:>5g}{dm.n_learned:>10,}{len(blob) / 1024:>13.1f}"
                f"{heap_per_copy(blob, 200) / 1024:>10.1f}"
            )
        print(f"  ({time.process_time() - t0:.0f} s CPU to train)")
    day = blobs.get(1.0) or next(iter(blobs.values()))
    gc.collect()
    before = rss_bytes()
    fleet = [pickle.loads(day[i % len(day)]) for i in range(args.devices)]
    gc.collect()
    per = (rss_bytes() - before) / args.devices
    print(
        f"{args.devices:,} day-trained devices (the three profiles in turn) in one process: "
        f"{per / 1024:.1f} KiB RSS per device, {(rss_bytes() - before) / 2**20:,.0f} MiB in all"
    )
    del fleet


if __name__ == "__main__":
    main()

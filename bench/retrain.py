"""CPU of the retrain job per device-week of data (issue 28): ``online_models.retrain.retrain``
on a generated week (the three calibrated devices, 5-second cadence), as ``iotcast retrain``
runs it (default horizons 60/900/3600 s, 2 days held out, so trained twice), then the
pickled model's size.

    .venv/bin/python bench/retrain.py [--days 7] [--devices 3]
"""

from __future__ import annotations

import argparse
import os
import pickle
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the job's CPU is what is measured

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from online_models.retrain import retrain  # noqa: E402
from telemetry.generate import generate  # noqa: E402


def _rss_mib() -> float:
    """This process's resident memory now, MiB (bench/flood.py's ``rss_mib``: importing it
    would load the processor's modules and count them as the readings)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--devices", type=int, default=3)
    a = ap.parse_args()
    readings = list(generate(days=a.days, seed=1, devices=a.devices))
    before = _rss_mib()  # the readings in memory, before the job
    load = Path("/proc/loadavg").read_text().split()[0]
    cpu = time.process_time()
    out = retrain(readings)
    cpu = time.process_time() - cpu
    size = len(pickle.dumps(out.model, protocol=pickle.HIGHEST_PROTOCOL))
    device_weeks = a.devices * a.days / 7.0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    parts = ", ".join(f"{k} {v:.1f}" for k, v in out.cpu_s.items())
    print(
        f"retrain: {len(readings):,} readings, {out.window['examples']:,} examples, "
        f"{cpu:.1f} CPU-s ({parts}), {cpu / device_weeks:.1f} CPU-s per device-week, "
        f"model {size:,} bytes, peak RSS {rss:,.0f} MiB, of which {before:,.0f} MiB the "
        f"readings in memory before the job; "
        f"load {load} at the start, {Path('/proc/loadavg').read_text().split()[0]} at the end"
    )


if __name__ == "__main__":
    main()

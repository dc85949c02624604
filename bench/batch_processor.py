"""The processor's CPU per reading with the batch expert (issue 28's cost bar: within 1.5x).

In one run, interleaved ``--repeats`` times over the same generated readings, the
processor's core (:class:`stream.core.StreamCore`: decode, features, models, scoring,
metrics; no network), one reading a record, with:

- ``today``: the default models;
- ``batch, none loaded``: plus ``batch_expert`` and ``batch_shadow``
  (``--batch-expert``) before any version is current;
- ``batch active``: a version weighed with each horizon's champion (the steady state);
- ``batch active + shadow``: a second version in shadow beside it (the worst case, for
  the shadow's length after each retrain).

The version is trained first by ``online_models.retrain.retrain`` (global, the default
horizons) on ``--train-days`` generated days before the readings. Times are CPU times
(single thread); the ratio is the median of the per-repeat ratios to ``today``.

    .venv/bin/python bench/batch_processor.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from online_models.batch_live import LIVE, MODELS  # noqa: E402
from online_models.catalog import load_catalog  # noqa: E402
from online_models.config import TaskConfig  # noqa: E402
from online_models.retrain import retrain  # noqa: E402
from stream.core import StreamCore  # noqa: E402
from stream.state import ShardState  # noqa: E402
from telemetry.generate import generate  # noqa: E402
from telemetry.reading import encode  # noqa: E402


def run(records: list[bytes], models: str, task: TaskConfig) -> float:
    """CPU seconds of one core over ``records`` (fresh devices)."""
    core = StreamCore(load_catalog(), task, models=models)
    state = ShardState("shardId-0", epoch=1)
    handle = core.handle
    t0 = time.thread_time()
    for i, data in enumerate(records):
        handle(state, str(i), data)
    return time.thread_time() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--readings", type=int, default=20_000, help="readings timed (default 20,000)")
    ap.add_argument("--devices", type=int, default=3)
    ap.add_argument("--train-days", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    task = TaskConfig()
    print(f"load average before: {' '.join(map(str, os.getloadavg()))}")
    every = list(generate(days=a.train_days + 1.0, seed=5, devices=a.devices))
    split = every[0].ts + a.train_days * 86_400
    history = [r for r in every if r.ts < split]
    records = [encode(r) for r in every if r.ts >= split][: a.readings]
    t0 = time.process_time()
    model = retrain(history, horizons=task.horizons, holdout_days=0).model
    print(
        f"batch model: {len(history):,} readings of {a.devices} devices, horizons {model.horizons}, "
        f"{len(model.experts['*'].trees)} trees, trained in {time.process_time() - t0:.1f} CPU-s"
    )
    expert, horizons = model.experts["*"], frozenset(model.horizons)
    default = ",".join(load_catalog().select("default").names)
    with_batch = ",".join([default, *MODELS])
    configs = {
        "today": (default, None, None),
        "batch, none loaded": (with_batch, None, None),
        "batch active": (with_batch, 1, None),
        "batch active + shadow": (with_batch, 1, 2),
    }
    cpu: dict[str, list[float]] = {name: [] for name in configs}
    for rep in range(a.repeats):
        for name, (models, active, shadow) in configs.items():
            LIVE.set("active", active, expert, horizons)
            LIVE.set("shadow", shadow, expert, horizons)
            cpu[name].append(run(records, models, task))
        print(
            f"  repeat {rep + 1}/{a.repeats} done (load {os.getloadavg()[0]:.2f})", file=sys.stderr
        )
    print(f"load average after: {' '.join(map(str, os.getloadavg()))}")
    print(
        f"| configuration ({len(records):,} readings, {a.devices} devices) | µs CPU per reading | × today |"
    )
    print("|---|---|---|")
    for name, times in cpu.items():
        ratio = statistics.median(t / b for t, b in zip(times, cpu["today"], strict=True))
        per = 1e6 * statistics.median(times) / len(records)
        print(f"| {name} | {per:,.0f} | {ratio:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

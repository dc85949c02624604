"""Per-model cost: CPU µs per reading (predict + learn at every horizon), pickled size, unpickle time.

First the default set as the processor runs it (the whole ``DeviceModels.step``
per reading), then each catalog model alone.

Runs each catalog model alone in a DeviceModels over one generated device's
readings and prints a table (CPU time of this thread, so other processes on a
shared machine do not inflate it). Not a test.

    .venv/bin/python bench/models.py --days 0.5 --device 1c:bf:ce:15:ec:4d --models all
"""

from __future__ import annotations

import argparse
import gc
import pickle
import time

from online_models.catalog import load_catalog
from online_models.config import TaskConfig
from online_models.device import DeviceModels
from telemetry.generate import generate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--days", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default="1c:bf:ce:15:ec:4d")
    p.add_argument("--models", default="all")
    p.add_argument("--horizons", default="0,60,900,3600")
    p.add_argument("--models-file")
    args = p.parse_args()
    gc.set_threshold(50_000, 20, 100)
    catalog = load_catalog(args.models_file)
    task = TaskConfig(horizons=tuple(int(h) for h in args.horizons.split(",")))
    readings = [r for r in generate(days=args.days, seed=args.seed) if r.device == args.device]
    print(
        f"{len(readings):,} readings of {args.device}, horizons {task.horizons}, seed {args.seed}"
    )
    print(
        f"{'model':<16}{'µs/reading':>12}{'per horizon':>13}{'pickled KB':>12}{'unpickle ms':>13}"
    )
    base = DeviceModels(args.device, catalog, task, models="persistence", timing=True)
    t0 = time.thread_time()
    for r in readings:
        base.step(r)
    base_cpu = time.thread_time() - t0
    print(
        f"{'(loop+features)':<16}{base_cpu / len(readings) * 1e6 - base.cost_ns['persistence'] / len(readings) / 1e3:>12.1f}"
    )
    together = DeviceModels(args.device, catalog, task, models="default")
    t0 = time.thread_time()
    for r in readings:
        together.step(r)
    together_us = (time.thread_time() - t0) / len(readings) * 1e6
    size = len(pickle.dumps(together, protocol=pickle.HIGHEST_PROTOCOL))
    print(
        f"{'default set, whole step':<16}{together_us:>12.1f}{'':>13}{size / 1024:>12.1f}"
        f"   ({', '.join(together.model_names)}; CPU per reading of DeviceModels.step, "
        "features, scoring and selection included; pickled: the whole device)"
    )
    for spec in catalog.select(args.models):
        dm = DeviceModels(args.device, catalog, task, models=spec.name, timing=True)
        for r in readings:
            dm.step(r)
        n_h = sum(1 for hz in dm.horizons.values() if spec.name in hz.models)
        us = dm.cost_ns.get(spec.name, 0) / dm.n_learned / 1e3
        blob = pickle.dumps(
            [hz.models[spec.name] for hz in dm.horizons.values() if spec.name in hz.models]
        )
        t1 = time.perf_counter()
        pickle.loads(blob)
        un = (time.perf_counter() - t1) * 1e3
        print(
            f"{spec.name:<16}{us:>12.1f}{us / max(n_h, 1):>13.1f}{len(blob) / 1024:>12.1f}{un:>13.1f}"
        )


if __name__ == "__main__":
    main()

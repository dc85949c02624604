"""Prediction intervals of the served forecast: coverage and width per series, horizon and level.

Runs each series through the very per-device model sets the processor runs, its anomaly
watch included (``DeviceModels.step``: predict, score, learn) and, for every served forecast
published with an interval, checks whether its target's reading fell inside
the interval published with it. Prints, per series, horizon and level:

* coverage: the share of scored forecasts inside their interval, worst device
  of the series (bar: within 3 points of the level);
* width: our mean width against an oracle's, the width of a fixed interval
  around persistence's forecast that has the same coverage over the whole series
  (the (1-L)/2 and (1+L)/2 quantiles of persistence's residuals at that
  horizon, computed after the fact: it knows the future) (bar: ours narrower).

The generated week is scored after its first day (the issue's bar). Figures are
deterministic: no timing, so the machine's load does not matter.

    .venv/bin/python bench/intervals.py                       # five real series + generated week
    .venv/bin/python bench/intervals.py --series nyc_psm4_hourly --series generated
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from online_models.catalog import load_catalog  # noqa: E402
from online_models.config import TaskConfig  # noqa: E402
from online_models.device import DeviceModels  # noqa: E402
from online_models.records import SERVED  # noqa: E402
from telemetry.csvfile import read_csv  # noqa: E402
from telemetry.generate import generate  # noqa: E402

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
SERIES = (
    "nab_ambient_temperature",
    "golden_rmis_5min",
    "miami_tmy2_hourly",
    "golden_psm4_hourly",
    "nyc_psm4_hourly",
    "generated",
)
DAY = 86_400.0


def _readings(name: str, real: Path):
    if name == "generated":
        return generate(days=7, seed=7)
    return read_csv(real / f"{name}.csv")


def run(name: str, real: Path) -> dict[tuple[str, int], dict[str, list]]:
    """Per (device, horizon): the served forecasts' (residual, bounds) and persistence's residuals."""
    catalog, task = load_catalog(), TaskConfig()
    devices: dict[str, DeviceModels] = {}
    first: dict[str, float] = {}
    published: dict[tuple[str, int, float], tuple[float, ...]] = {}
    out: dict[tuple[str, int], dict[str, list]] = defaultdict(
        lambda: {"served": [], "persistence": []}
    )
    skip = DAY if name == "generated" else 0.0
    for n, r in enumerate(_readings(name, real)):
        dm = devices.get(r.device)
        if dm is None:
            dm = devices[r.device] = DeviceModels(r.device, catalog, task, anomalies=True)
            first[r.device] = r.ts
        res = dm.step(r)
        for p in res.predictions:
            if p.model == SERVED and p.bounds:
                published[(r.device, p.horizon, p.ts)] = p.bounds
        for s in res.scores:
            bounds = (
                published.pop((r.device, s.horizon, s.made_ts), None) if s.model == SERVED else None
            )
            if s.target_ts - first[r.device] < skip:
                continue
            if s.model == SERVED and bounds:
                out[(r.device, s.horizon)]["served"].append((s.actual, bounds))
            elif s.model == "persistence":
                out[(r.device, s.horizon)]["persistence"].append(s.actual - s.predicted)
        if n and n % 100_000 == 0:
            print(f"  {name}: {n:,} readings", file=sys.stderr, flush=True)
    return out


def figures(data, levels: tuple[float, ...]):
    """Rows (horizon, level, worst coverage, its device, our mean width, oracle width)."""
    rows = []
    by_h: dict[int, list] = defaultdict(list)
    for (device, h), d in data.items():
        by_h[h].append((device, d))
    for h in sorted(by_h):
        for i, level in enumerate(levels):
            worst, worst_dev, ours, oracle, n = None, "", [], [], 0
            for device, d in by_h[h]:
                if not d["served"]:
                    continue
                actual = np.array([a for a, _ in d["served"]])
                lo = np.array([b[2 * i] for _, b in d["served"]])
                hi = np.array([b[2 * i + 1] for _, b in d["served"]])
                cov = float(np.mean((actual >= lo) & (actual <= hi)))
                if worst is None or abs(cov - level) > abs(worst - level):
                    worst, worst_dev = cov, device
                ours.append(float(np.mean(hi - lo)) * len(actual))
                res = np.array(d["persistence"])
                q = np.quantile(res, [(1 - level) / 2, (1 + level) / 2])
                oracle.append(float(q[1] - q[0]) * len(actual))
                n += len(actual)
            if worst is not None:
                rows.append((h, level, worst, worst_dev, sum(ours) / n, sum(oracle) / n, n))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--series", action="append", choices=SERIES, help="series to run (repeatable; default all)"
    )
    ap.add_argument(
        "--real", type=Path, default=REAL, help="directory of the real series (default %(default)s)"
    )
    a = ap.parse_args(argv)
    levels = TaskConfig().interval_levels
    print(f"load average {' '.join(map(str, os.getloadavg()))} (the figures do not depend on it)")
    print(
        "| series | horizon s | level | coverage (worst device) | ours °C | oracle °C | ours vs oracle | scored |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in a.series or SERIES:
        t0 = time.process_time()
        data = run(name, a.real)
        for h, level, cov, dev, ours, oracle, n in figures(data, levels):
            flag = "" if abs(cov - level) <= 0.03 else " **off**"
            print(
                f"| {name} | {h} | {level:.2f} | {100 * cov:.1f} %{flag} ({dev}) | {ours:.3f} | {oracle:.3f} "
                f"| {100 * (ours / oracle - 1):+.0f} % | {n:,} |",
                flush=True,
            )
        print(f"  {name}: {time.process_time() - t0:.0f} s CPU", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Prediction intervals of the served forecast: coverage and width per series, horizon and level.

Runs each series through the very per-device model sets the processor runs, its anomaly
watch included (``DeviceModels.step``: predict, score, learn) and, for every served forecast
published with an interval, checks whether its target's reading fell inside
the interval published with it. Prints, per series, horizon and level:

* coverage: the share of scored forecasts inside their interval, worst device
  of the series (bar: within 3 points of the level);
* width: our mean width against the oracle's (bar: ours narrower);
* the served forecast's MAE over persistence's on the same forecasts (where it is 1, the
  oracle's forecast is ours, and only a predictable scale of the residuals lets a causal
  band be narrower than the oracle's fixed one);
* the **causal oracle**: our own band (:class:`~online_models.intervals.Band`, the
  processor's settings) run around persistence's forecasts, on the forecasts both bands
  published, with its coverage: what the served forecast, rather than hindsight, gains.

The oracle is a fixed interval around persistence's forecast, chosen after the fact (it
knows the future), at the coverage ours achieved. Per device and horizon, on exactly the
target times ours was scored on (forecasts published with an interval: not those of the
band's warm-up, nor, on the generated week, those whose target falls in its first day, the
issue's bar; persistence's forecast made at the same time, scored on the same reading):

* ``c`` is the share of ours inside its interval there, and the oracle's width is that of
  the fixed *central* interval of persistence's residuals that covers exactly ``c``:
  ``(1 - c)/2`` below its low end and as many above its high end, as ours tracks each tail
  (:func:`central_width`). With ties (readings in steps of 0.1 or 0.01 °C: persistence is
  exactly right on many) a fixed end leaves only certain numbers of residuals outside: each
  end is then the randomised one, the mix of the two neighbouring achievable fixed ends that
  leaves exactly the share outside, its mean interpolated linearly between them (an interval
  of a single tied value that must be cut from both sides is that point: width 0);
* the narrowest column is the same with any fixed interval, not only central ones: the mix of
  the two neighbouring achievable narrowest fixed intervals (:func:`narrowest_width`). It is
  narrower than the central one where the residuals are skewed; our intervals are central by
  the issue's definition, so the central oracle is the bar and this one is shown beside it;
* widths are averaged over the devices weighted by the forecasts scored; the ratio is ours
  over the oracle's, minus one.

For comparison the last column is the oracle as it stood before: the ``(1-L)/2`` and
``(1+L)/2`` quantiles of persistence's residuals (``np.quantile``, linear interpolation),
with what that interval actually covers (mean over devices): with ties it is not ``L``.
Figures are deterministic: no timing, so the machine's load does not matter.

    .venv/bin/python bench/intervals.py                       # five real series + generated week
    .venv/bin/python bench/intervals.py --series nyc_psm4_hourly --series generated
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from online_models.catalog import load_catalog  # noqa: E402
from online_models.config import TaskConfig  # noqa: E402
from online_models.device import DeviceModels  # noqa: E402
from online_models.intervals import Band  # noqa: E402
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


class PersistenceBands:
    """The causal oracle: our interval method (:class:`Band`, the processor's settings) run
    around persistence's forecasts instead of the served ones, per device and horizon. Where
    the two forecasts are the same, so are the bands; where ours is narrower, it is the
    forecast that makes it so, not hindsight."""

    def __init__(self, levels: tuple[float, ...]) -> None:
        self.levels = levels
        self.bands: dict[tuple[str, int], Band] = {}
        self.waiting: dict[tuple[str, int], deque[float]] = defaultdict(deque)
        self.published: dict[tuple[str, int, float], tuple[float, ...]] = {}

    def publish(self, device: str, h: int, ts: float, value: float) -> None:
        band = self.bands.get((device, h))
        if band is None:
            band = self.bands[(device, h)] = Band(self.levels)
        bounds = band.publish(value)
        self.waiting[(device, h)].append(ts)
        if bounds:
            self.published[(device, h, ts)] = bounds

    def settle(self, device: str, h: int, made_ts: float, y: float, value: float):  # type: ignore[no-untyped-def]
        """Score persistence's forecast made at ``made_ts``; its published bounds, or None."""
        band, waiting = self.bands.get((device, h)), self.waiting[(device, h)]
        while band is not None and waiting and waiting[0] < made_ts:  # never scored (held)
            self.published.pop((device, h, waiting.popleft()), None)
            band.forget()
        if band is None or not waiting or waiting[0] != made_ts:
            return None
        waiting.popleft()
        band.settle(y, value)
        return self.published.pop((device, h, made_ts), None)


def run(name: str, real: Path) -> dict[tuple[str, int], dict[str, dict[float, object]]]:
    """Per (device, horizon), keyed by the time each forecast was made: the served forecast's
    (actual, bounds published with it, its residual), persistence's residual
    ``actual - forecast``, and the bounds of our band around persistence (``causal``)."""
    catalog, task = load_catalog(), TaskConfig()
    devices: dict[str, DeviceModels] = {}
    first: dict[str, float] = {}
    published: dict[tuple[str, int, float], tuple[float, ...]] = {}
    causal = PersistenceBands(task.interval_levels)
    out: dict[tuple[str, int], dict[str, dict[float, object]]] = defaultdict(
        lambda: {"served": {}, "persistence": {}, "causal": {}}
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
            elif p.model == "persistence":
                causal.publish(r.device, p.horizon, p.ts, p.value)
        for s in res.scores:
            bounds = (
                published.pop((r.device, s.horizon, s.made_ts), None) if s.model == SERVED else None
            )
            theirs = None
            if s.model == "persistence":
                theirs = causal.settle(r.device, s.horizon, s.made_ts, s.actual, s.predicted)
            if s.target_ts - first[r.device] < skip:
                continue
            d = out[(r.device, s.horizon)]
            if s.model == SERVED and bounds:
                d["served"][s.made_ts] = (s.actual, bounds, s.actual - s.predicted)
            elif s.model == "persistence":
                d["persistence"][s.made_ts] = s.actual - s.predicted
                if theirs:
                    d["causal"][s.made_ts] = (s.actual, theirs)
        if n and n % 100_000 == 0:
            print(f"  {name}: {n:,} readings", file=sys.stderr, flush=True)
    return out


def _narrowest(s: np.ndarray, k: int) -> int:
    """Width of the narrowest closed interval holding at least ``k`` (>= 1) of the sorted ``s``."""
    return int(np.min(s[k - 1 :] - s[: len(s) - k + 1]))


def narrowest_width(residuals: np.ndarray, coverage: float, unit: float = 1e-6) -> float:
    """Mean width of the narrowest fixed interval of ``residuals`` that covers exactly ``coverage``.

    A fixed interval covers a whole number of the residuals, and with ties (a sensor's
    resolution: persistence is exactly right on many readings) not every number: the
    narrowest interval holding ``k`` of them, ``w(k)``, is a step function whose steps end at
    the achievable counts. The oracle is the randomised one: between the two neighbouring
    achievable counts around ``coverage · n``, the mix of their two intervals that covers
    exactly that, whose mean width interpolates linearly between theirs. Residuals are
    compared in whole ``unit`` (1e-6 °C), so that ties stay ties.

    Six residuals of ten are 0, two are 0.1, two -0.1: the fixed intervals [0, 0] (60 %),
    [0, 0.1] (80 %) and [-0.1, 0.1] (100 %); 70 % is half the first and half the second:

    >>> r = np.array([0.0] * 6 + [0.1] * 2 + [-0.1] * 2)
    >>> [round(narrowest_width(r, c), 3) for c in (0.6, 0.7, 0.8, 0.9)]
    [0.0, 0.05, 0.1, 0.15]
    """
    s = np.sort(np.rint(residuals / unit).astype(np.int64))
    n = len(s)
    k = coverage * n
    if k <= 0.0:
        return 0.0
    k_up = min(n, math.ceil(k))
    w = _narrowest(s, k_up)
    lo, hi = 1, k_up  # the step of width w starts at the first count that needs it ...
    while lo < hi:
        m = (lo + hi) // 2
        lo, hi = (lo, m) if _narrowest(s, m) >= w else (m + 1, hi)
    below = lo - 1  # ... so the achievable count below is the one just before it
    lo, hi = k_up, n  # ... and ends at the last count it holds: the achievable count above
    while lo < hi:
        m = (lo + hi + 1) // 2
        lo, hi = (m, hi) if _narrowest(s, m) <= w else (lo, m - 1)
    above = lo
    w_below = _narrowest(s, below) if below >= 1 else 0
    if above == below:
        return w * unit
    return (w_below + (w - w_below) * (k - below) / (above - below)) * unit


def central_width(residuals: np.ndarray, coverage: float, unit: float = 1e-6) -> float:
    """Mean width of the fixed central interval of ``residuals`` that covers exactly ``coverage``:
    ``(1 - coverage) / 2`` of them below its low end and as many above its high end.

    Each end is a randomised quantile: a fixed low end at a value leaves below it the
    residuals smaller than that value, a whole number, and with ties not every number;
    between the two neighbouring achievable numbers, the mix that leaves exactly the
    share below, whose mean end interpolates linearly between their two values (and the
    same above). Residuals are compared in whole ``unit`` (1e-6 °C), so that ties stay ties.

    Six residuals of ten are 0, two are 0.1, two -0.1: the central 60 % is [0, 0]; the
    central 80 % is half [-0.1, 0] (two below) and half [0, 0] (four below), and half
    [0, 0.1] and half [0, 0] above: mean width 0.1.

    >>> r = np.array([0.0] * 6 + [0.1] * 2 + [-0.1] * 2)
    >>> [round(central_width(r, c), 3) for c in (0.5, 0.6, 0.8, 1.0)]
    [0.0, 0.0, 0.1, 0.2]
    """
    s = np.sort(np.rint(residuals / unit).astype(np.int64))
    n = len(s)
    values, first, counts = np.unique(s, return_index=True, return_counts=True)
    tail = (1.0 - coverage) / 2.0 * n
    low = np.interp(tail, first, values)  # a low end at values[j] leaves first[j] below it
    above = n - first - counts  # a high end at values[j] leaves above[j] above it (decreasing)
    high = np.interp(tail, above[::-1], values[::-1])
    # an atom that holds both tails' ranks (persistence exactly right more often than the
    # coverage asks) cannot be cut from both sides: the interval is that point, or empty
    return max(0.0, float(high - low)) * unit


class Row(NamedTuple):
    """One series' figures at one horizon and level (widths in °C, means weighted by the
    forecasts scored on each device)."""

    horizon: int
    level: float
    coverage: float  # ours, on its worst device
    device: str  # that device
    ours: float  # our mean width
    oracle: float  # the central oracle's, at the coverage ours achieved on each device
    narrowest: float  # the narrowest oracle's, at the same coverage
    quantile: float  # the fixed (1-L)/2 .. (1+L)/2 quantile interval's width
    quantile_coverage: float  # ... and what it actually covers
    scored: int
    mae_ratio: float  # the served forecast's MAE over persistence's, on the same forecasts
    causal_vs: float  # our mean width over the causal oracle's, on the forecasts both have
    causal_coverage: float  # the causal oracle's coverage there (mean over devices)


def figures(data, levels: tuple[float, ...]) -> list[Row]:
    """Per horizon and level, over the forecasts that were published with an interval (the
    served forecast's and persistence's, on the same target times)."""
    rows = []
    by_h: dict[int, list] = defaultdict(list)
    for (device, h), d in data.items():
        by_h[h].append((device, d))
    for h in sorted(by_h):
        for i, level in enumerate(levels):
            worst, worst_dev, n = None, "", 0
            ours = oracle = narrowest = quantile = quantile_cov = served_ae = persistence_ae = 0.0
            ours_both = causal_w = causal_cov = 0.0  # on the forecasts both bands published
            n_both = 0
            for device, d in sorted(by_h[h]):
                made = [t for t in d["served"] if t in d["persistence"]]
                if len(made) < len(d["served"]):
                    print(
                        f"  {device} {h} s: {len(d['served']) - len(made)} forecasts without "
                        "persistence's",
                        file=sys.stderr,
                    )
                if not made:
                    continue
                actual = np.array([d["served"][t][0] for t in made])
                lo = np.array([d["served"][t][1][2 * i] for t in made])
                hi = np.array([d["served"][t][1][2 * i + 1] for t in made])
                cov = float(np.mean((actual >= lo) & (actual <= hi)))
                if worst is None or abs(cov - level) > abs(worst - level):
                    worst, worst_dev = cov, device
                res = np.array([d["persistence"][t] for t in made])
                q = np.quantile(res, [(1 - level) / 2, (1 + level) / 2])
                both = [t for t in made if t in d["causal"]]
                if both:
                    c_act = np.array([d["causal"][t][0] for t in both])
                    c_lo = np.array([d["causal"][t][1][2 * i] for t in both])
                    c_hi = np.array([d["causal"][t][1][2 * i + 1] for t in both])
                    o_w = [d["served"][t][1][2 * i + 1] - d["served"][t][1][2 * i] for t in both]
                    ours_both += float(np.sum(o_w))
                    causal_w += float(np.sum(c_hi - c_lo))
                    causal_cov += float(np.sum((c_act >= c_lo) & (c_act <= c_hi)))
                    n_both += len(both)
                m = len(made)
                served_ae += float(np.sum(np.abs([d["served"][t][2] for t in made])))
                persistence_ae += float(np.sum(np.abs(res)))
                ours += float(np.mean(hi - lo)) * m
                oracle += central_width(res, cov) * m
                narrowest += narrowest_width(res, cov) * m
                quantile += float(q[1] - q[0]) * m
                quantile_cov += float(np.mean((res >= q[0]) & (res <= q[1]))) * m
                n += m
            if worst is not None:
                rows.append(
                    Row(h, level, worst, worst_dev, ours / n, oracle / n, narrowest / n,
                        quantile / n, quantile_cov / n, n,
                        served_ae / persistence_ae if persistence_ae else math.nan,
                        ours_both / causal_w if causal_w else math.nan,
                        causal_cov / n_both if n_both else math.nan)
                )  # fmt: skip
    return rows


def _vs(ours: float, oracle: float) -> str:
    """Ours against an oracle, in per cent (negative: ours narrower)."""
    return f"{100 * (ours / oracle - 1):+.0f} %" if oracle > 0 else "n/a"


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
        "| series | horizon s | level | coverage (worst device) | ours °C | oracle °C "
        "| ours vs oracle | narrowest °C | ours vs narrowest "
        "| quantile oracle °C (its coverage) | scored | served MAE / persistence's "
        "| ours vs causal oracle (its coverage) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in a.series or SERIES:
        t0 = time.process_time()
        data = run(name, a.real)
        for row in figures(data, levels):
            flag = "" if abs(row.coverage - row.level) <= 0.03 else " **off**"
            print(
                f"| {name} | {row.horizon} | {row.level:.2f} | {100 * row.coverage:.1f} %{flag} "
                f"({row.device}) | {row.ours:.3f} | {row.oracle:.3f} | {_vs(row.ours, row.oracle)} "
                f"| {row.narrowest:.3f} | {_vs(row.ours, row.narrowest)} "
                f"| {row.quantile:.3f} ({100 * row.quantile_coverage:.1f} %) | {row.scored:,} "
                f"| {row.mae_ratio:.3f} | {100 * (row.causal_vs - 1):+.0f} % "
                f"({100 * row.causal_coverage:.1f} %) |",
                flush=True,
            )
        print(f"  {name}: {time.process_time() - t0:.0f} s CPU", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How far any online combination of today's served forecast and the batch expert can go.

Issue 28 asks the forecast served with the batch expert to be at least 5 % better than
the batch model alone at every horizon. This bench asks whether some other combination
of the same two forecasts could reach that, on the very forecasts
``bench/batch_expert.py`` scores (the prequential run, the batch model retrained every
7 days on all the past, the pairs made once a batch model existed). Per device and
horizon, the MAE of:

- ``batch``: the batch model alone (the bar's reference), and ``served``: today's;
- ``expw``: the processor's blend, an :class:`~online_models.combination.ExpWeighted`
  of the two (what the processor serves with ``--batch-expert``);
- ``best fixed``: the best fixed mix ``a·served + (1 - a)·batch``, ``a`` chosen with
  hindsight on the same forecasts (a bound no online weighting of the two beats by much);
- ``rls``: an unconstrained linear combination (Granger & Ramanathan 1984), fitted
  online by recursive least squares with forgetting: ``batch + w·(served - batch, 1)``;
- ``rls+err``: the same with each expert's last known error as two more inputs (an
  error-correction term: a forecast whose errors persist is corrected by the last one),
  the errors of this horizon's forecasts (``own``) and of the device's shortest horizon
  (``short``, known soonest);
- ``expw+corr``: the processor's blend with a third expert, the batch forecast corrected by
  its last known error at the shortest horizon (convex weights: nothing is amplified).

Every combination is causal: a pair teaches it only once its target time has passed, and
its inputs are what was known when the forecast was made.

    .venv/bin/python bench/batch_combinations.py FILE.csv --horizon 3600 --horizon 21600
    .venv/bin/python bench/batch_combinations.py --generate 9 --horizon 900 --horizon 3600
"""

from __future__ import annotations

import argparse
import heapq
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from online_models.batch_served import BatchServed  # noqa: E402
from online_models.catalog import load_catalog  # noqa: E402
from online_models.combination import ExpWeighted  # noqa: E402
from online_models.config import TaskConfig  # noqa: E402
from online_models.evaluate import prequential  # noqa: E402


class Pair(NamedTuple):
    """One scored forecast of both experts: made at ``ts`` for ``ts + horizon``."""

    horizon: int
    ts: float
    now: float
    served: float
    batch: float
    actual: float
    w: float


class Recorded(BatchServed):
    """:class:`BatchServed` that keeps every settled pair with a batch forecast, per device."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.pairs: dict[str, list[Pair]] = {}

    def _settle(self, device, d, s):  # type: ignore[no-untyped-def]
        got = d.waiting.get((s.horizon, s.made_ts))
        if got is not None and got[1] is not None:
            now, b, _, w, _ = got
            pair = Pair(s.horizon, s.made_ts, now, s.predicted, b, s.actual, w)
            self.pairs.setdefault(device, []).append(pair)
        super()._settle(device, d, s)


class Rls:
    """Recursive least squares with forgetting ``lam``: ``predict(x)``, ``learn(x, y)``."""

    def __init__(self, n: int, lam: float = 0.999) -> None:
        self.w = np.zeros(n)
        self.p = np.eye(n)
        self.lam = lam

    def predict(self, x: np.ndarray) -> float:
        return float(self.w @ x)

    def learn(self, x: np.ndarray, y: float) -> None:
        px = self.p @ x
        gain = px / (self.lam + x @ px)
        self.w = self.w + gain * (y - self.w @ x)
        self.p = (self.p - np.outer(gain, px)) / self.lam


Inputs = Callable[[Pair, dict[int, tuple[float, float]]], list[float]]


def causal(pairs: Sequence[Pair], make: Callable[[int], object], forecast, learn) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """Run one combination over a device's pairs in the order made: before each forecast,
    every pair whose target time has come teaches it. ``forecast(model, pair, errors)``
    and ``learn(model, pair, errors_then)``; ``errors`` maps a horizon to the last known
    (served, batch) errors. Returns horizon -> list of absolute errors."""
    models: dict[int, object] = {}
    errors: dict[int, tuple[float, float]] = {}
    # (target time, order made, the pair, the errors known when it was made)
    waiting: list[tuple[float, int, Pair, dict[int, tuple[float, float]]]] = []
    out: dict[int, list[float]] = {}
    for i, p in enumerate(sorted(pairs, key=lambda q: (q.ts, q.horizon))):
        while waiting and waiting[0][0] <= p.ts:
            _, _, q, then = heapq.heappop(waiting)
            learn(models.setdefault(q.horizon, make(q.horizon)), q, then)
            errors[q.horizon] = (q.actual - q.served, q.actual - q.batch)
        then = dict(errors)
        value = forecast(models.setdefault(p.horizon, make(p.horizon)), p, then)
        out.setdefault(p.horizon, []).append(abs(p.actual - value))
        heapq.heappush(waiting, (p.ts + p.horizon, i, p, then))
    return out


def rls_run(pairs: Sequence[Pair], which: str) -> dict[int, list[float]]:
    """``rls`` (``which`` ``none``) or ``rls+err`` (``own`` or ``short``)."""
    shortest = min(p.horizon for p in pairs)

    def inputs(p: Pair, errors: dict[int, tuple[float, float]]) -> np.ndarray:
        x = [p.served - p.batch, 1.0]
        if which != "none":
            x += errors.get(p.horizon if which == "own" else shortest, (0.0, 0.0))
        return np.array(x)

    n = 2 if which == "none" else 4
    return causal(
        pairs,
        lambda h: Rls(n),
        lambda m, p, e: p.batch + m.predict(inputs(p, e)),
        lambda m, p, e: m.learn(inputs(p, e), p.actual - p.batch),
    )


def expw_run(pairs: Sequence[Pair]) -> dict[int, list[float]]:
    """The processor's blend of the two."""
    return causal(
        pairs,
        lambda h: ExpWeighted(h, ("served", "batch"), fallback="served"),
        lambda m, p, e: m.predict_one({"served": p.served, "batch": p.batch}),
        lambda m, p, e: m.learn_one({"served": p.served, "batch": p.batch}, p.actual, p.w),
    )


def expw_corrected_run(pairs: Sequence[Pair]) -> dict[int, list[float]]:
    """The processor's blend with a third expert: the batch forecast plus the batch model's
    last known error at the device's shortest horizon (a convex weighting: it cannot
    amplify, where the unconstrained ``rls`` can)."""
    shortest = min(p.horizon for p in pairs)

    def x(p: Pair, errors: dict[int, tuple[float, float]]) -> dict[str, float]:
        corrected = p.batch + errors.get(shortest, (0.0, 0.0))[1]
        return {"served": p.served, "batch": p.batch, "corrected": corrected}

    return causal(
        pairs,
        lambda h: ExpWeighted(h, ("served", "batch", "corrected"), fallback="served"),
        lambda m, p, e: m.predict_one(x(p, e)),
        lambda m, p, e: m.learn_one(x(p, e), p.actual, p.w),
    )


def best_fixed(pairs: Sequence[Pair]) -> float:
    """The MAE of the best fixed mix of the two, chosen with hindsight (a grid of 0.01)."""
    s = np.array([p.served for p in pairs])
    b = np.array([p.batch for p in pairs])
    y = np.array([p.actual for p in pairs])
    return min(float(np.mean(np.abs(y - (a * s + (1 - a) * b)))) for a in np.linspace(0, 1, 101))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", nargs="?", help="a series (the data format's CSV)")
    ap.add_argument("--generate", type=float, metavar="DAYS", help="a generated series instead")
    ap.add_argument("--devices", type=int, default=3, help="generated devices (3)")
    ap.add_argument("--horizon", type=int, action="append", required=True, help="seconds")
    a = ap.parse_args()
    if a.generate:
        from telemetry.generate import generate

        readings = list(generate(days=a.generate, seed=1, devices=a.devices))
        name = f"generated {a.generate:g} days"
    elif a.csv:
        from telemetry.csvfile import read_csv

        readings = list(read_csv(a.csv))
        name = Path(a.csv).stem
    else:
        ap.error("give a CSV file or --generate DAYS")
    task = TaskConfig(horizons=tuple(a.horizon))
    rec = Recorded(task.horizons)
    cpu = time.process_time()
    print(f"# {name}: {len(readings):,} readings; the prequential run ...", file=sys.stderr)
    prequential(readings, load_catalog(), task, references=False, batch_expert=rec)
    cpu = time.process_time() - cpu
    load = Path("/proc/loadavg").read_text().split()[0]
    print(f"# {name}: {len(rec.trainings)} trainings, {cpu:.1f} CPU-s, load {load}")
    cols = ("served", "expw", "best fixed", "rls", "rls+err own", "rls+err short", "expw+corr")
    print("| series | device | horizon | n | batch | " + " | ".join(cols) + " |")
    print("|---|---|---|---|---|" + "---|" * len(cols))
    for device, pairs in sorted(rec.pairs.items()):
        runs = {
            "expw": expw_run(pairs),
            "rls": rls_run(pairs, "none"),
            "rls+err own": rls_run(pairs, "own"),
            "rls+err short": rls_run(pairs, "short"),
            "expw+corr": expw_corrected_run(pairs),
        }
        for h in sorted({p.horizon for p in pairs}):
            hp = [p for p in pairs if p.horizon == h]
            batch = float(np.mean([abs(p.actual - p.batch) for p in hp]))
            mae = {
                "served": float(np.mean([abs(p.actual - p.served) for p in hp])),
                "best fixed": best_fixed(hp),
                **{k: float(np.mean(v[h])) for k, v in runs.items()},
            }
            cells = " | ".join(f"{mae[c]:.3f} ({100 * (1 - mae[c] / batch):+.1f} %)" for c in cols)
            print(f"| {name} | {device} | {h} | {len(hp):,} | {batch:.3f} | {cells} |")


if __name__ == "__main__":
    main()

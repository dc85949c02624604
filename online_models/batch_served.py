"""The served forecast with the batch expert beside it, offline: retrained on a schedule, weighed online.

:class:`BatchServed` runs beside :func:`online_models.evaluate.prequential` and answers
"what if the processors had a batch expert?" with no look-ahead:

- every device's learned readings go through a
  :class:`~online_models.batch_expert.PairBuilder` (the same forecast grid as the
  processor's), whose completed examples are kept;
- every ``every_s`` seconds of stream time (7 days), from the first reading on, a
  :class:`~online_models.batch_expert.BatchExpert` is trained on all the examples
  completed so far: one model across the devices (``scope="global"``) or one per device
  (``scope="device"``, each on its own schedule from its own first reading);
- at each forecast the processor serves, the batch expert (once there is one) forecasts
  the same target time, and an :class:`~online_models.combination.ExpWeighted` of the two
  (experts ``served`` and ``batch``; ``served`` stands in while there is no batch model)
  gives the forecast with the batch expert; it learns each pair's error when the served
  forecast is scored, weighted as the processor weighs its ensemble's scores.

Figures per device and horizon (:attr:`BatchServed.totals`), all on the same forecasts:
those made while a batch model existed (after the first ``every_s``): the online
baselines (``persistence``, and ``rolling_mean`` and ``seasonal_naive`` when the
processor's model set made their forecasts), ``served`` (today's), ``batch`` (alone) and
``served+batch``.

>>> from online_models.records import Prediction, Score, SERVED
>>> bs = BatchServed((3600,), every_s=4 * 86_400.0, per_horizon=1, max_iter=20)
>>> import math
>>> for i in range(24 * 12):
...     t = 1_600_000_000.0 + 3600 * i
...     y = 20 + 3 * math.sin(2 * math.pi * t / 86_400)
...     prev = 20 + 3 * math.sin(2 * math.pi * (t - 3600) / 86_400)
...     bs.step("d", t, y, (Prediction(SERVED, 3600, t, t + 3600, y),),
...             (Score(SERVED, 3600, t - 3600, t, prev, y),) if i else ())
>>> figures = bs.figures()[("d", 3600)]
>>> figures["batch"]["n"] > 0, figures["batch"]["mae"] < figures["served"]["mae"]
(True, True)
>>> len(bs.trainings)
2
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from online_models.baselines import ONLINE_BASELINES
from online_models.batch_expert import BatchExpert, Examples, PairBuilder, fit
from online_models.combination import ExpWeighted
from online_models.records import SERVED, Prediction, Score
from online_models.scoring import ErrorTotals

__all__ = ["NAMES", "BatchServed", "Training"]

WEEK_S = 7 * 86_400.0
NAMES = (*ONLINE_BASELINES, "served", "batch", "served+batch")


@dataclass(frozen=True, slots=True)
class Training:
    """One retraining: when (stream time), for whom (``*`` for the global model), on how many
    examples, and its CPU seconds."""

    ts: float
    device: str
    examples: int
    cpu_s: float


@dataclass
class _Device:
    builder: PairBuilder
    first_ts: float
    next_train: float
    combos: dict[int, ExpWeighted]
    last_made: dict[int, float] = field(default_factory=dict)
    # (horizon, made_ts) -> (value now, batch forecast, the two weighed, its weight w,
    # the other baselines' forecasts)
    waiting: dict[
        tuple[int, float], tuple[float, float | None, float | None, float, dict[str, float]]
    ] = field(default_factory=dict)
    examples: Examples = field(default_factory=Examples)


class BatchServed:
    """The batch expert retrained every ``every_s`` seconds and weighed against the served
    forecast (see the module docstring). ``horizons`` and ``per_horizon`` as the task's;
    ``scope`` ``global`` or ``device``; ``params`` go to :func:`~online_models.batch_expert.fit`.
    """

    def __init__(
        self,
        horizons: Iterable[int],
        *,
        every_s: float = WEEK_S,
        scope: str = "global",
        per_horizon: int = 60,
        max_waiting: int = 50_000,
        **params: object,
    ) -> None:
        if scope not in ("global", "device"):
            raise ValueError(f"scope must be global or device, got {scope!r}")
        self.horizons = tuple(sorted({int(h) for h in horizons if h > 0}))
        self.every_s = float(every_s)
        self.scope = scope
        self.per_horizon = per_horizon
        self.max_waiting = max_waiting
        self.params = params
        self.devices: dict[str, _Device] = {}
        self.experts: dict[str, BatchExpert] = {}  # device (or "*") -> its current model
        self.next_global = math.inf
        self.totals: dict[tuple[str, int, str], ErrorTotals] = {}
        self.trainings: list[Training] = []

    def _device(self, device: str, ts: float) -> _Device:
        d = self.devices.get(device)
        if d is None:
            d = self.devices[device] = _Device(
                PairBuilder(self.horizons, self.per_horizon, device),
                ts,
                ts + self.every_s,
                {
                    h: ExpWeighted(horizon=h, experts=("served", "batch"), fallback="served")
                    for h in self.horizons
                },
            )
            if self.scope == "global" and not math.isfinite(self.next_global):
                self.next_global = ts + self.every_s
        return d

    def _train(self, who: str, examples: Examples, ts: float) -> None:
        if not len(examples):
            return
        cpu = time.process_time()
        self.experts[who] = fit(examples, **self.params)
        self.trainings.append(Training(ts, who, len(examples), time.process_time() - cpu))

    def step(
        self,
        device: str,
        ts: float,
        y: float,
        predictions: Iterable[Prediction],
        scores: Iterable[Score],
    ) -> None:
        """One learned reading of ``device``: the processor's ``predictions`` made at it and
        the ``scores`` it settled (only the served forecast's are read)."""
        d = self._device(device, ts)
        step = d.builder.add(ts, y)
        d.examples.extend(step.done)
        if self.scope == "global":
            if ts >= self.next_global:
                examples = Examples.joined(dev.examples for dev in self.devices.values())
                self._train("*", examples, ts)
                while self.next_global <= ts:
                    self.next_global += self.every_s
            expert = self.experts.get("*")
        else:
            if ts >= d.next_train:
                self._train(device, d.examples, ts)
                while d.next_train <= ts:
                    d.next_train += self.every_s
            expert = self.experts.get(device)
        for s in scores:
            if s.model == SERVED and s.horizon > 0:
                self._settle(device, d, s)
        made = {h: (x, now) for h, x, now in step.made}
        predictions = tuple(predictions)
        baselines: dict[int, dict[str, float]] = {}
        for p in predictions:
            if p.model in ONLINE_BASELINES and p.model != "persistence":
                baselines.setdefault(p.horizon, {})[p.model] = p.value
        for p in predictions:
            h = p.horizon
            if p.model != SERVED or h == 0:
                continue
            b: float | None = None
            got = made.get(h)
            if expert is not None and got is not None:
                b = expert.forecast(*got)
            last = d.last_made.get(h)
            every = h / self.per_horizon
            w = (every if last is None else min(ts - last, h)) / h
            d.last_made[h] = ts
            both = d.combos[h].predict_one({"served": p.value, "batch": b})  # weights of now
            d.waiting[(h, p.ts)] = (y, b, both, w, baselines.get(h, {}))
        if len(d.waiting) > self.max_waiting:  # forecasts the processor dropped unscored
            for key in sorted(d.waiting)[: len(d.waiting) - self.max_waiting]:
                del d.waiting[key]

    def _settle(self, device: str, d: _Device, s: Score) -> None:
        got = d.waiting.pop((s.horizon, s.made_ts), None)
        if got is None:
            return
        now, b, both, w, others = got
        d.combos[s.horizon].learn_one({"served": s.predicted, "batch": b}, s.actual, w)
        if b is None or both is None:
            return
        for name, value in (
            ("persistence", now),
            *others.items(),
            ("served", s.predicted),
            ("batch", b),
            ("served+batch", both),
        ):
            key = (device, s.horizon, name)
            t = self.totals.get(key)
            if t is None:
                t = self.totals[key] = ErrorTotals()
            t.update(s.actual, value)

    def figures(self) -> dict[tuple[str, int], dict[str, dict[str, float | int | None]]]:
        """Per (device, horizon): each of :data:`NAMES`' figures on the same forecasts."""
        out: dict[tuple[str, int], dict[str, dict[str, float | int | None]]] = {}
        for (device, h, name), t in sorted(self.totals.items()):
            out.setdefault((device, h), {})[name] = t.as_dict()
        return out

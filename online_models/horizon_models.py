"""The models of one device at one horizon: forecast on a grid, score, learn, select.

:class:`HorizonModels` holds what one horizon of a
:class:`~online_models.device.DeviceModels` needs: the models, their errors,
the served forecast's errors, the champion and its drift detector, and the
forecasts waiting for their actual value. Its verbs take the device (``dm``)
for what the horizons share: the guard, the features, the counters.

- :meth:`HorizonModels.nowcast` (horizon 0): every model predicts the target
  now from the other sensors, is scored at once, then learns;
- :meth:`HorizonModels.step` (horizon ``h``): forecasts whose target time
  has come are scored against this reading and learned from; the series
  models learn the reading; on the grid, every model forecasts ``ts + h``.
"""

from __future__ import annotations

import logging
import math
from array import array
from collections.abc import Mapping, Sequence
from typing import Protocol

from online_models.catalog import ModelSpec
from online_models.config import TaskConfig
from online_models.drift import DriftWatch
from online_models.features import Features, nowcast_view
from online_models.guard import Guard, fresh_model
from online_models.horizon import NAMES as HORIZON_NAMES
from online_models.horizon import HorizonFeatures, HorizonX
from online_models.pending import Due, Kept, Pending
from online_models.records import SERVED, Event, Prediction, Score
from online_models.scoring import ErrorStats
from online_models.selection import Selector

__all__ = ["HorizonModels"]

log = logging.getLogger("online_models.device")


class Device(Protocol):
    """What the horizon's verbs read and count of their device
    (:class:`~online_models.device.DeviceModels`)."""

    device: str
    task: TaskConfig
    guard: Guard
    last_value: float | None
    n_dropped: int
    n_promotions: int
    n_drifts: int

    @property
    def hfeatures(self) -> HorizonFeatures | None: ...

    def keep(self, x: Features, raw: bool, scaled: bool) -> Kept | None: ...

    def kept_features(
        self,
        raw: Sequence[float] | None,
        scaled: Sequence[float] | None,
        value: float,
        keys: tuple[str, ...],
    ) -> Features: ...


# at a forecast horizon; baselines read the value and its means from the features there, and
# learn only at the nowcast
_LEARNS_FROM_READING = ("regressor", "batch")


class HorizonModels:
    """The models, errors, champion, drift detector and pending forecasts of one horizon.

    >>> from online_models.catalog import load_catalog
    >>> hz = HorizonModels(900, load_catalog().select("default").for_horizon(900), TaskConfig())
    >>> hz.order[-1], hz.every, hz.selector.champion
    ('ensemble', 15.0, 'ensemble')
    """

    def __init__(
        self,
        horizon: int,
        specs: list[ModelSpec],
        task: TaskConfig,
        observers: frozenset[str] = frozenset(),
    ) -> None:
        self.horizon = horizon
        self.specs = {s.name: s for s in specs}
        self.names = tuple(s.name for s in specs)
        self.models = {s.name: s.build(task.target, horizon) for s in specs}
        self.series = tuple(s.name for s in specs if s.kind == "series")
        self.learners = tuple(s.name for s in specs if s.kind in _LEARNS_FROM_READING)
        # what a pending forecast keeps of the reading's features: raw, standardised or both
        self.keep_raw = any(not self.specs[n].scale for n in self.learners)
        self.keep_scaled = any(self.specs[n].scale for n in self.learners)
        self.on_horizon = tuple(s.name for s in specs if s.kind in ("horizon", "seasonal"))
        self.horizon_learners = tuple(s.name for s in specs if s.kind == "horizon")
        self.combos = tuple(s.name for s in specs if s.kind == "combination")
        # predict order: the combinations last, they read the others' forecasts
        self.order = tuple(n for n in self.names if n not in self.combos) + self.combos
        self.stats = {s.name: ErrorStats(task.window) for s in specs}
        # models scored beside the others that selection never makes champion
        self.observers = frozenset(observers) & set(self.names)
        self.served = ErrorStats(task.window)
        champion = task.initial_champion if task.initial_champion in self.specs else None
        if champion in self.observers:
            champion = None
        if champion is None:
            champion = "persistence" if "persistence" in self.specs else self.names[0]
        self.selector = Selector(
            champion, task.promote_margin, task.promote_min_samples, task.promote_cooldown
        )
        self.drift = DriftWatch(task.drift_delta, task.drift_grace, task.drift_block)
        self.pending = Pending(self.names)
        self.every = horizon / task.forecasts_per_horizon if horizon else 0.0
        self.next_at = -math.inf
        self.last_made: float | None = None
        self.resets: dict[str, int] = {}

    # ------------------------------------------------------------------ nowcast
    def nowcast(
        self,
        dm: Device,
        x: Features,
        y: float,
        ts: float,
        lo: float,
        hi: float,
        predictions: list[Prediction],
        scores: list[Score],
        events: list[Event],
    ) -> None:
        """Every model predicts the target now without its own history, is scored, learns."""
        guard = dm.guard
        xn = nowcast_view(x, dm.task.target)
        fallback = dm.last_value
        scored: list[tuple[str, float, float, float]] = []
        made: dict[str, float | None] = {}
        rejected: set[str] = set()
        for name in self.order:
            combo = name in self.combos
            p = guard.predict(
                self, name, made if combo else xn, fallback, lo, hi, ts, events, rejected
            )
            made[name] = p
            guard.learn(self, name, made if combo else xn, y, ts, events, 1.0 if combo else None)
            if p is not None:
                predictions.append(Prediction(name, 0, ts, ts, p))
                scored.append((name, p, ts, ts))
        value, source = self.served_value(made, fallback, rejected)
        served: list[tuple[float | None, float, float]] = []
        if value is not None:
            predictions.append(Prediction(SERVED, 0, ts, ts, value, source))
            served.append((value, ts, ts))
        if scored or served:
            self.score(dm, scored, served, y, ts, scores, events)

    def served_value(
        self, made: dict[str, float | None], fallback: float | None, rejected: set[str]
    ) -> tuple[float | None, str]:
        """The forecast published: the champion's, else persistence's (and which it was)."""
        champion = self.selector.champion
        value = made.get(champion)
        if value is not None and champion not in rejected:
            return value, champion
        return fallback, "persistence"

    # ---------------------------------------------------------------- forecasts
    def step(
        self,
        dm: Device,
        x: Features,
        kept: dict[tuple[bool, bool], Kept | None],
        y: float,
        ts: float,
        lo: float,
        hi: float,
        predictions: list[Prediction],
        scores: list[Score],
        events: list[Event],
    ) -> None:
        """Score and learn what is due, feed the series models, forecast on the grid."""
        scored: list[tuple[str, float, float, float]] = []
        served: list[tuple[float | None, float, float]] = []
        due = self.pending.due
        while (item := due(ts)) is not None:
            self._learn(dm, item, y, ts, scored, served, events)
        for name in self.series:
            dm.guard.learn(self, name, {"ts": ts}, y, ts, events)
        if ts >= self.next_at:
            what = (self.keep_raw, self.keep_scaled)
            if what not in kept:
                kept[what] = dm.keep(x, *what)
            self._forecast(dm, x, kept[what], y, ts, lo, hi, predictions, events)
        if scored or served:
            self.score(dm, scored, served, y, ts, scores, events)

    def _forecast(
        self,
        dm: Device,
        x: Features,
        kept: Kept | None,
        y: float,
        ts: float,
        lo: float,
        hi: float,
        predictions: list[Prediction],
        events: list[Event],
    ) -> None:
        h = self.horizon
        every = self.every
        self.next_at = (ts // every + 1.0) * every if every > 0 else ts
        w = (every if self.last_made is None else min(ts - self.last_made, h)) / h
        self.last_made = ts
        target_ts = ts + h
        hf = dm.hfeatures  # (there are horizon features wherever there is a forecast horizon)
        hx = hf.vector(h, ts, y) if self.on_horizon and hf is not None else None
        xs = {"ts": ts}
        xi: Mapping[str, float | None]
        made: dict[str, float | None] = {}
        rejected: set[str] = set()
        guard = dm.guard
        for name in self.order:
            if name in self.series:
                xi = xs
            elif name in self.on_horizon:
                xi = hx  # type: ignore[assignment]  # (set: the horizon has such models)
            elif name in self.combos:
                xi = made
            else:
                xi = x
            p = made[name] = guard.predict(self, name, xi, y, lo, hi, ts, events, rejected)
            if p is not None:
                predictions.append(Prediction(name, h, ts, target_ts, p))
        value, source = self.served_value(made, y, rejected)
        # (never None: the value now stands in for a champion without a forecast)
        predictions.append(Prediction(SERVED, h, ts, target_ts, value, source))  # type: ignore[arg-type]
        kept_hx = None
        if self.horizon_learners and hx is not None:  # (horizon learners forecast on hx)
            kept_hx = array("d", hx.values())
            kept_hx.append(y)
        preds = tuple(made[n] for n in self.names)
        self.pending.append(ts, target_ts, w, preds, value, source, kept, kept_hx)
        if len(self.pending) > dm.task.max_pending:
            self.pending.popleft()
            dm.n_dropped += 1

    def _learn(
        self,
        dm: Device,
        item: Due,
        y: float,
        ts: float,
        scored: list[tuple[str, float, float, float]],
        served: list[tuple[float | None, float, float]],
        events: list[Event],
    ) -> None:
        """Score one due forecast and teach its models the actual value."""
        made_ts, due_ts, kept, kept_hx, w, preds, value, _ = item
        names = self.names
        guard = dm.guard
        for name, p in zip(names, preds, strict=True):
            if p is not None:
                scored.append((name, p, made_ts, due_ts))
        served.append((value, made_ts, due_ts))
        if self.learners and kept is not None:
            xm = dm.kept_features(*kept)
            xm.ts = made_ts
            for name in self.learners:
                guard.learn(self, name, xm, y, ts, events)
        if self.horizon_learners and kept_hx is not None:
            hx = HorizonX(zip(HORIZON_NAMES, kept_hx, strict=False))
            hx.anchor = kept_hx[-1]
            for name in self.horizon_learners:
                guard.learn(self, name, hx, y, ts, events, w)
        if self.combos:
            experts = dict(zip(names, preds, strict=True))
            for name in self.combos:
                guard.learn(self, name, experts, y, ts, events, w)

    # -------------------------------------------------------------- selection
    def score(
        self,
        dm: Device,
        scored: list[tuple[str, float, float, float]],
        served: list[tuple[float | None, float, float]],
        y: float,
        ts: float,
        scores: list[Score],
        events: list[Event],
    ) -> None:
        """Add the scores to the errors; watch the champion for drift; maybe promote."""
        h = self.horizon
        stats = self.stats
        selector = self.selector
        observe = selector.observe
        champion = selector.champion  # changes only in consider(), after the loop
        append = scores.append
        for name, p, made_ts, target_ts in scored:
            err = stats[name].update(p, y)
            append(Score(name, h, made_ts, target_ts, p, y))
            observe(name, abs(err))
            if name == champion:
                selector.tick()
                event = self.drift.update(name, h, abs(err), ts)
                if event is not None:
                    self._on_drift(dm, event)
                    events.append(event)
        update = self.served.update
        for value, made_ts, target_ts in served:
            if value is not None:
                update(value, y)
                append(Score(SERVED, h, made_ts, target_ts, value, y))
        if self.observers:
            stats = {n: st for n, st in stats.items() if n not in self.observers}
        event = selector.consider(stats, h, ts)
        if event is not None:
            dm.n_promotions += 1
            log.info(
                "device %s horizon %ss: promoted %s: %s", dm.device, h, event.model, event.reason
            )
            events.append(event)

    def _on_drift(self, dm: Device, event: Event) -> None:
        dm.n_drifts += 1
        log.info(
            "device %s horizon %ss: drift on %s: %s", dm.device, self.horizon, event.model,
            event.reason,
        )  # fmt: skip
        if dm.task.drift_reset:
            name = event.model
            self.models[name] = fresh_model(
                self.models[name], self.specs[name], dm.task.target, self.horizon
            )
            self.drift.restart()
            event.figures["reset"] = True

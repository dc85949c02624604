"""The models of one horizon of a device: forecast on a grid, score, learn, select.

:class:`HorizonModels` holds what one horizon of a
:class:`~online_models.device.DeviceModels` needs: the models, their errors,
the served forecast's errors, the champion and its drift detector, and the
forecasts waiting for their actual value. It owns these and nothing else:
its verbs take the reading as plain values (features, value, time, the
plausible range) and what the horizons share as collaborators (the device's
:class:`~online_models.guard.Guard`, its task), and return what happened as
a :class:`HorizonStep`, which the device applies (its counters, its log) and
returns. When the guard refuses a model's call (a
:class:`~online_models.guard.Fault`), the horizon replaces that model by a
fresh one, counts the reset and, if it was the champion, restarts the drift
detector.

- :meth:`HorizonModels.nowcast` (horizon 0): every model predicts the target
  now from the other sensors, is scored at once, then learns;
- :meth:`HorizonModels.step` (horizon ``h``): forecasts whose target time
  has come are scored against this reading and learned from; the series
  models learn the reading; on the grid (:meth:`HorizonModels.forecasts_at`),
  every model forecasts ``ts + h``.

With the batch expert in the set (``batch_expert``, :mod:`online_models.batch_live`), the
forecast served is the champion's weighed with the batch expert's by ``blend``, an
:class:`~online_models.combination.ExpWeighted` of the two taught each scored pair (the
plain online weighting of the two the offline probe measured, ``bench/batch_expert.py``);
its ``source`` then reads ``<champion>+batch_expert``.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from online_models.batch_live import ACTIVE, SHADOW
from online_models.catalog import ModelSpec
from online_models.combination import ExpWeighted
from online_models.config import TaskConfig
from online_models.drift import DriftWatch
from online_models.features import Features, nowcast_view
from online_models.guard import Fault, Guard, fresh_model
from online_models.horizon import NAMES as HORIZON_NAMES
from online_models.horizon import HorizonFeatures, HorizonX
from online_models.intervals import Band
from online_models.pending import Due, Kept, Pending, kept_features
from online_models.records import SERVED, Event, Prediction, Score
from online_models.scoring import ErrorStats
from online_models.selection import Selector

__all__ = ["HorizonModels", "HorizonStep", "Reset"]

# at a forecast horizon; baselines read the value and its means from the features there, and
# learn only at the nowcast
_LEARNS_FROM_READING = ("regressor", "batch")
# the batch versions: the active one is weighed by the blend (selecting it too would serve it
# alone), the one in shadow is only scored
_NEVER_CHAMPION = frozenset((ACTIVE, SHADOW))
BLEND = "blend"  # the champion and the batch expert weighed (its name for the guard and resets)


class Reset(NamedTuple):
    """A model the guard refused, replaced by a fresh one: its ``model_reset`` event and how
    many times that model has been reset at this horizon so far, this time included."""

    event: Event
    so_far: int


@dataclass(frozen=True, slots=True)
class HorizonStep:
    """What one reading did at one horizon, returned by :class:`HorizonModels`' verbs for the
    device to apply (its counters and its log) and to return in its
    :class:`~online_models.records.StepResult`.

    ``events`` are in the order they happened (resets, drifts, a promotion); ``resets``
    repeats the ``model_reset`` ones with their counts; ``dropped`` counts the forecasts
    that fell off the full queue (beyond ``task.max_pending``).

    >>> HorizonStep(events=(Event("drift", "linear", 60, "ADWIN"),)).predictions
    ()
    """

    predictions: tuple[Prediction, ...] = ()
    scores: tuple[Score, ...] = ()
    events: tuple[Event, ...] = ()
    resets: tuple[Reset, ...] = ()
    dropped: int = 0


_NOTHING = HorizonStep()


def _served(
    champion: str, made: dict[str, float | None], fallback: float | None, rejected: set[str]
) -> tuple[float | None, str]:
    """The forecast published: the champion's, else ``fallback``, persistence's (and which)."""
    value = made.get(champion)
    if value is not None and champion not in rejected:
        return value, champion
    return fallback, "persistence"


class _Run:
    """One run of a verb: the device's guard and task it calls with, the reading's time, and
    what it collects, returned frozen by :meth:`result`."""

    __slots__ = ("guard", "task", "ts", "predictions", "scores", "events", "resets", "dropped")

    def __init__(self, guard: Guard, task: TaskConfig, ts: float) -> None:
        self.guard = guard
        self.task = task
        self.ts = ts
        self.predictions: list[Prediction] = []
        self.scores: list[Score] = []
        self.events: list[Event] = []
        self.resets: list[Reset] = []
        self.dropped = 0

    def result(self) -> HorizonStep:
        if not (self.predictions or self.scores or self.events or self.dropped):
            return _NOTHING
        return HorizonStep(
            tuple(self.predictions),
            tuple(self.scores),
            tuple(self.events),
            tuple(self.resets),
            self.dropped,
        )


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
        self.observers = (frozenset(observers) | _NEVER_CHAMPION) & set(self.names)
        self.served = ErrorStats(task.window)
        self.band = Band(task.interval_levels)  # the served forecast's intervals
        if ACTIVE in self.specs and horizon:  # the batch expert weighed with the served forecast
            self.blend = _fresh_blend(horizon)
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

    blend: ExpWeighted | None = None  # (model sets from before the batch expert have none)

    # ------------------------------------------------------------------ nowcast
    def nowcast(
        self,
        *,
        x: Features,
        y: float,
        ts: float,
        lo: float,
        hi: float,
        fallback: float | None,
        guard: Guard,
        task: TaskConfig,
        judge: Callable[[float | None, tuple[float, ...]], bool] | None = None,
    ) -> HorizonStep:
        """Every model predicts the target now without its own history, is scored, learns:
        ``x`` are the reading's features, ``y`` its value of the target at ``ts``, ``lo ..
        hi`` the plausible range, ``fallback`` persistence's nowcast (stands in for a refused
        one), ``guard`` and ``task`` the device's. ``judge(served, bounds)``, when given, is
        asked after every model predicted whether they may learn ``y``; if not, nothing is
        learned nor scored (the predictions are returned all the same)."""
        run = _Run(guard, task, ts)
        xn = nowcast_view(x, task.target)
        models, combos = self.models, self.combos
        scored: list[tuple[str, float, float, float]] = []
        made: dict[str, float | None] = {}
        rejected: set[str] = set()
        lessons: list[tuple[str, Mapping[str, float | None], float | None]] = []
        for name in self.order:
            combo = name in combos
            xi = made if combo else xn
            p, fault = guard.predict(name, models[name], xi, lo=lo, hi=hi)
            if fault is not None:
                p = fallback
                rejected.add(name)
                self._reset(name, fault, run)
            made[name] = p
            # (taught after all predicted: a combination learns from the experts as it saw them)
            lessons.append((name, dict(made) if combo else xi, 1.0 if combo else None))
            if p is not None:
                run.predictions.append(Prediction(name, 0, ts, ts, p))
                scored.append((name, p, ts, ts))
        value, source = _served(self.selector.champion, made, fallback, rejected)
        bounds: tuple[float, ...] = () if value is None else self.band.publish(value)
        if value is not None:
            run.predictions.append(Prediction(SERVED, 0, ts, ts, value, source, bounds))
        if judge is not None and not judge(value, bounds):
            if value is not None:
                self.band.forget()  # never scored: its offsets do not wait
            return run.result()
        for name, lesson, w in lessons:
            self._teach(name, lesson, y, w, run)
        served: list[tuple[float | None, float, float]] = [] if value is None else [(value, ts, ts)]
        if scored or served:
            self._score(scored, served, y, run)
        return run.result()

    # ---------------------------------------------------------------- forecasts
    def forecasts_at(self, ts: float) -> bool:
        """Is ``ts`` on the grid (:meth:`step` forecasts, and wants ``keep_raw``/``keep_scaled``)?"""
        return ts >= self.next_at

    def step(
        self,
        *,
        x: Features,
        y: float,
        ts: float,
        lo: float,
        hi: float,
        kept: Kept | None,
        hfeatures: HorizonFeatures | None,
        guard: Guard,
        task: TaskConfig,
    ) -> HorizonStep:
        """Score and learn what is due, feed the series models, forecast on the grid.

        As :meth:`nowcast`; ``kept`` is what a forecast made now keeps of ``x`` for the
        learners (given when :meth:`forecasts_at` ``ts``), ``hfeatures`` the device's.
        """
        run = _Run(guard, task, ts)
        scored: list[tuple[str, float, float, float]] = []
        served: list[tuple[float | None, float, float]] = []
        due = self.pending.due
        while (item := due(ts)) is not None:
            self._learn(item, y, scored, served, run)
        for name in self.series:
            self._teach(name, {"ts": ts}, y, None, run)
        if ts >= self.next_at:
            self._forecast(x, kept, y, lo, hi, hfeatures, run)
        if scored or served:
            self._score(scored, served, y, run)
        return run.result()

    def _forecast(
        self,
        x: Features,
        kept: Kept | None,
        y: float,
        lo: float,
        hi: float,
        hf: HorizonFeatures | None,
        run: _Run,
    ) -> None:
        h = self.horizon
        ts = run.ts
        every = self.every
        self.next_at = (ts // every + 1.0) * every if every > 0 else ts
        w = (every if self.last_made is None else min(ts - self.last_made, h)) / h
        self.last_made = ts
        target_ts = ts + h
        # (there are horizon features wherever there is a forecast horizon)
        hx = hf.vector(h, ts, y) if self.on_horizon and hf is not None else None
        xs = {"ts": ts}
        xi: Mapping[str, float | None]
        made: dict[str, float | None] = {}
        rejected: set[str] = set()
        models = self.models
        predict = run.guard.predict
        predictions = run.predictions
        for name in self.order:
            if name in self.series:
                xi = xs
            elif name in self.on_horizon:
                xi = hx  # type: ignore[assignment]  # (set: the horizon has such models)
            elif name in self.combos:
                xi = made
            else:
                xi = x
            p, fault = predict(name, models[name], xi, lo=lo, hi=hi)
            if fault is not None:
                p = y  # persistence's forecast stands in
                rejected.add(name)
                self._reset(name, fault, run)
            made[name] = p
            if p is not None:
                predictions.append(Prediction(name, h, ts, target_ts, p))
        value, source = _served(self.selector.champion, made, y, rejected)
        if self.blend is not None:
            value, source = _blended(self, value, source, made, lo, hi, run)  # type: ignore[arg-type]
        # (never None: the value now stands in for a champion without a forecast)
        bounds = self.band.publish(value)  # type: ignore[arg-type]
        predictions.append(Prediction(SERVED, h, ts, target_ts, value, source, bounds))  # type: ignore[arg-type]
        kept_hx = None
        if self.horizon_learners and hx is not None:  # (horizon learners forecast on hx)
            kept_hx = array("d", hx.values())
            kept_hx.append(y)
        preds = tuple(made[n] for n in self.names)
        self.pending.append(ts, target_ts, w, preds, value, source, kept, kept_hx)
        if len(self.pending) > run.task.max_pending:
            self.pending.popleft()
            self.band.forget()
            run.dropped += 1

    def _learn(
        self,
        item: Due,
        y: float,
        scored: list[tuple[str, float, float, float]],
        served: list[tuple[float | None, float, float]],
        run: _Run,
    ) -> None:
        """Score one due forecast and teach its models the actual value."""
        made_ts, due_ts, kept, kept_hx, w, preds, value, source = item
        names = self.names
        for name, p in zip(names, preds, strict=True):
            if p is not None:
                scored.append((name, p, made_ts, due_ts))
        served.append((value, made_ts, due_ts))
        if self.learners and kept is not None:
            xm = kept_features(kept, run.task.target)
            xm.ts = made_ts
            for name in self.learners:
                self._teach(name, xm, y, None, run)
        if self.horizon_learners and kept_hx is not None:
            hx = HorizonX(zip(HORIZON_NAMES, kept_hx, strict=False))
            hx.anchor = kept_hx[-1]
            for name in self.horizon_learners:
                self._teach(name, hx, y, w, run)
        if self.combos or self.blend is not None:
            experts = dict(zip(names, preds, strict=True))
            for name in self.combos:
                self._teach(name, experts, y, w, run)
            if self.blend is not None:
                _teach_blend(self, experts, source, y, w, run)

    # ----------------------------------------------------------------- resets
    def _teach(
        self, name: str, x: Mapping[str, float | None], y: float, w: float | None, run: _Run
    ) -> None:
        """``name`` learns ``y`` from ``x`` (weighted ``w``) under the guard; reset if it fails."""
        fault = run.guard.learn(name, self.models[name], x, y, w=w)
        if fault is not None:
            self._reset(name, fault, run)

    def _reset(self, name: str, fault: Fault, run: _Run) -> None:
        """Act on the guard's verdict: ``name`` becomes a fresh model (:func:`fresh_model`),
        the reset is counted and is an event; the champion's drift detector starts over."""
        model, spec = self.models[name], self.specs[name]
        self.models[name] = fresh_model(model, spec, run.task.target, self.horizon)
        _count_reset(self, name, fault, run)
        if name == self.selector.champion:
            self.drift.restart()

    # -------------------------------------------------------------- selection
    def _score(
        self,
        scored: list[tuple[str, float, float, float]],
        served: list[tuple[float | None, float, float]],
        y: float,
        run: _Run,
    ) -> None:
        """Add the scores to the errors; watch the champion for drift; maybe promote."""
        h = self.horizon
        ts = run.ts
        stats = self.stats
        selector = self.selector
        observe = selector.observe
        champion = selector.champion  # changes only in consider(), after the loop
        append = run.scores.append
        for name, p, made_ts, target_ts in scored:
            err = stats[name].update(y, p)
            append(Score(name, h, made_ts, target_ts, p, y))
            observe(name, abs(err))
            if name == champion:
                selector.tick()
                event = self.drift.update(name, h, abs(err), ts)
                if event is not None:
                    _restart_on_drift(self, event, run.task)
                    run.events.append(event)
        update, settle = self.served.update, self.band.settle
        for value, made_ts, target_ts in served:
            settle(y, value)  # in the order published: the pending queue's
            if value is not None:
                update(y, value)
                append(Score(SERVED, h, made_ts, target_ts, value, y))
        if self.observers:
            stats = {n: st for n, st in stats.items() if n not in self.observers}
        event = selector.consider(stats, h, ts)
        if event is not None:
            run.events.append(event)


def _restart_on_drift(hz: HorizonModels, event: Event, task: TaskConfig) -> None:
    """With ``task.drift_reset``, the drifting champion of ``hz`` starts afresh."""
    if task.drift_reset:
        name = event.model
        hz.models[name] = fresh_model(hz.models[name], hz.specs[name], task.target, hz.horizon)
        hz.drift.restart()
        event.figures["reset"] = True


def _fresh_blend(horizon: int) -> ExpWeighted:
    return ExpWeighted(horizon, (SERVED, ACTIVE), fallback=SERVED)


def _blended(
    hz: HorizonModels,
    served: float,
    source: str,
    made: Mapping[str, float | None],
    lo: float,
    hi: float,
    run: _Run,
) -> tuple[float, str]:
    """The served forecast weighed with the active batch version's (when it has one), under
    the guard like every model: a refused call serves the champion's as it is."""
    batch = made.get(ACTIVE)
    if batch is None or hz.blend is None:
        return served, source
    value, fault = run.guard.predict(BLEND, hz.blend, {SERVED: served, ACTIVE: batch}, lo=lo, hi=hi)
    if fault is not None:
        _reset_blend(hz, fault, run)
    return (served, source) if value is None else (value, f"{source}+{ACTIVE}")


def _teach_blend(
    hz: HorizonModels,
    experts: Mapping[str, float | None],
    source: str,
    y: float,
    w: float,
    run: _Run,
) -> None:
    """The blend learns a scored pair: the champion's forecast then (``source``'s, the part
    before ``+``) and the batch expert's, under the guard."""
    assert hz.blend is not None  # (the caller's check)
    x = {SERVED: experts.get(source.partition("+")[0]), ACTIVE: experts.get(ACTIVE)}
    fault = run.guard.learn(BLEND, hz.blend, x, y, w=w)
    if fault is not None:
        _reset_blend(hz, fault, run)


def _reset_blend(hz: HorizonModels, fault: Fault, run: _Run) -> None:
    """As :meth:`HorizonModels._reset` does for a model: a fresh blend, counted, an event."""
    hz.blend = _fresh_blend(hz.horizon)
    _count_reset(hz, BLEND, fault, run)


def _count_reset(hz: HorizonModels, name: str, fault: Fault, run: _Run) -> None:
    """``name`` (a model, or the blend) was replaced by a fresh one at ``hz``'s horizon: the
    reset is counted and is a ``model_reset`` event."""
    so_far = hz.resets[name] = hz.resets.get(name, 0) + 1
    event = Event("model_reset", name, hz.horizon, str(fault), {"reason": fault.reason}, run.ts)
    run.events.append(event)
    run.resets.append(Reset(event, so_far))

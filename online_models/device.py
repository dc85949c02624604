"""One device's model set: features, every model at every horizon, scoring, selection, drift.

:class:`DeviceModels` is what the stream processor keeps per device and what
``iotcast evaluate`` runs offline: one object, one verb, :meth:`DeviceModels.step`.
For each reading, in time order:

1. drop it if it is not newer than the last learned reading (``duplicate``
   when equal, ``late`` when older) or a sensor glitch (``glitch``);
2. compute its features (from this reading and earlier ones only);
3. nowcast (horizon 0): every model predicts the target from the features
   *without* the target's own value and history, is scored against the
   reading's value at once, then learns it;
4. forecasts (horizon ``h``): forecasts made earlier whose target time
   ``made + h`` has come (``<=`` this reading's time) are scored against this
   reading, the first at or after their target time, and the models learn
   (features then, value now); the series models learn this reading's value;
   then every model forecasts ``ts + h`` and the forecast waits in a bounded
   queue (oldest dropped, and counted, beyond ``task.max_pending``);
5. model selection and drift detection on the scores (events returned and logged).

The whole object pickles (it is the device's checkpoint) and is
deterministic: the same readings give the same predictions.

>>> from online_models.catalog import load_catalog
>>> from online_models.config import TaskConfig
>>> from telemetry.reading import Reading
>>> dm = DeviceModels("d1", load_catalog(), TaskConfig(horizons=(0, 60)))
>>> r = dm.step(Reading(1594512000.0, "d1", 0.005, 51.0, False, 0.007, False, 0.02, 22.5))
>>> r.status, sorted({(p.model, p.horizon) for p in r.predictions})[:3]
('learned', [('linear', 60), ('persistence', 60), ('rolling_mean', 60)])
>>> dm.step(Reading(1594512000.0, "d1", 0.005, 51.0, False, 0.007, False, 0.02, 22.5)).status
'duplicate'
>>> r = dm.step(Reading(1594512061.0, "d1", 0.005, 51.0, False, 0.007, False, 0.02, 22.6))
>>> [(s.model, s.predicted, s.actual) for s in r.scores if s.horizon == 60][:1]
[('persistence', 22.5, 22.6)]
>>> dm.summary()["champion"]
{'0': 'persistence', '60': 'persistence'}
"""

from __future__ import annotations

import logging
import time
from array import array
from collections import deque
from collections.abc import Iterable, Sequence

from online_models.catalog import Catalog, ModelSpec
from online_models.config import TaskConfig
from online_models.drift import DriftWatch
from online_models.features import Features, FeatureState, Standardizer, nowcast_view
from online_models.records import Event, Prediction, Score, StepResult
from online_models.scoring import ErrorStats
from online_models.selection import Selector
from telemetry.reading import Reading, is_glitch

__all__ = ["DeviceModels", "Event", "Prediction", "Score", "StepResult"]

log = logging.getLogger(__name__)


class _Horizon:
    """The models, errors, champion, drift detector and pending forecasts of one horizon."""

    def __init__(self, horizon: int, specs: list[ModelSpec], task: TaskConfig) -> None:
        self.horizon = horizon
        self.specs = {s.name: s for s in specs}
        self.names = tuple(s.name for s in specs)
        self.models = {s.name: s.build(task.target, horizon) for s in specs}
        self.series = tuple(s.name for s in specs if s.series)
        self.learners = tuple(s.name for s in specs if not s.series)
        self.stats = {s.name: ErrorStats(task.window) for s in specs}
        champion = task.initial_champion if task.initial_champion in self.specs else self.names[0]
        self.selector = Selector(
            champion, task.promote_margin, task.promote_min_samples, task.promote_cooldown
        )
        self.drift = DriftWatch(task.drift_delta, task.drift_grace, task.drift_block)
        # (made_ts, target_ts, (feature values, scaled values or None) as arrays of doubles,
        # predictions aligned with names); the values pair is shared by a reading's horizons.
        self.pending: deque[tuple[float, float, tuple, tuple[float | None, ...]]] = deque()


class DeviceModels:
    """Every model of one device at every horizon (see the module docstring).

    ``catalog`` is the full catalog; ``models`` picks what runs: ``"default"``
    (the cheap set, what the processor runs), ``"all"``, or names. With
    ``timing`` the object adds up each model's predict+learn CPU time of this
    thread (:attr:`cost_ns`; CPU, not wall time, so other processes on a shared
    machine do not inflate it), for reports and benchmarks.

    >>> from online_models.catalog import load_catalog
    >>> from online_models.config import TaskConfig
    >>> dm = DeviceModels("d1", load_catalog(), TaskConfig(), models="persistence,linear")
    >>> dm.model_names
    ('persistence', 'linear')
    >>> dm.set_champion("linear", "operator says so")[0].reason
    'operator: operator says so'
    """

    def __init__(
        self,
        device: str,
        catalog: Catalog,
        task: TaskConfig | None = None,
        *,
        models: str | Iterable[str] = "default",
        timing: bool = False,
    ) -> None:
        self.device = device
        self.task = task or TaskConfig()
        self.catalog = catalog.select(models)
        if not len(self.catalog):
            raise ValueError(f"no models selected from the catalog by {models!r}")
        self.features = FeatureState(self.task.target)
        self.scaler = Standardizer() if any(s.scale for s in self.catalog) else None
        self.feature_keys: tuple[str, ...] | None = None
        self.horizons: dict[int, _Horizon] = {}
        for h in self.task.horizons:
            specs = self.catalog.for_horizon(h)
            if specs:
                self.horizons[h] = _Horizon(h, specs, self.task)
        self.last_ts: float | None = None
        self.n_learned = 0
        self.n_duplicate = 0
        self.n_late = 0
        self.n_glitch = 0
        self.n_dropped = 0
        self.n_promotions = 0
        self.n_drifts = 0
        self.timing = timing
        self.cost_ns: dict[str, int] = {}

    @property
    def model_names(self) -> tuple[str, ...]:
        return self.catalog.names

    # ------------------------------------------------------------------ step
    def step(self, reading: Reading) -> StepResult:
        """Predict, score, learn one reading (see the module docstring)."""
        if reading.device != self.device:
            raise ValueError(
                f"reading of device {reading.device!r} given to {self.device!r}'s models"
            )
        ts = reading.ts
        if self.last_ts is not None and ts <= self.last_ts:
            if ts == self.last_ts:
                self.n_duplicate += 1
                return StepResult("duplicate")
            self.n_late += 1
            return StepResult("late")
        if is_glitch(reading):
            self.n_glitch += 1
            return StepResult("glitch")
        x = Features(self.features.update(reading))
        if self.feature_keys is None:
            self.feature_keys = tuple(x)
        scaler = self.scaler
        if scaler is not None:
            x.scaled = scaler.learn_transform_one(x)
        y = float(getattr(reading, self.task.target))
        predictions: list[Prediction] = []
        scores: list[Score] = []
        events: list[Event] = []
        timing = self.timing
        clock = time.thread_time_ns
        xs = {"ts": ts}  # what the series models see
        # The feature values a forecast learns from once its actual arrives: one pair of
        # double arrays per reading, shared by every horizon (held once, pickled once, as
        # bytes: a third of the memory of float tuples and much faster to pickle).
        kept = (
            array("d", x.values()),
            None if scaler is None else array("d", x.scaled.values()),  # type: ignore[union-attr]
        )
        for h, hz in self.horizons.items():
            models = hz.models
            scored: list[tuple[str, float, float, float]] = []  # name, predicted, made, target
            if h == 0:
                xn = nowcast_view(x, self.task.target)
                for name in hz.names:
                    model = models[name]
                    t0 = clock() if timing else 0
                    p = model.predict_one(xn)
                    model.learn_one(xn, y)
                    if timing:
                        self.cost_ns[name] = self.cost_ns.get(name, 0) + clock() - t0
                    if p is not None:
                        predictions.append(Prediction(name, 0, ts, ts, p))
                        scored.append((name, p, ts, ts))
                if scored:
                    self._score(hz, scored, y, ts, scores, events)
                continue
            pending = hz.pending
            names = hz.names
            while pending and pending[0][1] <= ts:
                item = pending.popleft()
                made_ts, due_ts, preds = item[0], item[1], item[-1]
                if len(item) == 4:
                    xm = self._features(*item[2])
                else:  # a checkpoint written before the values were shared: 5 fields
                    xm = self._features(item[2], item[3])
                for name, p in zip(names, preds, strict=True):
                    if p is not None:
                        scored.append((name, p, made_ts, due_ts))
                for name in hz.learners:
                    t0 = clock() if timing else 0
                    models[name].learn_one(xm, y)
                    if timing:
                        self.cost_ns[name] = self.cost_ns.get(name, 0) + clock() - t0
            preds_now: list[float | None] = []
            target_ts = ts + h
            series = hz.series
            for name in names:
                model = models[name]
                t0 = clock() if timing else 0
                if name in series:
                    model.learn_one(xs, y)
                    p = model.predict_one(xs)
                else:
                    p = model.predict_one(x)
                if timing:
                    self.cost_ns[name] = self.cost_ns.get(name, 0) + clock() - t0
                preds_now.append(p)
                if p is not None:
                    predictions.append(Prediction(name, h, ts, target_ts, p))
            pending.append((ts, target_ts, kept, tuple(preds_now)))
            if len(pending) > self.task.max_pending:
                pending.popleft()
                self.n_dropped += 1
            if scored:
                self._score(hz, scored, y, ts, scores, events)
        self.last_ts = ts
        self.n_learned += 1
        return StepResult("learned", tuple(predictions), tuple(scores), tuple(events))

    def _features(self, values: Sequence[float], scaled: Sequence[float] | None) -> Features:
        """The features (and scaled twin) of a pending forecast, from its kept values."""
        xm = Features(zip(self.feature_keys, values, strict=True))
        if scaled is not None:
            xm.scaled = dict(zip(self.feature_keys, scaled, strict=True))
        return xm

    def _score(
        self,
        hz: _Horizon,
        scored: list[tuple[str, float, float, float]],
        y: float,
        ts: float,
        scores: list[Score],
        events: list[Event],
    ) -> None:
        h = hz.horizon
        stats = hz.stats
        selector = hz.selector
        observe = selector.observe
        champion = selector.champion  # changes only in consider(), after the loop
        append = scores.append
        for name, p, made_ts, target_ts in scored:
            err = stats[name].update(p, y)
            append(Score(name, h, made_ts, target_ts, p, y))
            observe(name, abs(err))
            if name == champion:
                selector.tick()
                event = hz.drift.update(name, h, abs(err), ts)
                if event is not None:
                    self._on_drift(hz, event)
                    events.append(event)
        event = selector.consider(stats, h, ts)
        if event is not None:
            self.n_promotions += 1
            log.info(
                "device %s horizon %ss: promoted %s: %s", self.device, h, event.model, event.reason
            )
            events.append(event)

    def _on_drift(self, hz: _Horizon, event: Event) -> None:
        self.n_drifts += 1
        log.info(
            "device %s horizon %ss: drift on %s: %s",
            self.device,
            hz.horizon,
            event.model,
            event.reason,
        )
        if self.task.drift_reset:
            name = event.model
            hz.models[name] = hz.specs[name].build(self.task.target, hz.horizon)
            hz.drift.restart()
            event.figures["reset"] = True

    # ------------------------------------------------------------ operator
    def set_champion(
        self, model: str, reason: str, horizon: int | None = None
    ) -> tuple[Event, ...]:
        """Make ``model`` the champion (at ``horizon``, or wherever it runs); returns the events."""
        targets = [
            hz for h, hz in self.horizons.items() if horizon in (None, h) and model in hz.models
        ]
        if not targets:
            raise KeyError(
                f"model {model!r} does not run at horizon {horizon!r} for device {self.device!r}; "
                f"it runs: {', '.join(self.model_names)}"
            )
        events = []
        for hz in targets:
            old = hz.selector.champion
            hz.selector.set(model)
            self.n_promotions += 1
            event = Event(
                "promotion",
                model,
                hz.horizon,
                f"operator: {reason}",
                {"old": old, "new": model, "operator": True},
                self.last_ts or 0.0,
            )
            log.info(
                "device %s horizon %ss: %s set champion by operator: %s",
                self.device,
                hz.horizon,
                model,
                reason,
            )
            events.append(event)
        return tuple(events)

    # ------------------------------------------------------------- figures
    def champion(self, horizon: int) -> str:
        return self.horizons[horizon].selector.champion

    def stats(self, model: str, horizon: int) -> ErrorStats:
        return self.horizons[horizon].stats[model]

    def summary(self) -> dict:
        """JSON-ready figures: counts, champions (horizon as a string key), per model x horizon errors."""
        return {
            "device": self.device,
            "target": self.task.target,
            "n_learned": self.n_learned,
            "n_duplicate": self.n_duplicate,
            "n_late": self.n_late,
            "n_glitch": self.n_glitch,
            "n_dropped": self.n_dropped,
            "n_promotions": self.n_promotions,
            "n_drifts": self.n_drifts,
            "last_ts": self.last_ts,
            "champion": {str(h): hz.selector.champion for h, hz in self.horizons.items()},
            "models": [
                {"model": name, "horizon": h, **hz.stats[name].as_dict()}
                for h, hz in self.horizons.items()
                for name in hz.names
            ],
        }

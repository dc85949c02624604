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
   then, on a grid of ``h / task.forecasts_per_horizon`` seconds (every
   reading when readings are further apart), every model forecasts ``ts + h``
   and the forecast waits in a bounded queue (oldest dropped, and counted,
   beyond ``task.max_pending``). Forecasts made seconds apart about the same
   hour ahead carry the same information: the grid bounds the work and the
   memory per horizon, and each score's weight in the learners and the
   combination is the share of the horizon it covers;
5. model selection and drift detection on the scores (events returned and logged).

**The served forecast.** Per horizon, the forecast the processor publishes
is the champion's at the moment it is made (persistence's when the
champion has none yet). It is scored as its own series, ``served``, beside
the models: the figure a user gets, not the best model in hindsight.

**Guarded models.** A model is guest code. Every call into it runs under a
guard: an exception, a non-finite forecast, or one far outside the plausible
range (the device's observed range widened on each side by its span, and by
at least 5 % of the data contract's range; never more than that 5 % beyond
the contract's bounds) resets that model alone to a fresh one from the
catalog, with a ``model_reset`` event.
The rejected forecast is replaced by persistence's (what would have been
served) and scored as such, so a model pays for its failures and every
running sum stays finite. The device's other models go on.

The whole object pickles (it is the device's checkpoint) and is
deterministic: the same readings give the same predictions.

>>> from online_models.catalog import load_catalog
>>> from online_models.config import TaskConfig
>>> from telemetry.reading import Reading
>>> dm = DeviceModels("d1", load_catalog(), TaskConfig(horizons=(0, 60)))
>>> r = dm.step(Reading(1594512000.0, "d1", 0.005, 51.0, False, 0.007, False, 0.02, 22.5))
>>> r.status, sorted({(p.model, p.horizon) for p in r.predictions})[:3]
('learned', [('ensemble', 60), ('linear', 60), ('persistence', 60)])
>>> dm.step(Reading(1594512000.0, "d1", 0.005, 51.0, False, 0.007, False, 0.02, 22.5)).status
'duplicate'
>>> r = dm.step(Reading(1594512061.0, "d1", 0.005, 51.0, False, 0.007, False, 0.02, 22.6))
>>> [(s.model, s.predicted, s.actual) for s in r.scores if s.horizon == 60][:1]
[('persistence', 22.5, 22.6)]
>>> dm.summary()["champion"]
{'0': 'persistence', '60': 'ensemble'}
"""

from __future__ import annotations

import logging
import math
import time
from array import array
from collections import deque
from collections.abc import Iterable, Sequence

from online_models.catalog import Catalog, ModelSpec
from online_models.config import TaskConfig
from online_models.drift import DriftWatch
from online_models.features import Features, FeatureState, Standardizer, nowcast_view
from online_models.horizon import NAMES as HORIZON_NAMES
from online_models.horizon import HorizonFeatures, HorizonX
from online_models.records import SERVED, Event, Prediction, Score, StepResult
from online_models.scoring import ErrorStats
from online_models.selection import Selector
from telemetry.reading import RANGES, Reading, is_glitch

__all__ = ["SERVED", "DeviceModels", "Event", "Prediction", "Score", "StepResult", "upgrade"]

log = logging.getLogger(__name__)

# the plausible range is the observed one widened by its span, and at least this share of
# the data contract's range for the target
MARGIN_SHARE = 0.05
# at a forecast horizon; baselines read the value and its means from the features there, and
# learn only at the nowcast
_LEARNS_FROM_READING = ("regressor", "batch")
_LEARNS_FROM_HORIZON = ("horizon",)


class _Horizon:
    """The models, errors, champion, drift detector and pending forecasts of one horizon."""

    def __init__(self, horizon: int, specs: list[ModelSpec], task: TaskConfig) -> None:
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
        self.horizon_learners = tuple(s.name for s in specs if s.kind in _LEARNS_FROM_HORIZON)
        self.combos = tuple(s.name for s in specs if s.kind == "combination")
        # predict order: the combinations last, they read the others' forecasts
        self.order = tuple(n for n in self.names if n not in self.combos) + self.combos
        self.stats = {s.name: ErrorStats(task.window) for s in specs}
        self.served = ErrorStats(task.window)
        champion = task.initial_champion if task.initial_champion in self.specs else None
        if champion is None:
            champion = "persistence" if "persistence" in self.specs else self.names[0]
        self.selector = Selector(
            champion, task.promote_margin, task.promote_min_samples, task.promote_cooldown
        )
        self.drift = DriftWatch(task.drift_delta, task.drift_grace, task.drift_block)
        # (made_ts, target_ts, kept reading features or None, horizon features or None,
        #  weight, predictions aligned with names, served value, served source)
        self.pending: deque[tuple] = deque()
        self.every = horizon / task.forecasts_per_horizon if horizon else 0.0
        self.next_at = -math.inf
        self.last_made: float | None = None
        self.resets: dict[str, int] = {}


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
        forecast = [h for h in self.horizons if h > 0]
        self.hfeatures = HorizonFeatures(forecast) if forecast else None
        lo, hi = RANGES[self.task.target]
        self.contract = (lo, hi)
        self.min_margin = MARGIN_SHARE * (hi - lo)
        self.low: float | None = None  # observed range of the target
        self.high: float | None = None
        self.last_value: float | None = None
        self.last_ts: float | None = None
        self.n_learned = 0
        self.n_duplicate = 0
        self.n_late = 0
        self.n_glitch = 0
        self.n_dropped = 0
        self.n_promotions = 0
        self.n_drifts = 0
        self.n_resets = 0
        self.timing = timing
        self.cost_ns: dict[str, int] = {}

    @property
    def model_names(self) -> tuple[str, ...]:
        return self.catalog.names

    def bounds(self) -> tuple[float, float]:
        """The plausible range of a prediction now (see the module docstring)."""
        floor = self.min_margin
        lo, hi = self.contract[0] - floor, self.contract[1] + floor
        if self.low is None:
            return lo, hi
        margin = max(self.high - self.low, floor)
        return max(lo, self.low - margin), min(hi, self.high + margin)

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
        x.ts = ts
        if self.feature_keys is None:
            self.feature_keys = tuple(x)
        scaler = self.scaler
        if scaler is not None:
            x.scaled = scaler.learn_transform_one(x)
        y = float(getattr(reading, self.task.target))
        if self.low is None or y < self.low:
            self.low = y
        if self.high is None or y > self.high:
            self.high = y
        lo, hi = self.bounds()
        hf = self.hfeatures
        if hf is not None:
            hf.add(ts, y)
        predictions: list[Prediction] = []
        scores: list[Score] = []
        events: list[Event] = []
        kept: dict[tuple[bool, bool], tuple] = {}  # this reading's features, as forecasts keep them
        for h, hz in self.horizons.items():
            if h == 0:
                self._nowcast(hz, x, y, ts, lo, hi, predictions, scores, events)
                continue
            scored: list[tuple[str, float, float, float]] = []
            served: list[tuple[float, float, float]] = []
            pending = hz.pending
            while pending and pending[0][1] <= ts:
                self._learn(hz, pending.popleft(), y, ts, scored, served, events)
            for name in hz.series:
                self._call_learn(hz, name, {"ts": ts}, y, ts, events)
            if ts >= hz.next_at:
                what = (hz.keep_raw, hz.keep_scaled)
                if what not in kept:
                    kept[what] = self._keep(x, *what)
                self._forecast(hz, x, kept[what], y, ts, lo, hi, predictions, events)
            if scored or served:
                self._score(hz, scored, served, y, ts, scores, events)
        self.last_value = y
        self.last_ts = ts
        self.n_learned += 1
        return StepResult("learned", tuple(predictions), tuple(scores), tuple(events))

    def _keep(self, x: Features, raw: bool, scaled: bool) -> tuple | None:
        """The features a forecast learns from once its actual arrives (raw and/or standardised,
        as the horizon's learners need them), shared by the horizons forecasting at this
        reading: single-precision floats, pickled as bytes."""
        if not (raw or scaled):
            return None
        twin = getattr(x, "scaled", None) if scaled else None
        return (
            array("f", x.values()) if raw else None,
            array("f", twin.values()) if twin is not None else None,
            x[self.task.target],  # the anchor of the learners' change, exact
        )

    def _nowcast(self, hz: _Horizon, x, y, ts, lo, hi, predictions, scores, events) -> None:
        xn = nowcast_view(x, self.task.target)
        fallback = self.last_value
        timing = self.timing
        clock = time.thread_time_ns
        scored: list[tuple[str, float, float, float]] = []
        made: dict[str, float | None] = {}
        rejected: set[str] = set()
        for name in hz.order:
            model = hz.models[name]
            t0 = clock() if timing else 0
            xi = made if name in hz.combos else xn
            try:
                p = model.predict_one(xi)
            except Exception as exc:  # guest code: reset it, serve persistence
                p = self._reject(hz, name, "exception", exc, fallback, ts, events, rejected)
            else:
                if p is not None and not lo <= p <= hi:
                    p = self._reject(hz, name, _why(p), p, fallback, ts, events, rejected)
            made[name] = p
            if name in hz.combos:
                self._call_learn(hz, name, made, y, ts, events, 1.0)
            else:
                self._call_learn(hz, name, xn, y, ts, events)
            if timing:
                self.cost_ns[name] = self.cost_ns.get(name, 0) + clock() - t0
            if p is not None:
                predictions.append(Prediction(name, 0, ts, ts, p))
                scored.append((name, p, ts, ts))
        value, source = self._served(hz, made, fallback, rejected)
        served = []
        if value is not None:
            predictions.append(Prediction(SERVED, 0, ts, ts, value, source))
            served.append((value, ts, ts))
        if scored or served:
            self._score(hz, scored, served, y, ts, scores, events)

    @staticmethod
    def _served(
        hz: _Horizon, made: dict[str, float | None], fallback: float | None, rejected: set[str]
    ) -> tuple[float | None, str]:
        """The forecast published: the champion's, else persistence's (and which it was)."""
        champion = hz.selector.champion
        value = made.get(champion)
        if value is not None and champion not in rejected:
            return value, champion
        return fallback, "persistence"

    def _forecast(self, hz: _Horizon, x, kept, y, ts, lo, hi, predictions, events) -> None:
        h = hz.horizon
        every = hz.every
        hz.next_at = (ts // every + 1.0) * every if every > 0 else ts
        w = (every if hz.last_made is None else min(ts - hz.last_made, h)) / h
        hz.last_made = ts
        target_ts = ts + h
        hx = None
        if hz.on_horizon:
            hx = self.hfeatures.vector(h, ts, y)
        timing = self.timing
        clock = time.thread_time_ns
        xs = {"ts": ts}
        made: dict[str, float | None] = {}
        rejected: set[str] = set()
        models = hz.models
        for name in hz.order:
            model = models[name]
            if name in hz.series:
                xi = xs
            elif name in hz.on_horizon:
                xi = hx
            elif name in hz.combos:
                xi = made
            else:
                xi = x
            t0 = clock() if timing else 0
            try:
                p = model.predict_one(xi)
            except Exception as exc:  # guest code: reset it, serve persistence
                p = self._reject(hz, name, "exception", exc, y, ts, events, rejected)
            else:
                if p is not None and not lo <= p <= hi:
                    p = self._reject(hz, name, _why(p), p, y, ts, events, rejected)
            if timing:
                self.cost_ns[name] = self.cost_ns.get(name, 0) + clock() - t0
            made[name] = p
            if p is not None:
                predictions.append(Prediction(name, h, ts, target_ts, p))
        value, source = self._served(hz, made, y, rejected)
        predictions.append(Prediction(SERVED, h, ts, target_ts, value, source))
        kept_hx = None
        if hz.horizon_learners:
            kept_hx = array("d", hx.values())
            kept_hx.append(y)
        pending = hz.pending
        pending.append(
            (ts, target_ts, kept, kept_hx, w, tuple(made[n] for n in hz.names), value, source)
        )
        if len(pending) > self.task.max_pending:
            pending.popleft()
            self.n_dropped += 1

    def _learn(self, hz: _Horizon, item: tuple, y, ts, scored, served, events) -> None:
        """Score one due forecast and teach its models the actual value."""
        made_ts, due_ts, kept, kept_hx, w, preds, value, _ = item
        names = hz.names
        for name, p in zip(names, preds, strict=True):
            if p is not None:
                scored.append((name, p, made_ts, due_ts))
        served.append((value, made_ts, due_ts))
        if hz.learners and kept is not None:
            xm = self._features(*kept)
            xm.ts = made_ts
            for name in hz.learners:
                self._call_learn(hz, name, xm, y, ts, events)
        if hz.horizon_learners and kept_hx is not None:
            hx = HorizonX(zip(HORIZON_NAMES, kept_hx, strict=False))
            hx.anchor = kept_hx[-1]
            for name in hz.horizon_learners:
                self._call_learn(hz, name, hx, y, ts, events, w)
        if hz.combos:
            experts = dict(zip(names, preds, strict=True))
            for name in hz.combos:
                self._call_learn(hz, name, experts, y, ts, events, w)

    def _call_learn(self, hz: _Horizon, name: str, x, y, ts, events, w: float | None = None):
        model = hz.models[name]
        timing = self.timing
        t0 = time.thread_time_ns() if timing else 0
        try:
            if w is None:
                model.learn_one(x, y)
            else:
                model.learn_one(x, y, w)
        except Exception as exc:  # guest code: reset it
            self._reset(hz, name, "exception", exc, ts, events)
        if timing:
            self.cost_ns[name] = self.cost_ns.get(name, 0) + time.thread_time_ns() - t0

    def _reject(self, hz: _Horizon, name, reason, detail, fallback, ts, events, rejected):
        """A forecast the guard refused: reset the model; persistence's value stands in."""
        self._reset(hz, name, reason, detail, ts, events)
        rejected.add(name)
        return fallback

    def _reset(self, hz: _Horizon, name: str, reason: str, detail, ts: float, events) -> None:
        h = hz.horizon
        hz.models[name] = hz.specs[name].build(self.task.target, h)
        count = hz.resets[name] = hz.resets.get(name, 0) + 1
        self.n_resets += 1
        if isinstance(detail, BaseException):
            detail = f"{type(detail).__name__}: {detail}"[:200]
        elif isinstance(detail, float):
            lo, hi = self.bounds()
            detail = f"forecast {detail!r} outside [{lo:.6g}, {hi:.6g}]"
        events.append(Event("model_reset", name, h, f"{reason}: {detail}", {"reason": reason}, ts))
        if name == hz.selector.champion:
            hz.drift.restart()
        if count & (count - 1) == 0:  # the 1st, 2nd, 4th, 8th... of this model: not a flood
            log.warning(
                "device %s horizon %ss: model %s reset (%d so far): %s: %s",
                self.device, h, name, count, reason, detail,
            )  # fmt: skip

    def _features(
        self, raw: Sequence[float] | None, scaled: Sequence[float] | None, value: float
    ) -> Features:
        """The features (and standardised twin) of a pending forecast, from what it kept."""
        keys = self.feature_keys
        xm = Features(zip(keys, raw, strict=True)) if raw is not None else Features()
        xm[self.task.target] = value
        if scaled is not None:
            xm.scaled = dict(zip(keys, scaled, strict=True))
        return xm

    def _score(
        self,
        hz: _Horizon,
        scored: list[tuple[str, float, float, float]],
        served: list[tuple[float, float, float]],
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
        update = hz.served.update
        for p, made_ts, target_ts in served:
            if p is not None:
                update(p, y)
                append(Score(SERVED, h, made_ts, target_ts, p, y))
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
        """The error figures of ``model`` (or of the served forecast, ``"served"``) at ``horizon``."""
        hz = self.horizons[horizon]
        return hz.served if model == SERVED else hz.stats[model]

    def resets(self) -> dict[tuple[int, str], int]:
        """How many times the guard reset each (horizon, model)."""
        return {(h, n): c for h, hz in self.horizons.items() for n, c in hz.resets.items()}

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
            "n_resets": self.n_resets,
            "last_ts": self.last_ts,
            "champion": {str(h): hz.selector.champion for h, hz in self.horizons.items()},
            "models": [
                {"model": name, "horizon": h, **hz.stats[name].as_dict()}
                for h, hz in self.horizons.items()
                for name in hz.names
            ]
            + [
                {"model": SERVED, "horizon": h, **hz.served.as_dict()}
                for h, hz in self.horizons.items()
            ],
            "resets": [
                {"model": n, "horizon": h, "count": c} for (h, n), c in self.resets().items()
            ],
        }


def _why(p: float) -> str:
    return "non_finite" if p != p or p in (math.inf, -math.inf) else "out_of_range"


def _same_model(a: ModelSpec, b: ModelSpec) -> bool:
    """True when a model's learned state under spec ``a`` is valid under spec ``b``."""
    keys = ("cls", "kind", "params", "scale", "step", "season", "season_param")
    return all(getattr(a, k, None) == getattr(b, k, None) for k in keys)


def upgrade(
    old: DeviceModels, catalog: Catalog, models: str | Iterable[str] = "default"
) -> DeviceModels:
    """``old``'s learned state moved into a fresh model set selected from ``catalog``.

    What a device keeps across a new model set (a new release's catalog, or an
    older checkpoint format): its counts and reading features; per horizon,
    every model whose spec is unchanged (state and scores), the champion if it
    still runs, the drift detector and, when the horizon's models are the same,
    its pending forecasts (else they are dropped and counted in
    ``n_dropped``). New models start fresh; models no longer selected are gone.
    Works on objects of the current layout and on format 1 (before the guard,
    the forecast grid and the served series).

    >>> from online_models.catalog import load_catalog
    >>> from online_models.config import TaskConfig
    >>> from telemetry.generate import generate
    >>> old = DeviceModels("b8:27:eb:bf:9d:51", load_catalog(), TaskConfig(horizons=(0, 60)),
    ...                    models="persistence,linear")
    >>> for r in generate(days=0.01, seed=1):
    ...     if r.device == old.device:
    ...         _ = old.step(r)
    >>> new = upgrade(old, load_catalog(), "default")
    >>> new.n_learned == old.n_learned, new.horizons[60].models["linear"] is old.horizons[60].models["linear"]
    (True, True)
    >>> new.model_names
    ('persistence', 'rolling_mean', 'seasonal_naive', 'linear', 'ridge', 'ensemble')
    """
    new = DeviceModels(old.device, catalog, old.task, models=models, timing=old.timing)
    state = old.__dict__
    for key in ("features", "feature_keys", "last_ts", "cost_ns"):
        setattr(new, key, state[key])
    for key in ("n_learned", "n_duplicate", "n_late", "n_glitch", "n_dropped", "n_promotions"):
        setattr(new, key, state.get(key, 0))
    new.n_drifts = state.get("n_drifts", 0)
    new.n_resets = state.get("n_resets", 0)
    if new.scaler is not None and state.get("scaler") is not None:
        new.scaler = state["scaler"]
    last = state.get("last_value", state["features"].prev.get(old.task.target))
    new.last_value = last
    new.low = state.get("low", last)
    new.high = state.get("high", last)
    old_hf = state.get("hfeatures")
    if (
        old_hf is not None
        and new.hfeatures is not None
        and old_hf.horizons == new.hfeatures.horizons
    ):
        new.hfeatures = old_hf
    old_specs = {s.name: s for s in state["catalog"]}
    for h, hz in new.horizons.items():
        ohz = state["horizons"].get(h)
        if ohz is None:
            continue
        o = ohz.__dict__
        kept = [
            n for n in hz.names if n in o["models"] and n in old_specs
            and _same_model(old_specs[n], hz.specs[n])
        ]  # fmt: skip
        for name in kept:
            hz.models[name] = o["models"][name]
            hz.stats[name] = o["stats"][name]
        if o["selector"].champion in hz.names:
            hz.selector = o["selector"]
        hz.drift = o["drift"]
        if "served" in o:
            hz.served = o["served"]
            hz.resets = dict(o.get("resets", {}))
        if "served" in o and o["names"] == hz.names and len(kept) == len(hz.names):
            hz.pending = o["pending"]
            hz.next_at = o["next_at"]
            hz.last_made = o["last_made"]
        else:
            new.n_dropped += len(o["pending"])
    return new

"""One device's model set: features, every model at every horizon, scoring, selection, drift.

:class:`DeviceModels` is what the stream processor keeps per device and what
``iotcast evaluate`` runs offline: one object, one verb, :meth:`DeviceModels.step`.
For each reading, in time order:

1. set it aside, untouched, if it does not carry the target (``no_target``:
   a device may report any subset of its sensors; such a reading is neither
   learned nor scored, and leaves the device's time and history as they were,
   so a later reading with the target, at any newer time, is learned);
2. drop it if it is not newer than the last learned reading (``duplicate``
   when equal, ``late`` when older) or a sensor glitch (``glitch``);
3. compute its features (from this reading and earlier ones only; the
   sensors it does not carry have none, :mod:`online_models.features`);
4. nowcast (horizon 0): every model predicts the target from the features
   *without* the target's own value and history, is scored against the
   reading's value at once, then learns it;
5. forecasts (horizon ``h``): forecasts made earlier whose target time
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
6. model selection and drift detection on the scores (events returned and logged).

**Anomalous readings.** With ``anomalies`` (what the processor runs, and what
``iotcast evaluate`` must run to make the same decisions), the device's
:class:`~online_models.anomaly.Watch` judges each reading that passed step 2
against the served nowcast made for it and its widest interval, after every
nowcast model has predicted and before any learns. A reading the watch holds
back (a suspected spike, the values of a stuck sensor) is ``held``: its
nowcasts are returned as usual (predict before learn stays: the served nowcast
is what the watch judged it by), but no model learns it, it is not scored, the
interval band does not learn from it, the forecast horizons skip it (their
forecasts due wait for the next reading learned, the first at or after their
target time) and the plausible range and persistence's last value stay as they
were. Why: a model taught a spike or a flat line forecasts it; a reading the
watch does not trust is no evidence against the models either. The feature
state and the standardiser see it (they describe what the sensors report, and
the nowcast needed its features). A level shift or a gas rise is learned: a
real change must be followed. The anomalies come back as events (kind
``spike``, ``level_shift``, ``stuck``, ``silent``, ``gas_rise``; :func:`anomaly_event`),
once when one starts (``figures["phase"] == "start"``) and once when it ends
(``"end"``), or once whole when it is known only at its end (a spike);
:meth:`DeviceModels.silence` asks the watch about a device that sends nothing.

**The served forecast.** Per horizon, the forecast the processor publishes
is the champion's at the moment it is made (persistence's when the
champion has none yet). It is scored as its own series, ``served``, beside
the models: the figure a user gets, not the best model in hindsight.

**Guarded models.** A model is guest code. Every call into it runs under a
guard: an exception, a non-finite forecast, or one far outside the plausible
range (the device's observed range widened on each side by its span, and by
at least 5 % of the data contract's range; never more than that 5 % beyond
the contract's bounds) resets that model alone to a fresh one, its
``clone()`` (the same parameters, no learned state), with a ``model_reset`` event.
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
>>> dm.step(Reading(1594512070.0, "d1", humidity=52.0)).status, dm.n_no_target, dm.last_ts
('no_target', 1, 1594512061.0)

A sensor that sticks: its readings are predicted from but not learned, and the
anomaly is an event when it starts and when it ends.

>>> dm = DeviceModels("d2", load_catalog(), TaskConfig(horizons=(0,)), anomalies=True)
>>> def at(i, t):
...     return Reading(1594512000.0 + 5 * i, "d2", 0.005, 51.0, False, 0.007, False, 0.02, t)
>>> for i in range(100):  # calm, a little noise
...     _ = dm.step(at(i, 22.0 + 0.1 * (i % 3)))
>>> steps = [dm.step(at(100 + i, 22.3)) for i in range(200)]  # stuck for 1000 s
>>> [(e.kind, e.figures["phase"]) for s in steps for e in s.events if e.model == ""]
[('stuck', 'start')]
>>> steps[-1].status, steps[-1].predictions[-1].model, dm.n_held > 0
('held', 'served', True)
>>> [(e.kind, e.figures["phase"]) for e in dm.step(at(300, 22.1)).events]
[('stuck', 'end')]
"""

from __future__ import annotations

import functools
import inspect
import logging
import types
from array import array
from collections.abc import Callable, Iterable
from typing import cast

from river import base

from online_models.anomaly import GASES, Anomaly, Verdict, Watch
from online_models.catalog import Catalog, ModelSpec
from online_models.config import TaskConfig
from online_models.features import Features, FeatureState, Standardizer
from online_models.guard import Guard
from online_models.horizon import HorizonFeatures
from online_models.horizon_models import HorizonModels, HorizonStep
from online_models.intervals import Band
from online_models.pending import Kept
from online_models.records import (
    SERVED,
    DeviceSummary,
    Event,
    ModelSummary,
    Prediction,
    Score,
    StepResult,
)
from online_models.scoring import ErrorStats
from telemetry.reading import Reading, is_glitch

__all__ = [
    "SERVED",
    "DeviceModels",
    "Event",
    "Prediction",
    "Score",
    "StepResult",
    "anomaly_event",
    "anomaly_of",
    "upgrade",
]

log = logging.getLogger(__name__)

_NO_TARGET = StepResult("no_target")
# distinct feature-name sets a device interns (beyond it, it starts afresh: only sharing is lost)
_MAX_KEY_SETS = 64
# ongoing anomalies a device keeps, at most (a kind that never ends must not grow it)
_MAX_ONGOING = 8


def anomaly_event(a: Anomaly, phase: str, ts: float) -> Event:
    """The event of anomaly ``a`` reported at event time ``ts``: ``phase`` ``"start"`` (it goes
    on), ``"end"`` (it ended; its start was reported) or ``"whole"`` (reported once, ended).

    >>> e = anomaly_event(Anomaly("d1", "spike", 10.0, 15.0, 35.0, 21.0, 21.4, 9.5), "whole", 15.0)
    >>> e.kind, e.model, e.ts, e.figures["expected_high"], anomaly_of("d1", e).score
    ('spike', '', 15.0, 21.4, 9.5)
    """
    end = "ongoing" if a.end_ts is None else f"ended at {a.end_ts:.0f}"
    reason = (
        f"{a.kind} from {a.start_ts:.0f}, {end}: value {a.value:.4g}, expected "
        f"{a.expected_low:.4g} .. {a.expected_high:.4g} (score {a.score:.2f})"
    )
    figures = {
        "phase": phase,
        "start_ts": a.start_ts,
        "end_ts": a.end_ts,
        "value": a.value,
        "expected_low": a.expected_low,
        "expected_high": a.expected_high,
        "score": a.score,
    }
    return Event(a.kind, "", 0, reason, figures, ts)


def anomaly_of(device: str, event: Event) -> Anomaly:
    """The :class:`~online_models.anomaly.Anomaly` an :func:`anomaly_event` reports."""
    f = event.figures
    return Anomaly(
        device, event.kind, f["start_ts"], f["end_ts"], f["value"], f["expected_low"],
        f["expected_high"], f["score"],
    )  # fmt: skip


class DeviceModels:
    """Every model of one device at every horizon (see the module docstring).

    ``catalog`` is the full catalog; ``models`` picks what runs: ``"default"``
    (the cheap set, what the processor runs), ``"all"``, or names. With
    ``observers`` run and are scored but are never champion (the references an
    evaluation adds beside the processor's set). With
    ``timing`` the object adds up each model's predict+learn CPU time of this
    thread (:attr:`cost_ns`; CPU, not wall time, so other processes on a shared
    machine do not inflate it), for reports and benchmarks. With ``anomalies`` a
    :class:`~online_models.anomaly.Watch` judges every reading (see the module
    docstring): the processor's setting.

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
        observers: Iterable[str] = (),
        anomalies: bool = False,
    ) -> None:
        self.device = device
        self.task = task or TaskConfig()
        self.catalog = catalog.select(models)
        if not len(self.catalog):
            raise ValueError(f"no models selected from the catalog by {models!r}")
        self.features = FeatureState(self.task.target, self.task.extra_features)
        self.scaler = Standardizer() if any(s.scale for s in self.catalog) else None
        self.feature_keys: tuple[str, ...] | None = None  # the first learned reading's
        # each distinct set of feature names, one tuple object (shared by pending forecasts)
        self.key_sets: dict[tuple[str, ...], tuple[str, ...]] = {}
        self.horizons: dict[int, HorizonModels] = {}
        for h in self.task.horizons:
            specs = self.catalog.for_horizon(h)
            if specs:
                self.horizons[h] = HorizonModels(h, specs, self.task, frozenset(observers))
        forecast = [h for h in self.horizons if h > 0]
        self.hfeatures = HorizonFeatures(forecast) if forecast else None
        self.guard = Guard(device, self.task.target, timing=timing)
        self.last_value: float | None = None
        self.last_ts: float | None = None
        self.n_learned = 0
        self.n_duplicate = 0
        self.n_late = 0
        self.n_glitch = 0
        self.n_no_target = 0
        self.n_dropped = 0
        self.n_promotions = 0
        self.n_drifts = 0
        self.watch: Watch | None = Watch(device) if anomalies else None
        self.n_held = 0
        # the anomalies reported as started and not yet ended, by (kind, start)
        self.ongoing: dict[tuple[str, float], Anomaly] = {}
        # the nowcasts run first: the watch judges the reading before any horizon learns it
        self.order = sorted(self.horizons.items(), key=lambda item: item[0] != 0)

    @property
    def n_taken(self) -> int:
        """Readings taken in order: learned, or held back by the anomaly watch; each is
        decided once (a checkpoint manifest's ``samples``)."""
        return self.n_learned + self.n_held

    @property
    def model_names(self) -> tuple[str, ...]:
        return self.catalog.names

    @property
    def n_resets(self) -> int:
        return self.guard.n_resets

    @property
    def cost_ns(self) -> dict[str, int]:
        """CPU time of each model's calls (with ``timing``), in ns of this thread."""
        return self.guard.cost_ns

    @property
    def timing(self) -> bool:
        return self.guard.timing

    def bounds(self) -> tuple[float, float]:
        """The plausible range of a prediction now (see the module docstring)."""
        return self.guard.bounds()

    # ------------------------------------------------------------------ step
    def step(self, reading: Reading) -> StepResult:
        """Predict, score, learn one reading (see the module docstring)."""
        if reading.device != self.device:
            raise ValueError(
                f"reading of device {reading.device!r} given to {self.device!r}'s models"
            )
        y = getattr(reading, self.task.target)
        if y is None:
            self.n_no_target += 1
            return _NO_TARGET
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
            keys = self.feature_keys = tuple(x)
            self.key_sets[keys] = keys
        if self.scaler is not None:
            x.scaled = self.scaler.learn_transform_one(x)
        y = float(y)
        guard, task = self.guard, self.task
        watch = self.watch
        was = (guard.low, guard.high)
        guard.observe(y)
        lo, hi = guard.bounds()
        verdicts: list[Verdict] = []
        judge = None if watch is None else _judge(watch, reading, y, verdicts)
        if judge is not None and 0 not in self.horizons:  # no nowcast to judge the reading by
            judge(None, ())
        predictions: list[Prediction] = []
        scores: list[Score] = []
        events: list[Event] = []
        kept: dict[tuple[bool, bool], Kept | None] = {}  # this reading's, as forecasts keep it
        added = False
        for h, hz in self.order:
            if h == 0:
                r = hz.nowcast(
                    x=x, y=y, ts=ts, lo=lo, hi=hi, fallback=self.last_value, guard=guard,
                    task=task, judge=judge,
                )  # fmt: skip
            elif verdicts and not verdicts[0].learn:
                break  # held: the forecast horizons skip it
            else:
                if not added and self.hfeatures is not None:
                    self.hfeatures.add(ts, y)
                    added = True
                keeps = None
                if hz.forecasts_at(ts):
                    what = (hz.keep_raw, hz.keep_scaled)
                    if what not in kept:
                        kept[what] = self.keep(x, *what)
                    keeps = kept[what]
                r = hz.step(
                    x=x, y=y, ts=ts, lo=lo, hi=hi, kept=keeps, hfeatures=self.hfeatures,
                    guard=guard, task=task,
                )  # fmt: skip
            predictions += r.predictions
            scores += r.scores
            events += r.events
            if r.events or r.dropped:
                self._apply(r)
        self.last_ts = ts
        if verdicts:
            verdict = verdicts[0]
            if verdict.events:
                events += _anomaly_events(self.ongoing, verdict.events, ts)
            if not verdict.learn:
                guard.low, guard.high = was
                self.n_held += 1
                return StepResult("held", tuple(predictions), (), tuple(events))
        self.last_value = y
        self.n_learned += 1
        return StepResult("learned", tuple(predictions), tuple(scores), tuple(events))

    def silence(self, now: float) -> Event | None:
        """A ``silent`` anomaly's start event if the device has sent nothing for too long by
        ``now`` (event time: see the processor's sweep), once per silence; None without
        ``anomalies``. The next reading ends it."""
        if self.watch is None:
            return None
        a = self.watch.silence(now)
        if a is None:
            return None
        (event,) = _anomaly_events(self.ongoing, (a,), now)
        return event

    def _apply(self, r: HorizonStep) -> None:
        """Count and log what a horizon's step did (its events, its dropped forecasts)."""
        self.n_dropped += r.dropped
        for e in r.events:
            if e.kind == "promotion":
                self.n_promotions += 1
                log.info(
                    "device %s horizon %ss: promoted %s: %s", self.device, e.horizon, e.model,
                    e.reason,
                )  # fmt: skip
            elif e.kind == "drift":
                self.n_drifts += 1
                log.info(
                    "device %s horizon %ss: drift on %s: %s", self.device, e.horizon, e.model,
                    e.reason,
                )  # fmt: skip
        for event, so_far in r.resets:
            if so_far & (so_far - 1) == 0:  # the 1st, 2nd, 4th, 8th... of this model: no flood
                log.warning(
                    "device %s horizon %ss: model %s reset (%d so far): %s",
                    self.device, event.horizon, event.model, so_far, event.reason,
                )  # fmt: skip

    def keep(self, x: Features, raw: bool, scaled: bool) -> Kept | None:
        """The features a forecast learns from once its actual arrives (raw and/or standardised,
        as the horizon's learners need them), shared by the horizons forecasting at this
        reading: single-precision floats, pickled as bytes, and their names (the reading's
        sensors decide them): one tuple per distinct set of names, shared by every forecast
        that has it, so that a checkpoint stores each set once.

        >>> from online_models.catalog import load_catalog
        >>> dm = DeviceModels("d1", load_catalog())
        >>> a = dm.keep(Features({"temp": 21.0, "dt": 5.0}), True, False)
        >>> b = dm.keep(Features({"temp": 21.5, "dt": 4.0}), True, False)
        >>> a[3], a[3] is b[3], list(b[0]), b[2]
        (('temp', 'dt'), True, [21.5, 4.0], 21.5)
        """
        if not (raw or scaled):
            return None
        twin = getattr(x, "scaled", None) if scaled else None
        names = tuple(x)
        keys = self.key_sets.get(names)
        if keys is None:
            if len(self.key_sets) >= _MAX_KEY_SETS:
                self.key_sets = {}
            keys = self.key_sets[names] = names
        return (
            array("f", x.values()) if raw else None,
            array("f", twin.values()) if twin is not None else None,
            x[self.task.target],  # the anchor of the learners' change, exact
            keys,  # the standardised twin has the same names in the same order
        )

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

    def interval(self, horizon: int) -> Band:
        """The served forecast's prediction intervals at ``horizon`` (their coverage, width)."""
        return self.horizons[horizon].band

    def stats(self, model: str, horizon: int) -> ErrorStats:
        """The error figures of ``model`` (or of the served forecast, ``"served"``) at ``horizon``."""
        hz = self.horizons[horizon]
        return hz.served if model == SERVED else hz.stats[model]

    def resets(self) -> dict[tuple[int, str], int]:
        """How many times the guard reset each (horizon, model)."""
        return {(h, n): c for h, hz in self.horizons.items() for n, c in hz.resets.items()}

    def summary(self) -> DeviceSummary:
        """JSON-ready figures: counts, champions (horizon as a string key), per model x horizon errors."""
        return _summary(self)


def _summary(dm: DeviceModels) -> DeviceSummary:
    """What :meth:`DeviceModels.summary` returns."""
    return {
        "device": dm.device,
        "target": dm.task.target,
        "n_learned": dm.n_learned,
        "n_held": dm.n_held,
        "n_duplicate": dm.n_duplicate,
        "n_late": dm.n_late,
        "n_glitch": dm.n_glitch,
        "n_no_target": dm.n_no_target,
        "n_dropped": dm.n_dropped,
        "n_promotions": dm.n_promotions,
        "n_drifts": dm.n_drifts,
        "n_resets": dm.n_resets,
        "last_ts": dm.last_ts,
        "champion": {str(h): hz.selector.champion for h, hz in dm.horizons.items()},
        "models": [
            _figures(name, h, hz.stats[name]) for h, hz in dm.horizons.items() for name in hz.names
        ]
        + [_figures(SERVED, h, hz.served) for h, hz in dm.horizons.items()],
        "resets": [{"model": n, "horizon": h, "count": c} for (h, n), c in dm.resets().items()],
    }


def _judge(
    watch: Watch, reading: Reading, y: float, verdicts: list[Verdict]
) -> Callable[[float | None, tuple[float, ...]], bool]:
    """The judge the nowcast calls with the served nowcast of ``reading`` (value ``y``) and
    its published bounds: the watch's verdict goes to ``verdicts``; True: the models may
    learn the reading."""
    gases = {g: getattr(reading, g) for g in GASES}

    def judge(value: float | None, bounds: tuple[float, ...]) -> bool:
        band = None
        if value is not None and bounds:
            band = (bounds[-2] - value, bounds[-1] - value)
        verdicts.append(watch.observe(reading.ts, y, value if band else None, band, gases))
        return verdicts[0].learn

    return judge


def _anomaly_events(
    ongoing: dict[tuple[str, float], Anomaly], found: Iterable[Anomaly], ts: float
) -> list[Event]:
    """The events of the anomalies a device's watch reported at ``ts``; ``ongoing`` (the
    ones reported as started and not yet ended, by kind and start) kept."""
    out = []
    for a in found:
        key = (a.kind, a.start_ts)
        if a.end_ts is None:
            ongoing[key] = a
            if len(ongoing) > _MAX_ONGOING:  # the oldest goes (a kind that never ends)
                del ongoing[next(iter(ongoing))]
            phase = "start"
        else:
            phase = "end" if ongoing.pop(key, None) is not None else "whole"
        out.append(anomaly_event(a, phase, ts))
    return out


def _figures(model: str, horizon: int, stats: ErrorStats) -> ModelSummary:
    """One entry of :meth:`DeviceModels.summary`'s ``models``."""
    return cast(ModelSummary, {"model": model, "horizon": horizon, **stats.as_dict()})


def _same_model(a: ModelSpec, old: object, b: ModelSpec, new: object) -> bool:
    """True when the learned state of ``old`` (built from spec ``a``) is valid in place of
    ``new`` (a fresh one built from spec ``b``): the same kind of model, of the same class,
    with the same hyperparameters (River's ``_get_params()``, nested estimators included).
    A model whose parameters hold something River cannot compare (the frozen forest) is
    judged by its specs, as before the models were River estimators.

    >>> from online_models.catalog import load_catalog
    >>> cat = load_catalog()
    >>> ridge, linear = cat["ridge"], cat["linear"]
    >>> _same_model(ridge, ridge.build("temp", 60), ridge, ridge.build("temp", 60))
    True
    >>> _same_model(ridge, ridge.build("temp", 60), ridge, ridge.build("temp", 900))
    False
    >>> _same_model(linear, linear.build("temp", 60), ridge, ridge.build("temp", 60))
    False
    """
    if a.kind != b.kind or type(old) is not type(new):
        return False
    mine, theirs = _hyperparameters(old), _hyperparameters(new)
    if mine is None or theirs is None:
        keys = ("cls", "kind", "params", "scale", "step", "season", "season_param")
        return all(getattr(a, k, None) == getattr(b, k, None) for k in keys)
    return mine == theirs


def _completed(old: base.Regressor, new: base.Regressor) -> base.Regressor:
    """``old`` with the hyperparameters its older layout lacks taken from ``new``, a fresh
    model of the same spec (format 1's series models had no ``build`` nor ``probe``), so that
    it clones like ``new``."""
    if isinstance(old, base.Base) and type(old) is type(new):
        state = vars(old)
        for key in inspect.signature(type(new)).parameters:
            if key not in state:
                setattr(old, key, getattr(new, key))
    return old


class _Opaque(Exception):
    """A hyperparameter that is neither a River estimator nor a plain value."""


def _hyperparameters(model: object) -> dict[str, object] | None:
    """``model``'s River ``_get_params()`` as values that compare (a factory,
    ``functools.partial``, as what it calls with), or None when it is not a River estimator
    or holds another kind of object."""
    if not isinstance(model, base.Base):
        return None
    try:
        return {k: _comparable(v) for k, v in model._get_params().items()}
    except (_Opaque, AttributeError):  # AttributeError: a parameter an old pickle lacks
        return None


def _comparable(value: object) -> object:
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, tuple | list):
        if len(value) == 2 and isinstance(value[0], type) and isinstance(value[1], dict):
            return value[0], {k: _comparable(v) for k, v in value[1].items()}  # an estimator
        return type(value)(_comparable(v) for v in value)
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    if isinstance(value, functools.partial):
        return value.func, _comparable(value.args), _comparable(value.keywords)
    raise _Opaque(type(value).__name__)


# values River's ``clone()`` copies and ``==`` compares by what they are
_PLAIN = (
    type(None), bool, int, float, str, bytes, type, types.FunctionType, types.BuiltinFunctionType,
)  # fmt: skip


def upgrade(
    old: DeviceModels, catalog: Catalog, models: str | Iterable[str] = "default"
) -> DeviceModels:
    """``old``'s learned state moved into a fresh model set selected from ``catalog``.

    What a device keeps across a new model set (a new release's catalog, or an
    older checkpoint format): its counts and reading features; per horizon,
    every model of the same kind, class and hyperparameters (River's
    ``_get_params()``: state and scores), the champion if it
    still runs, the drift detector and, when the horizon's models are the same,
    its pending forecasts (else they are dropped and counted in
    ``n_dropped``). New models start fresh; models no longer selected are gone.
    Works on objects of the current layout and on format 1 (before the guard,
    the forecast grid and the served series; ``checkpoint_format`` maps its
    ``online_models.device._Horizon`` to :class:`HorizonModels`).

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
    state = old.__dict__
    guard = state.get("guard")
    timing = guard.timing if guard is not None else state.get("timing", False)
    new = DeviceModels(old.device, catalog, old.task, models=models, timing=timing)
    for key in ("features", "feature_keys", "last_ts"):
        setattr(new, key, state[key])
    for key in (
        "n_learned", "n_duplicate", "n_late", "n_glitch", "n_no_target", "n_dropped",
        "n_promotions",
    ):  # fmt: skip
        setattr(new, key, state.get(key, 0))
    new.key_sets = dict(state.get("key_sets") or {})
    if new.feature_keys is not None:
        new.key_sets.setdefault(new.feature_keys, new.feature_keys)
    new.n_drifts = state.get("n_drifts", 0)
    new.watch = state.get("watch")
    new.n_held = state.get("n_held", 0)
    new.ongoing = dict(state.get("ongoing") or {})
    if new.scaler is not None and state.get("scaler") is not None:
        new.scaler = state["scaler"]
    last = state.get("last_value", state["features"].prev.get(old.task.target))
    new.last_value = last
    if guard is not None:
        new.guard = guard
    else:  # format 1: no guard yet; its range starts at the last value
        new.guard.cost_ns.update(state.get("cost_ns", {}))
        if last is not None:
            new.guard.observe(last)
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
            and _same_model(old_specs[n], o["models"][n], hz.specs[n], hz.models[n])
        ]  # fmt: skip
        for name in kept:
            hz.models[name] = _completed(o["models"][name], hz.models[name])
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

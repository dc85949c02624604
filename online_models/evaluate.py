"""Prequential evaluation over a recorded stream: the processor's code, offline.

:func:`prequential` feeds readings, in file order, to one
:class:`~online_models.device.DeviceModels` per device (the very object the
stream processor keeps) and collects, with bounded memory:

- the per device x model x horizon figures, read from the models' own
  accumulators (so stream and offline agree), the served forecast's
  (``served``: what the processor would have published) among them;
- the same figures per scenario of the reading the prediction was made at:
  ``day``/``night`` (06-18 h UTC), ``light_on``/``light_off``, ``motion``
  (a motion event in the previous 10 minutes) / ``no_motion``, ``after_gap``
  (the first hour after a silence of more than 5 minutes), ``after_first_day``
  (made at least 24 h after the device's first reading: where the frozen batch
  forest competes), ``after_drift`` (the first hour after any drift detected
  on that device and horizon) and ``drift#i`` (the hour after the i-th drift
  event, for the first :data:`MAX_DRIFT_GROUPS`), ``hour_HH`` (hour of day);
- downsampled series for plots (one point per :data:`PLOT_STEP_S` per device),
  residual histograms, events, each model's cost (µs per reading, pickled size);
- optionally every scored prediction of chosen (device, model) pairs, written
  to CSV files as they come (for an independent recomputation).

The device profile (stable cool / variable / stable warm) is derived at the
end from the device's temperature statistics: ``variable`` when the standard
deviation exceeds 1 °C, otherwise ``stable warm`` at a mean of 21 °C or more
and ``stable cool`` below (``no temperature`` for a device that reports none).

Devices may send any subset of sensors. Per device, :class:`DeviceInput` counts
what it sent: the readings, which sensors (and extra fields) they carried, the
values validation dropped (by field and reason) or clipped (``Reading.notes``).
A device gets a model set at its first reading that carries the target; one that
never reports the target gets no model set and no figures, and its readings
count as ``no_target``. :func:`nothing_usable` says, in words, why an
evaluation learned nothing (``iotcast evaluate`` then exits non-zero).

"Evaluate" names one thing, this evaluation: :func:`prequential` runs it
(test, then train, reading by reading) and returns an :class:`EvalResult`;
``iotcast evaluate`` is its command (a report of the result);
:func:`online_models.analysis.analyse` gives the result as DataFrames.

>>> from telemetry.generate import generate
>>> from online_models.catalog import load_catalog
>>> from online_models.config import TaskConfig
>>> res = prequential(generate(days=0.05, seed=1), load_catalog(), TaskConfig(horizons=(0, 60)))
>>> res.rows > 0, sorted(res.devices) == sorted(res.profiles)
(True, True)
>>> row = res.figure("b8:27:eb:bf:9d:51", "persistence", 60)
>>> row["n"] > 0 and row["mae"] >= 0
True
>>> res.inputs["b8:27:eb:bf:9d:51"].seen()
('co', 'humidity', 'light', 'lpg', 'motion', 'smoke', 'temp')
"""

from __future__ import annotations

import csv
import math
import pickle
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from online_models.anomaly import KINDS as ANOMALY_KINDS
from online_models.anomaly import Anomaly
from online_models.batch_served import BatchServed
from online_models.catalog import Catalog
from online_models.config import TaskConfig
from online_models.device import DeviceModels, anomaly_of
from online_models.features import GAP_S
from online_models.records import SERVED, Event, Prediction, Score
from online_models.scoring import ErrorTotals
from telemetry.csvfile import BadRows
from telemetry.reading import Reading, is_glitch

__all__ = [
    "DeviceInput",
    "EvalResult",
    "PLOT_STEP_S",
    "MAX_DRIFT_GROUPS",
    "merge_results",
    "nothing_usable",
    "profile_of",
    "prequential",
]

PLOT_STEP_S = 300.0
AFTER_S = 3600.0
MOTION_S = 600.0
FIRST_DAY_S = 86_400.0
MAX_DRIFT_GROUPS = 30
MAX_EVENTS = 2000
HIST_LO, HIST_HI, HIST_BINS = -3.0, 3.0, 120
MAX_FIELD_NAMES = 64  # distinct field names counted per device (extras may be any name)
NO_TEMPERATURE = "no temperature"


def profile_of(mean: float, std: float, n: int = 1) -> str:
    """Device profile from its temperature mean and standard deviation (°C) over ``n`` values.

    >>> profile_of(26.0, 2.0), profile_of(22.3, 0.5), profile_of(19.4, 0.6), profile_of(0.0, 0.0, 0)
    ('variable', 'stable warm', 'stable cool', 'no temperature')
    """
    if n == 0:
        return NO_TEMPERATURE
    if std > 1.0:
        return "variable"
    return "stable warm" if mean >= 21.0 else "stable cool"


class _Welford:
    __slots__ = ("n", "mean", "m2")

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0

    def add(self, v: float) -> None:
        self.n += 1
        d = v - self.mean
        self.mean += d / self.n
        self.m2 += d * (v - self.mean)

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0


@dataclass
class DeviceInput:
    """What one device sent: readings, the sensors and extra fields they carried, and the
    values validation dropped (by field and reason) or clipped (from ``Reading.notes``).

    >>> inp = DeviceInput()
    >>> inp.add(Reading(1.6e9, "d", temp=21.0, notes=(("humidity", "out_of_range"),)))
    >>> inp.add(Reading(1.6e9 + 5, "d", temp=21.1, humidity=100.0, notes=(("humidity", "clipped"),)))
    >>> inp.seen(), inp.sensors["humidity"], dict(inp.dropped), dict(inp.clipped)
    (('humidity', 'temp'), 1, {('humidity', 'out_of_range'): 1}, {'humidity': 1})
    """

    readings: int = 0
    sensors: Counter[str] = field(default_factory=Counter)  # name -> readings that carried it
    dropped: Counter[tuple[str, str]] = field(default_factory=Counter)  # (field, reason) -> values
    clipped: Counter[str] = field(default_factory=Counter)  # field -> values clipped

    def add(self, reading: Reading) -> None:
        self.readings += 1
        sensors = self.sensors
        for name in reading.sensors():
            if name in sensors or len(sensors) < MAX_FIELD_NAMES:
                sensors[name] += 1
        for name, why in reading.notes:
            if why == "clipped":
                self.clipped[name] += 1
            else:
                self.dropped[(name, why)] += 1

    def seen(self) -> tuple[str, ...]:
        """The names of the sensors and extra fields the device sent, sorted."""
        return tuple(sorted(self.sensors))

    def merge(self, other: DeviceInput) -> None:
        self.readings += other.readings
        self.sensors.update(other.sensors)
        self.dropped.update(other.dropped)
        self.clipped.update(other.clipped)


@dataclass
class _DeviceTrack:
    """Evaluation-side state of one device (conditions at the time predictions were made)."""

    first_ts: float
    temp: _Welford = field(default_factory=_Welford)
    target: _Welford = field(default_factory=_Welford)
    last_motion_ts: float = -math.inf
    gap_end_ts: float = -math.inf
    last_ts: float | None = None
    drift_until: dict[int, float] = field(
        default_factory=dict
    )  # horizon -> end of after-drift hour
    drift_group: dict[int, tuple[str, float]] = field(
        default_factory=dict
    )  # horizon -> (group, until)
    flags: dict[float, tuple[str, ...]] = field(default_factory=dict)
    order: deque[float] = field(default_factory=deque)
    next_sample: float = 0.0


@dataclass
class EvalResult:
    """Everything :func:`prequential` measured (bounded in size whatever the stream's length).

    >>> EvalResult(task=TaskConfig(), models=("persistence",), devices={}).rows
    0
    """

    task: TaskConfig
    models: tuple[str, ...]
    devices: dict[str, DeviceModels]
    rows: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    groups: dict[tuple[str, str, int, str], ErrorTotals] = field(default_factory=dict)
    profiles: dict[str, str] = field(default_factory=dict)
    device_figures: dict[str, dict[str, float]] = field(default_factory=dict)
    events: list[tuple[str, Event]] = field(default_factory=list)
    event_counts: Counter[tuple[str, str, str, int]] = field(default_factory=Counter)
    drift_groups: list[tuple[str, str, Event]] = field(default_factory=list)  # group, device, event
    series: dict[tuple[str, int], list[tuple[float, float, dict[str, float]]]] = field(
        default_factory=dict
    )
    rolling: dict[tuple[str, int], list[tuple[float, dict[str, float]]]] = field(
        default_factory=dict
    )
    hist: dict[tuple[int, str], list[int]] = field(default_factory=dict)
    cost_us: dict[str, float] = field(default_factory=dict)
    size_bytes: dict[str, float] = field(default_factory=dict)
    checkpoint_bytes: dict[str, int] = field(default_factory=dict)
    first_ts: dict[str, float] = field(default_factory=dict)
    inputs: dict[str, DeviceInput] = field(default_factory=dict)  # every device, even without
    anomalies: dict[tuple[str, str, float], Anomaly] = field(default_factory=dict)  # last state
    # the served forecast made at each plot point, with its published interval: (device,
    # horizon) -> [(target_ts, value, bounds)], bounds as Prediction.bounds (may be empty)
    bands: dict[tuple[str, int], list[tuple[float, float, tuple[float, ...]]]] = field(
        default_factory=dict
    )
    batch: BatchServed | None = None  # the served forecast with the batch expert, when asked
    # (device, horizon) -> (seconds from each served forecast's making to the reading that
    # scored it, summed; how many): a horizon shorter than the device's interval between
    # readings is scored at the next reading, further ahead than its name says
    leads: dict[tuple[str, int], tuple[float, int]] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def rows_per_cpu_s(self) -> float:
        """Readings per second of this process's CPU time (what a free core would do)."""
        return self.rows / self.cpu_s if self.cpu_s > 0 else float("nan")

    def figure(self, device: str, model: str, horizon: int) -> dict[str, float | int | None]:
        """Overall figures of one device, model (or ``"served"``) and horizon (from the model
        set's own accumulators)."""
        return self.devices[device].stats(model, horizon).as_dict()

    def lead(self, device: str, horizon: int) -> float | None:
        """Mean seconds from the making of ``device``'s served forecasts at ``horizon`` to the
        reading that scored them (the first at or after the target time); None unscored.

        >>> res = EvalResult(task=TaskConfig(), models=(), devices={})
        >>> res.leads[("d", 60)] = (3600.0 * 3, 3)
        >>> res.lead("d", 60), res.lead("d", 900)
        (3600.0, None)
        """
        total, n = self.leads.get((device, horizon), (0.0, 0))
        return total / n if n else None

    def scenario(
        self, device: str, model: str, horizon: int, scenario: str
    ) -> dict[str, float | int | None] | None:
        g = self.groups.get((device, model, horizon, scenario))
        return None if g is None else g.as_dict()

    def pairs(self) -> list[tuple[str, str, int]]:
        """(device, model, horizon) triples that ran, the served forecast last, in report order."""
        out: list[tuple[str, str, int]] = []
        for device in sorted(self.devices):
            dm = self.devices[device]
            for h, hz in dm.horizons.items():
                out.extend((device, name, h) for name in (*hz.names, SERVED))
        return out


class _PredictionFiles:
    """Every scored prediction of chosen (device, model) pairs, written to CSV as they come;
    the served forecast's rows also carry the interval published with it (``low80``,
    ``high80``, ... per level; empty in the band's warm-up)."""

    HEADER = ("device", "model", "horizon", "made_ts", "target_ts", "predicted", "actual")

    def __init__(
        self,
        pairs: Iterable[tuple[str, str]],
        directory: str | Path | None,
        levels: Iterable[float] = (),
    ) -> None:
        self.pairs = {(d, m) for d, m in pairs}
        self.directory = None if directory is None else Path(directory)
        self.files: dict[tuple[str, str], tuple[Any, Any]] = {}
        self.levels = tuple(levels)
        # served forecasts published and not yet scored: (device, horizon) -> (made_ts, bounds)
        self.published: dict[tuple[str, int], deque[tuple[float, tuple[float, ...]]]] = {}
        if self.pairs:
            if self.directory is None:
                raise ValueError("save_predictions needs predictions_dir")
            self.directory.mkdir(parents=True, exist_ok=True)

    def publish(self, device: str, predictions: Iterable[Prediction]) -> None:
        """Keep the intervals of the served forecasts just made until they are scored."""
        if (device, SERVED) not in self.pairs:
            return
        for p in predictions:
            if p.model == SERVED:
                self.published.setdefault((device, p.horizon), deque()).append((p.ts, p.bounds))

    def _bounds(self, device: str, s: Score) -> list[str]:
        waiting = self.published.get((device, s.horizon))
        # scored in the order published; older ones were never scored (dropped, refused)
        while waiting and waiting[0][0] < s.made_ts:
            waiting.popleft()
        bounds: tuple[float, ...] = ()
        if waiting and waiting[0][0] == s.made_ts:
            bounds = waiting.popleft()[1]
        return [repr(b) for b in bounds] if bounds else [""] * (2 * len(self.levels))

    def write(self, device: str, s: Score) -> None:
        key = (device, s.model)
        if key not in self.pairs:
            return
        served = s.model == SERVED
        w = self.files.get(key)
        if w is None:
            assert self.directory is not None  # __init__ refuses pairs without one
            safe = device.replace(":", "-")
            f = open(self.directory / f"{safe}__{s.model}.csv", "w", newline="")  # noqa: SIM115
            w = self.files[key] = (f, csv.writer(f))
            header = list(self.HEADER)
            if served:
                header += [f"{side}{100 * v:g}" for v in self.levels for side in ("low", "high")]
            w[1].writerow(header)
        w[1].writerow(
            [
                device,
                s.model,
                s.horizon,
                repr(s.made_ts),
                repr(s.target_ts),
                repr(s.predicted),
                repr(s.actual),
                *(self._bounds(device, s) if served else ()),
            ]
        )

    def close(self) -> None:
        for f, _ in self.files.values():
            f.close()


def _conditions(tr: _DeviceTrack, reading: Reading, target: str) -> tuple[str, ...]:
    """The scenarios a prediction made at ``reading`` belongs to (and fold it into ``tr``)."""
    ts = reading.ts
    if tr.last_ts is not None and ts - tr.last_ts > GAP_S:
        tr.gap_end_ts = ts
    tr.last_ts = ts
    if reading.motion:
        tr.last_motion_ts = ts
    if not is_glitch(reading):
        if reading.temp is not None:
            tr.temp.add(reading.temp)
        tr.target.add(float(getattr(reading, target)))
    hour = int((ts % 86_400.0) // 3600)
    flags: tuple[str, ...] = ("all", "day" if 6 <= hour < 18 else "night")
    if reading.light is not None:  # a device without a light (motion) sensor is in neither
        flags += ("light_on" if reading.light else "light_off",)
    if reading.motion is not None:
        flags += ("motion" if ts - tr.last_motion_ts <= MOTION_S else "no_motion",)
    flags += (f"hour_{hour:02d}",)
    if ts - tr.gap_end_ts < AFTER_S:
        flags += ("after_gap",)
    if ts - tr.first_ts >= FIRST_DAY_S:
        flags += ("after_first_day",)
    return flags


def _events(
    res: EvalResult, tr: _DeviceTrack, device: str, events: Iterable[Event], ts: float
) -> None:
    """Count the step's events; a drift opens an "after drift" hour for its horizon."""
    for event in events:
        res.event_counts[(device, event.kind, event.model, event.horizon)] += 1
        if len(res.events) < MAX_EVENTS:
            res.events.append((device, event))
        if event.kind == "drift":
            tr.drift_until[event.horizon] = ts + AFTER_S
            if len(res.drift_groups) < MAX_DRIFT_GROUPS:
                name = f"drift#{len(res.drift_groups) + 1}"
                res.drift_groups.append((name, device, event))
                tr.drift_group[event.horizon] = (name, ts + AFTER_S)


def _add(
    groups: dict[tuple[str, str, int, str], ErrorTotals],
    key: tuple[str, str, int, str],
    predicted: float,
    actual: float,
) -> None:
    g = groups.get(key)
    if g is None:
        g = groups[key] = ErrorTotals()
    g.update(actual, predicted)


def _scores(
    res: EvalResult,
    tr: _DeviceTrack,
    device: str,
    ts: float,
    scores: Iterable[Score],
    files: _PredictionFiles,
) -> dict[int, dict[str, tuple[float, float, float]]]:
    """Group each score (made by the reading at ``ts``) by the conditions at its making;
    histograms; the served forecast's lead; the last per model."""
    groups = res.groups
    last_by_h: dict[int, dict[str, tuple[float, float, float]]] = {}
    for s in scores:
        made, h = s.made_ts, s.horizon
        if s.model == SERVED:
            total, n = res.leads.get((device, h), (0.0, 0))
            res.leads[(device, h)] = (total + ts - made, n + 1)
        predicted, actual = s.predicted, s.actual
        for sc in tr.flags.get(made, ("all",)):
            _add(groups, (device, s.model, h, sc), predicted, actual)
        until = tr.drift_until.get(h)
        if until is not None and until - AFTER_S <= made < until:
            _add(groups, (device, s.model, h, "after_drift"), predicted, actual)
        grp = tr.drift_group.get(h)
        if grp is not None and grp[1] - AFTER_S <= made < grp[1]:
            _add(groups, (device, s.model, h, grp[0]), predicted, actual)
        err = actual - predicted
        hist = res.hist.get((h, s.model))
        if hist is None:
            hist = res.hist[(h, s.model)] = [0] * (HIST_BINS + 2)
        if err < HIST_LO:
            hist[0] += 1
        elif err >= HIST_HI:
            hist[HIST_BINS + 1] += 1
        else:
            hist[1 + int((err - HIST_LO) / (HIST_HI - HIST_LO) * HIST_BINS)] += 1
        last_by_h.setdefault(h, {})[s.model] = (s.target_ts, predicted, actual)
        files.write(device, s)
    return last_by_h


def _sample(
    res: EvalResult,
    tr: _DeviceTrack,
    dm: DeviceModels,
    device: str,
    ts: float,
    last_by_h: dict[int, dict[str, tuple[float, float, float]]],
    predictions: Iterable[Prediction] = (),
) -> None:
    """Downsampled series for the plots: one point per PLOT_STEP_S per device and horizon
    (and for the bands, a served forecast with its intervals per PLOT_STEP_S of target time)."""
    for p in predictions:
        if p.model == SERVED:
            pts = res.bands.setdefault((device, p.horizon), [])
            if not pts or p.target_ts >= pts[-1][0] + PLOT_STEP_S:
                pts.append((p.target_ts, p.value, p.bounds))
    if ts < tr.next_sample or not last_by_h:
        return
    tr.next_sample = ts + PLOT_STEP_S
    for h, per_model in last_by_h.items():
        any_model = next(iter(per_model.values()))
        res.series.setdefault((device, h), []).append(
            (any_model[0], any_model[2], {m: v[1] for m, v in per_model.items()})
        )
        hz = dm.horizons[h]
        rolling: dict[str, float] = {}
        for m in hz.names:
            mae = hz.stats[m].rolling_mae  # None only before its first score
            if mae is not None:
                rolling[m] = mae
        served = hz.served.rolling_mae
        if served is not None:
            rolling[SERVED] = served
        res.rolling.setdefault((device, h), []).append((ts, rolling))


def _forget(tr: _DeviceTrack, dm: DeviceModels, ts: float, max_h: int) -> None:
    """Forget the conditions of readings no pending forecast refers to."""
    if len(tr.order) <= 64:
        return
    oldest = ts - max_h
    for hz in dm.horizons.values():
        if len(hz.pending):
            oldest = min(oldest, hz.pending.first_made())
    while tr.order and tr.order[0] < oldest:
        tr.flags.pop(tr.order.popleft(), None)


def _anomalies(res: EvalResult, device: str, events: Iterable[Event]) -> list[Event]:
    """Keep the step's anomaly events (the device's watch, as the processor runs it) in
    ``res.anomalies``, each in its last state (ongoing, or ended); the other events back."""
    rest = []
    for e in events:
        if e.kind in ANOMALY_KINDS and not e.model:
            a = anomaly_of(device, e)
            res.anomalies[(a.device, a.kind, a.start_ts)] = a
        else:
            rest.append(e)
    return rest


def prequential(
    readings: Iterable[Reading],
    catalog: Catalog,
    task: TaskConfig | None = None,
    *,
    models: str | Iterable[str] = "default",
    references: bool = True,
    save_predictions: Iterable[tuple[str, str]] = (),
    predictions_dir: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
    batch_expert: BatchServed | None = None,
) -> EvalResult:
    """Run the prequential evaluation (see the module docstring); returns an :class:`EvalResult`.

    ``models`` selects from ``catalog`` as :meth:`Catalog.select` does; ``references``
    adds the catalog's reference models (seasonal naive, the batch forest).
    ``save_predictions`` lists (device, model) pairs whose scored predictions are
    written to ``predictions_dir/<device>__<model>.csv`` (``served``'s with the interval
    published with each forecast, ``low80``, ``high80``, ...). ``progress(n)`` is
    called every 1,000 readings with the count so far. ``batch_expert`` (a
    :class:`~online_models.batch_served.BatchServed`) sees every learned reading with the
    forecasts served and scored at it: the batch expert retrained on a schedule and the
    served forecast weighed with it, no look-ahead (``res.batch``).
    """
    task = task or TaskConfig()
    selected = catalog.select(models, references=references)
    # references the selection did not ask for are scored, never served: the served forecast
    # is what the processor, which runs the selection alone, would have published
    observers = set(selected.names) - set(catalog.select(models).names)
    res = EvalResult(task=task, models=selected.names, devices={}, batch=batch_expert)
    tracks: dict[str, _DeviceTrack] = {}
    files = _PredictionFiles(save_predictions, predictions_dir, task.interval_levels)
    max_h = max(task.horizons)
    target = task.target
    inputs = res.inputs
    start = time.perf_counter()
    cpu_start = time.process_time()
    try:
        for reading in readings:
            res.rows += 1
            if progress is not None and res.rows % 1000 == 0:
                progress(res.rows)
            device = reading.device
            inp = inputs.get(device)
            if inp is None:
                inp = inputs[device] = DeviceInput()
            inp.add(reading)
            dm = res.devices.get(device)
            if dm is None:
                if getattr(reading, target) is None:  # no model set before the target shows
                    res.statuses["no_target"] += 1
                    continue
                dm = res.devices[device] = DeviceModels(
                    device, selected, task, models="all", timing=True, observers=observers,
                    anomalies=True,
                )  # fmt: skip
                tracks[device] = _DeviceTrack(first_ts=reading.ts, next_sample=reading.ts)
            tr = tracks[device]
            result = dm.step(reading)
            files.publish(device, result.predictions)
            res.statuses[result.status] += 1
            events = _anomalies(res, device, result.events)
            if result.status != "learned":
                continue
            ts = reading.ts
            tr.flags[ts] = _conditions(tr, reading, task.target)
            tr.order.append(ts)
            _events(res, tr, device, events, ts)
            last_by_h = _scores(res, tr, device, ts, result.scores, files)
            if batch_expert is not None:
                y = float(getattr(reading, target))
                batch_expert.step(device, ts, y, result.predictions, result.scores)
            _sample(res, tr, dm, device, ts, last_by_h, result.predictions)
            _forget(tr, dm, ts, max_h)
    finally:
        files.close()
    res.wall_s = time.perf_counter() - start
    res.cpu_s = time.process_time() - cpu_start
    _finish(res, tracks)
    return res


def merge_results(parts: list[EvalResult]) -> EvalResult:
    """One result from evaluations of disjoint device sets (e.g. one process per device).

    Wall time is the longest part's (they ran side by side); CPU time adds up.
    """
    if not parts:
        raise ValueError("nothing to merge")
    out = EvalResult(task=parts[0].task, models=parts[0].models, devices={})
    for p in parts:
        if set(p.devices) & set(out.devices):
            raise ValueError(f"device(s) {sorted(set(p.devices) & set(out.devices))} in two parts")
        out.devices.update(p.devices)
        out.rows += p.rows
        out.statuses.update(p.statuses)
        out.wall_s = max(out.wall_s, p.wall_s)
        out.cpu_s += p.cpu_s
        out.groups.update(p.groups)
        out.profiles.update(p.profiles)
        out.device_figures.update(p.device_figures)
        out.events.extend(p.events)
        out.event_counts.update(p.event_counts)
        out.drift_groups.extend(p.drift_groups[: MAX_DRIFT_GROUPS - len(out.drift_groups)])
        out.series.update(p.series)
        out.rolling.update(p.rolling)
        out.checkpoint_bytes.update(p.checkpoint_bytes)
        out.first_ts.update(p.first_ts)
        out.anomalies.update(p.anomalies)
        out.bands.update(p.bands)
        out.leads.update(p.leads)
        for device, inp in p.inputs.items():
            out.inputs.setdefault(device, DeviceInput()).merge(inp)
        for k, counts in p.hist.items():
            mine = out.hist.setdefault(k, [0] * len(counts))
            for i, c in enumerate(counts):
                mine[i] += c
    n = sum(dm.n_learned for dm in out.devices.values())
    for name in out.models:
        ns = sum(dm.cost_ns.get(name, 0) for dm in out.devices.values())
        out.cost_us[name] = ns / n / 1000.0 if n else float("nan")
        sizes = [p.size_bytes[name] * len(p.devices) for p in parts if name in p.size_bytes]
        out.size_bytes[name] = sum(sizes) / max(len(out.devices), 1)
    return out


def _finish(res: EvalResult, tracks: dict[str, _DeviceTrack]) -> None:
    total_cost: Counter[str] = Counter()
    total_n = 0
    size_sum: Counter[str] = Counter()
    for device, dm in res.devices.items():
        tr = tracks[device]
        res.first_ts[device] = tr.first_ts
        res.profiles[device] = profile_of(tr.temp.mean, tr.temp.std, tr.temp.n)
        res.device_figures[device] = {
            "rows_learned": dm.n_learned,
            "temp_mean": tr.temp.mean if tr.temp.n else math.nan,
            "temp_std": tr.temp.std if tr.temp.n else math.nan,
            "target_mean": tr.target.mean,
            "target_std": tr.target.std,
            "glitches": dm.n_glitch,
            "duplicates": dm.n_duplicate,
            "late": dm.n_late,
            "no_target": dm.n_no_target,
        }
        total_n += dm.n_learned
        for name, ns in dm.cost_ns.items():
            total_cost[name] += ns
        for name in dm.model_names:
            size_sum[name] += sum(
                len(pickle.dumps(hz.models[name], protocol=pickle.HIGHEST_PROTOCOL))
                for hz in dm.horizons.values()
                if name in hz.models
            )
        res.checkpoint_bytes[device] = len(pickle.dumps(dm, protocol=pickle.HIGHEST_PROTOCOL))
    n_dev = max(len(res.devices), 1)
    for name in res.models:
        res.cost_us[name] = total_cost[name] / total_n / 1000.0 if total_n else float("nan")
        res.size_bytes[name] = size_sum[name] / n_dev


def nothing_usable(res: EvalResult, bad_rows: BadRows | None = None) -> str | None:
    """Why an evaluation learned from no reading at all, in words a person can act on
    (``None`` when it learned something): the rows refused and why, with the first
    examples; readings without the target, and which sensors the devices did send;
    duplicates, late readings and glitches.

    >>> from online_models.catalog import load_catalog
    >>> res = prequential([Reading(1.6e9, "d", humidity=40.0)], load_catalog(), TaskConfig())
    >>> print(nothing_usable(res))
    no usable reading: 1 reading does not carry the target 'temp' (device d sent humidity)
    >>> nothing_usable(prequential([], load_catalog(), TaskConfig()))
    'no usable reading: no data rows'
    """
    if res.statuses.get("learned", 0):
        return None
    reasons = []
    if bad_rows is not None and bad_rows.count:
        counts = ", ".join(f"{why} {n:,}" for why, n in bad_rows.by_reason.most_common())
        examples = "; ".join(f"line {b.line}: {b.message}" for b in bad_rows.examples[:3])
        reasons.append(f"{_plural(bad_rows.count, 'row')} refused ({counts}), e.g. {examples}")
    no_target = res.statuses.get("no_target", 0)
    if no_target:
        sent = "; ".join(
            f"device {device} sent {', '.join(inp.seen()) or 'nothing'}"
            for device, inp in sorted(res.inputs.items())[:5]
        )
        more = f"; {len(res.inputs) - 5:,} more devices" if len(res.inputs) > 5 else ""
        verb = "does" if no_target == 1 else "do"
        reasons.append(
            f"{_plural(no_target, 'reading')} {verb} not carry the target {res.task.target!r} "
            f"({sent}{more})"
        )
    for status, what in (("duplicate", "duplicate"), ("late", "late"), ("glitch", "glitch")):
        n = res.statuses.get(status, 0)
        if n:
            reasons.append(f"{_plural(n, 'reading')} skipped as {what}")
    if not reasons:
        reasons.append("no data rows")
    return "no usable reading: " + "; ".join(reasons)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")

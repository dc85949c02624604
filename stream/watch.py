"""The per-device series of the watched devices: the detail an operator asks for by name.

Only devices on the watch list (``iotcast process --watch d1,d2``, the
``IOTCAST_WATCH`` setting; at most :data:`~monitoring.metrics.MAX_WATCHED`)
get series with a ``device`` label: their readings by outcome, last
prediction per model and horizon and the served forecast's last interval bounds
per horizon and level (the band around it), actual value, error figures,
residual histogram, champion, checkpoint version, last reading and cadence. Every
other device is seen through the fleet figures (:mod:`stream.fleet`), the
worst-k gauges and the event log.

Two ways in: what a reading brings (its outcome, value, arrival, cadence, each
score's residual) is counted as it is handled, by :class:`WatchedDevice`; what the
models hold (their MAE, rolling MAE and RMSE, the champion, the last predictions, the
newest reading learned) is read from the device's own
:class:`~online_models.device.DeviceModels` (``stats()``, ``champion()``) when
Prometheus scrapes, by :data:`WATCHED` (a :class:`WatchedFigures` collector): the
figures the offline evaluation reports, as they are at that moment, whoever changed
them (a reading, an operator's promotion or rollback).

>>> sorted(parse_watch("d2, d1,d2"))
['d1', 'd2']
>>> parse_watch(",".join(f"d{i}" for i in range(60)))
Traceback (most recent call last):
...
ValueError: 60 devices on the watch list; at most 50 (each costs its own series: watch the ones you are looking into)
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitoring import metrics as m
from online_models.records import SERVED, StepResult

if TYPE_CHECKING:
    from prometheus_client import Gauge

    from stream.state import DeviceSlot

__all__ = ["WATCHED", "WatchedDevice", "WatchedFigures", "parse_watch"]


def parse_watch(value: str | Iterable[str] | None) -> frozenset[str]:
    """The watch list from a comma-separated string (or a list); refused above the maximum."""
    if not value:
        return frozenset()
    items = value.split(",") if isinstance(value, str) else list(value)
    watch = frozenset(d.strip() for d in items if d.strip())
    if len(watch) > m.MAX_WATCHED:
        raise ValueError(
            f"{len(watch)} devices on the watch list; at most {m.MAX_WATCHED} (each costs its "
            "own series: watch the ones you are looking into)"
        )
    return watch


class WatchedDevice:
    """One watched device: the counters its readings move (children looked up once), its
    slot (whose models :data:`WATCHED` reads at scrape time) and its last predictions."""

    __slots__ = (
        "device",
        "outcomes",
        "actual",
        "received",
        "interval",
        "slot",
        "predictions",
        "bounds",
        "levels",
        "_residuals",
        "__weakref__",
    )

    def __init__(self, device: str) -> None:
        self.device = device
        self.outcomes = {
            o: m.DEVICE_READINGS.labels(device, o)
            for o in ("learned", "held", "duplicate", "late", "glitch")
        }
        self.actual = m.ACTUAL.labels(device)
        self.received = m.LAST_READING_RECEIVED.labels(device)
        self.interval = m.DEVICE_INTERVAL.labels(device)
        self.slot: DeviceSlot | None = None  # the device's models, once held
        # the last prediction of each (model, horizon), as the newest learned reading made it
        self.predictions: dict[tuple[str, int], float] = {}
        # the served forecast's last interval per horizon: (low, high) per level, flattened
        self.bounds: dict[int, tuple[float, ...]] = {}
        self.levels: tuple[float, ...] = ()  # of those intervals (the models' task's)
        self._residuals: dict[tuple[str, int], list[float]] = {}

    def residuals(self, model: str, horizon: int) -> list[float]:
        """The residual/scored accumulator of a model at a horizon (created at its first score)."""
        key = (model, horizon)
        acc = self._residuals.get(key)
        if acc is None:
            acc = self._residuals[key] = m.SCORES.series(self.device, model, str(horizon))
        return acc

    def learned(
        self,
        slot: DeviceSlot,
        value: float,
        received: float,
        interval: float | None,
        result: StepResult,
    ) -> None:
        """A reading the device's models learned (or held back: ``result.status``): its value,
        arrival, cadence, predictions and scores."""
        self.slot = slot
        self.outcomes[result.status].inc()
        self.actual.set(value)
        self.received.set(received)
        if interval is not None:
            self.interval.set(interval)
        predictions = self.predictions
        for p in result.predictions:
            predictions[(p.model, p.horizon)] = p.value
            if p.bounds:
                self.bounds[p.horizon] = p.bounds
                self.levels = slot.models.task.interval_levels
        add, residuals = m.SCORES.add, self._residuals
        for s in result.scores:
            acc = residuals.get((s.model, s.horizon)) or self.residuals(s.model, s.horizon)
            add(acc, s.actual - s.predicted)


def _gauge(declared: Gauge) -> GaugeMetricFamily:
    """An empty family of a declared gauge: its name, help text and label names."""
    (family,) = declared.describe()
    return GaugeMetricFamily(family.name, family.documentation, labels=m.labelnames(declared))


class WatchedFigures(Collector):
    """Exports the watched devices' model figures, read from their models at scrape time.

    The families (declared in :mod:`monitoring.metrics`, not registered there):
    ``iotcast_prediction_celsius``, ``iotcast_mae_celsius``,
    ``iotcast_rolling_mae_celsius``, ``iotcast_rolling_rmse_celsius`` (a model's once it
    has a score), ``iotcast_champion_info`` (first horizon),
    ``iotcast_last_reading_timestamp_seconds`` and the served forecast's last interval,
    ``iotcast_prediction_low_celsius`` and ``iotcast_prediction_high_celsius`` (by horizon
    and level, once the band publishes one). Devices join with :meth:`add` and leave
    when their :class:`WatchedDevice` is gone (held weakly: a core's watch list lives as
    long as the core). The scrape thread reads only what a reading replaces whole
    (numbers, the slot's models), never a dict the hot loop may be growing.

    >>> from prometheus_client import generate_latest
    >>> from online_models.catalog import load_catalog
    >>> from online_models.config import TaskConfig
    >>> from online_models.device import DeviceModels
    >>> from stream.state import DeviceSlot
    >>> from telemetry.reading import Reading
    >>> figures = WatchedFigures(registry=CollectorRegistry())
    >>> w = WatchedDevice("w1"); figures.add(w)
    >>> models = DeviceModels("w1", load_catalog(), TaskConfig(horizons=(0,)), models="persistence")
    >>> slot = DeviceSlot(models)
    >>> for t in range(3):
    ...     r = Reading(1594512000.0 + t, "w1", 0.005, 51.0, False, 0.007, False, 0.02, 22.5 + t)
    ...     w.learned(slot, r.temp, 0.0, None, models.step(r))
    >>> text = generate_latest(figures.registry).decode()
    >>> 'iotcast_mae_celsius{device="w1",horizon="0",model="persistence"} 1.0' in text
    True
    >>> 'iotcast_champion_info{device="w1",model="persistence"} 1.0' in text
    True
    >>> w.bounds = {0: (22.0, 23.0, 21.5, 23.5)}; w.levels = (0.8, 0.95)
    >>> text = generate_latest(figures.registry).decode()
    >>> 'iotcast_prediction_high_celsius{device="w1",horizon="0",level="0.95"} 23.5' in text
    True
    """

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        self.registry = registry
        self._devices: weakref.WeakValueDictionary[str, WatchedDevice] = (
            weakref.WeakValueDictionary()
        )
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def add(self, watched: WatchedDevice) -> None:
        """Export ``watched``'s figures (in place of any earlier device of that name)."""
        with self._lock:
            self._devices[watched.device] = watched

    def describe(self) -> list[Metric]:
        return list(self._families())

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, ...]:
        return tuple(
            _gauge(g)
            for g in (
                m.PREDICTION,
                m.MAE,
                m.ROLLING_MAE,
                m.ROLLING_RMSE,
                m.CHAMPION,
                m.LAST_READING_TS,
                m.PREDICTION_LOW,
                m.PREDICTION_HIGH,
            )
        )

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        prediction, mae, rolling_mae, rolling_rmse, champion, last_ts, low, high = families
        with self._lock:
            watched = sorted(self._devices.items())
        for device, w in watched:
            for (model, h), value in list(w.predictions.items()):
                prediction.add_metric([device, model, str(h)], value)
            levels = w.levels
            for h, bounds in list(w.bounds.items()):
                for i, level in enumerate(levels[: len(bounds) // 2]):
                    low.add_metric([device, str(h), str(level)], bounds[2 * i])
                    high.add_metric([device, str(h), str(level)], bounds[2 * i + 1])
            models = w.slot.models if w.slot is not None else None
            newest = models.last_ts if models is not None else None
            last_ts.add_metric([device], 0.0 if newest is None else newest)
            if models is None:
                continue
            first = models.task.horizons[0]
            for h, hz in models.horizons.items():
                labels = [device, "", str(h)]
                for name in (*hz.names, SERVED):
                    stats = models.stats(name, h)
                    figures = (
                        stats.mae,
                        stats.rolling_mae,
                        stats.rolling_rmse,
                    )  # None before a score
                    if figures[0] is not None and figures[1] is not None and figures[2] is not None:
                        labels[1] = name
                        mae.add_metric(labels, figures[0])
                        rolling_mae.add_metric(labels, figures[1])
                        rolling_rmse.add_metric(labels, figures[2])
                if h == first:
                    best = models.champion(h)
                    for name in hz.names:
                        champion.add_metric([device, name], 1.0 if name == best else 0.0)
        yield from families


WATCHED = WatchedFigures()  # the process's watched devices (the per-device series)

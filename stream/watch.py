"""The per-device series of the watched devices: the detail an operator asks for by name.

Only devices on the watch list (``iotcast process --watch d1,d2``, the
``IOTCAST_WATCH`` setting; at most :data:`~monitoring.metrics.MAX_WATCHED`)
get series with a ``device`` label: their readings by outcome, last
prediction per model and horizon, actual value, error figures, residual
histogram, champion, checkpoint version, last reading and cadence. Every
other device is seen through the fleet figures (:mod:`stream.fleet`), the
worst-k gauges and the event log.

>>> sorted(parse_watch("d2, d1,d2"))
['d1', 'd2']
>>> parse_watch(",".join(f"d{i}" for i in range(60)))
Traceback (most recent call last):
...
ValueError: 60 devices on the watch list; at most 50 (each costs its own series: watch the ones you are looking into)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from monitoring import metrics as m
from online_models.records import SERVED, Prediction

if TYPE_CHECKING:
    from prometheus_client import Gauge

    from online_models.device import DeviceModels

# A model's error series at a horizon: the residual/scored accumulator (ScoreSeries.series),
# then the MAE, rolling MAE and rolling RMSE gauges.
ErrorChildren = tuple[list[float], "Gauge", "Gauge", "Gauge"]

__all__ = ["WatchedDevice", "parse_watch"]


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
    """Labelled metric children of one watched device, looked up once."""

    __slots__ = (
        "device",
        "outcomes",
        "actual",
        "last_ts",
        "received",
        "interval",
        "errors",
        "last",
        "champions",
        "predictions",
    )

    def __init__(self, device: str) -> None:
        self.device = device
        self.outcomes = {
            o: m.DEVICE_READINGS.labels(device, o)
            for o in ("learned", "duplicate", "late", "glitch")
        }
        self.actual = m.ACTUAL.labels(device)
        self.last_ts = m.LAST_READING_TS.labels(device)
        self.received = m.LAST_READING_RECEIVED.labels(device)
        self.interval = m.DEVICE_INTERVAL.labels(device)
        self.errors: dict[tuple[str, int], ErrorChildren] = {}
        self.last: dict[tuple[str, int], Gauge] = {}  # prediction gauges
        self.champions: dict[str, Gauge] = {}
        self.predictions: tuple[Prediction, ...] = ()  # the last learned reading's

    def residuals(self, model: str, horizon: int) -> list[float]:
        """The residual/scored accumulator of a model at a horizon (created at its first score)."""
        return self.error_children(model, horizon)[0]

    def error_children(self, model: str, horizon: int) -> ErrorChildren:
        """(residual/scored accumulator, mae, rolling mae, rolling rmse) children: a model's
        error series, created at its first score (no error gauge reads 0 before one)."""
        key = (model, horizon)
        children = self.errors.get(key)
        if children is None:
            h = str(horizon)
            children = (
                m.SCORES.series(self.device, model, h),
                m.MAE.labels(self.device, model, h),
                m.ROLLING_MAE.labels(self.device, model, h),
                m.ROLLING_RMSE.labels(self.device, model, h),
            )
            self.errors[key] = children
        return children

    def learned(self, value: float, ts: float, received: float, interval: float | None) -> None:
        self.outcomes["learned"].inc()
        self.actual.set(value)
        self.last_ts.set(ts)
        self.received.set(received)
        if interval is not None:
            self.interval.set(interval)

    def refresh(self, models: DeviceModels) -> None:
        """Set the summary gauges from the device's models' accumulators."""
        for p in self.predictions:
            key = (p.model, p.horizon)
            child = self.last.get(key)
            if child is None:
                child = self.last[key] = m.PREDICTION.labels(self.device, p.model, str(p.horizon))
            child.set(p.value)
        first = models.task.horizons[0]
        for h, hz in models.horizons.items():
            champion = hz.selector.champion
            for name in (*hz.names, SERVED):
                stats = models.stats(name, h)
                scored = stats.mae, stats.rolling_mae, stats.rolling_rmse  # None before a score
                if scored[0] is not None and scored[1] is not None and scored[2] is not None:
                    _, mae, rolling_mae, rolling_rmse = self.error_children(name, h)
                    mae.set(scored[0])
                    rolling_mae.set(scored[1])
                    rolling_rmse.set(scored[2])
                if h == first and name != SERVED:
                    self.champion(name).set(1.0 if name == champion else 0.0)
        if models.last_ts is not None:
            self.last_ts.set(models.last_ts)

    def champion(self, model: str) -> Gauge:
        child = self.champions.get(model)
        if child is None:
            child = self.champions[model] = m.CHAMPION.labels(self.device, model)
        return child

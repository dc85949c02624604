"""The per-record core: decode, dedupe, step the device's models, report.

:class:`StreamCore` handles one Kinesis record of one shard at a time, with
no network I/O of its own (the benchmark runs it bare):

1. a record at or below the shard manifest's sequence number is already in
   the models: skipped (compared as integers);
2. decode (the data contract); what is not a reading is dead-lettered with
   its reason, shard and sequence number (written with the next checkpoint);
   the values validation dropped or clipped (``Reading.notes``) are counted
   by field and reason, for every decoded record;
3. a reading without the task's target (``temp`` by default) of a device
   that has no model set yet is counted as ``no_target`` and goes no
   further: a device gets its model set, forecasts and per-device series
   with its first reading of the target;
4. the device's :class:`~online_models.device.DeviceModels` (a fresh set
   from the catalog for a new device, up to ``max_devices`` per process)
   steps the reading: it drops a not-newer (device, ts) as duplicate or late,
   glitches and readings without the target (``no_target``), else predicts,
   scores and learns;
5. metrics (the processor section of :mod:`monitoring.metrics`) and
   prediction records (to the output writer, when one is given).

Every decoded record has exactly one outcome: ``learned``, ``duplicate``,
``late``, ``glitch``, ``no_target`` or ``device_limit`` (``poison`` when it does
not decode), which is what the exactly-once accounting adds up.

Error figures that summarise (MAE, rolling MAE/RMSE, champion) and the last predictions are read from
the models' own accumulators, the ones the offline evaluation uses, and
refreshed per device at most every ``figures_interval`` seconds and by
:meth:`StreamCore.refresh_figures` (called when the stream is idle).

>>> from online_models.catalog import load_catalog
>>> from online_models.config import TaskConfig
>>> from stream.state import ShardState
>>> from telemetry.reading import Reading, encode
>>> core = StreamCore(load_catalog(), TaskConfig(horizons=(0,)))
>>> st = ShardState("shardId-0", epoch=1)
>>> r = Reading(1594512000.0, "d1", 0.005, 51.0, False, 0.007, False, 0.02, 22.5)
>>> core.handle(st, "1", encode(r)), core.handle(st, "2", encode(r)), core.handle(st, "3", b"{")
('learned', 'duplicate', 'poison')
>>> st.last_seq, sorted(st.dirty), len(st.dead_letters)
('3', ['d1'], 1)
>>> core.handle(st, "4", b'{"data": {"humidity": 40.0}, "device_id": "h1", "ts": 1594512000}')
'no_target'
>>> sorted(st.devices)
['d1']
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_left
from typing import Any

from monitoring import metrics as m
from monitoring.metrics import FieldNotes, device_label
from online_models.records import SERVED
from stream.output import dead_letter_line
from stream.state import DeviceSlot, ShardState
from telemetry.reading import InvalidReading, decode_payload

__all__ = ["StreamCore"]

log = logging.getLogger(__name__)

BOUNDS, SUM, NAN = m.RESIDUAL_BOUNDS, m.ScoreSeries.SUM, m.ScoreSeries.NAN


class _DeviceMetrics:
    """Labelled metric children of one device, looked up once."""

    __slots__ = (
        "label",
        "learned",
        "duplicate",
        "late",
        "glitch",
        "actual",
        "last_ts",
        "received",
        "interval",
        "pairs",
        "last",
        "figures_at",
        "stale",
        "champions",
        "predictions",
        "prev_ts",
        "ewma",
    )

    def __init__(self, label: str) -> None:
        self.label = label
        self.learned = m.READINGS_LEARNED.labels(label)
        self.duplicate = m.READINGS_DUPLICATE.labels(label)
        self.late = m.READINGS_LATE.labels(label)
        self.glitch = m.READINGS_GLITCH.labels(label)
        self.actual = m.ACTUAL.labels(label)
        self.last_ts = m.LAST_READING_TS.labels(label)
        self.received = m.LAST_READING_RECEIVED.labels(label)
        self.interval = m.DEVICE_INTERVAL.labels(label)
        self.pairs: dict[tuple[str, int], tuple[Any, ...]] = {}
        self.last: dict[tuple[str, int], Any] = {}  # prediction gauges
        self.figures_at = 0.0
        self.stale = False
        self.champions: dict[str, Any] = {}
        self.predictions: tuple = ()  # the last learned reading's predictions
        self.prev_ts: float | None = None
        self.ewma: float | None = None

    def pair(self, model: str, horizon: int) -> tuple[Any, ...]:
        """(residual/scored accumulator, mae, rolling mae, rolling rmse) children: a model's
        error series, created at its first score (no error gauge reads 0 before one)."""
        key = (model, horizon)
        children = self.pairs.get(key)
        if children is None:
            h = str(horizon)
            children = (
                m.SCORES.series(self.label, model, h),
                m.MAE.labels(self.label, model, h),
                m.ROLLING_MAE.labels(self.label, model, h),
                m.ROLLING_RMSE.labels(self.label, model, h),
            )
            self.pairs[key] = children
        return children

    def prediction(self, model: str, horizon: int) -> Any:
        key = (model, horizon)
        child = self.last.get(key)
        if child is None:
            child = self.last[key] = m.PREDICTION.labels(self.label, model, str(horizon))
        return child

    def champion(self, model: str) -> Any:
        child = self.champions.get(model)
        if child is None:
            child = self.champions[model] = m.CHAMPION.labels(self.label, model)
        return child


class StreamCore:
    """Handles records of leased shards (see the module docstring).

    ``predictions``: ``"champion"`` (the served forecast per horizon: the
    champion's, or persistence's where the champion has none; the record's
    ``model`` says which), ``"all"`` (every model's) or ``"none"``; records
    go to ``writer.add``.
    """

    def __init__(
        self,
        catalog: Any,
        task: Any,
        *,
        writer: Any | None = None,
        predictions: str = "champion",
        max_devices: int = 100_000,
        models: str = "default",
        figures_interval: float = 1.0,
        latencies: list[float] | None = None,
    ) -> None:
        from online_models.device import DeviceModels

        self._new_models = lambda device: DeviceModels(device, catalog, task, models=models)
        self.target = task.target
        self._notes = FieldNotes(m.VALUES_DROPPED, m.VALUES_CLIPPED)
        self._no_target: dict[str, Any] = {}
        self.writer = writer
        self.predictions = predictions if writer is not None else "none"
        self.max_devices = max_devices
        self.figures_interval = figures_interval
        self.latencies = latencies
        self.devices_held = 0
        self._dm: dict[str, _DeviceMetrics] = {}
        self._processed: dict[str, Any] = {}

    def device_metrics(self, device: str) -> _DeviceMetrics:
        dm = self._dm.get(device)
        if dm is None:
            dm = self._dm[device] = _DeviceMetrics(device_label(device))
        return dm

    def adopt(self, state: ShardState) -> None:
        """Count the devices a newly leased shard brings."""
        self.devices_held += len(state.devices)
        m.DEVICES_HELD.set(self.devices_held)
        for device, slot in state.devices.items():
            self._refresh(self.device_metrics(device), slot, force=True)

    def release(self, state: ShardState) -> None:
        self.devices_held -= len(state.devices)
        m.DEVICES_HELD.set(self.devices_held)

    # ------------------------------------------------------------------- hot path
    def handle(self, state: ShardState, seq: str, data: bytes, arrived: float | None = None) -> str:
        """Handle one record; returns its outcome (see the module docstring)."""
        if state.skip_through is not None and int(seq) <= state.skip_through:
            state.replayed += 1
            return "replayed"
        shard = state.shard_id
        counter = self._processed.get(shard)
        if counter is None:
            counter = self._processed[shard] = m.READINGS_PROCESSED.labels(shard)
        counter.inc()
        state.last_seq = seq
        state.since_checkpoint += 1
        try:
            reading = decode_payload(data)
        except InvalidReading as exc:
            state.dead_letters.append(dead_letter_line(data, exc.reason, str(exc), shard, seq))
            m.RECORDS_POISON.labels(shard, exc.reason).inc()
            return "poison"
        if reading.notes:
            self._notes.count(reading.notes)
        device = reading.device
        slot = state.devices.get(device)
        if slot is None:
            if getattr(reading, self.target) is None:
                return self._count_no_target(shard)
            if self.devices_held >= self.max_devices:
                message = (
                    f"this process already holds {self.devices_held} devices (--max-devices); "
                    "add processes or raise the limit"
                )
                state.dead_letters.append(
                    dead_letter_line(data, "device_limit", message, shard, seq)
                )
                m.RECORDS_POISON.labels(shard, "device_limit").inc()
                return "device_limit"
            slot = state.devices[device] = DeviceSlot(self._new_models(device))
            self.devices_held += 1
            m.DEVICES_HELD.set(self.devices_held)
        result = slot.models.step(reading)
        status = result.status
        if status == "no_target":
            return self._count_no_target(shard)
        dm = self.device_metrics(device)
        if status != "learned":
            getattr(dm, status).inc()
            return status
        state.dirty.add(device)
        dm.learned.inc()
        ts = reading.ts
        dm.actual.set(getattr(reading, self.target))  # learned: the target is there
        dm.last_ts.set(ts)
        now = time.time()
        dm.received.set(now)
        if dm.prev_ts is not None:
            gap = ts - dm.prev_ts
            dm.ewma = gap if dm.ewma is None else dm.ewma + 0.05 * (gap - dm.ewma)
        dm.prev_ts = ts
        dm.predictions = result.predictions  # gauges set with the figures (below)
        pairs = dm.pairs
        for s in result.scores:  # ScoreSeries.add, inlined: a dozen scores a reading
            key = (s.model, s.horizon)
            acc = (pairs.get(key) or dm.pair(*key))[0]
            residual = s.actual - s.predicted
            if residual == residual:
                acc[bisect_left(BOUNDS, residual)] += 1.0
            else:
                acc[NAN] += 1.0
            acc[SUM] += residual
        for e in result.events:
            if e.kind == "promotion":
                m.PROMOTIONS.labels(dm.label, e.model).inc()
            elif e.kind == "drift":
                m.DRIFTS.labels(dm.label, e.model).inc()
            elif e.kind == "model_reset":
                m.MODEL_RESETS.labels(dm.label, e.model, str(e.horizon), e.figures["reason"]).inc()
        if result.events or now - dm.figures_at >= self.figures_interval:
            self._refresh(dm, slot)
        else:
            dm.stale = True
        if self.predictions != "none" and result.predictions:
            self._emit(slot, reading, result.predictions)
        if arrived is not None:
            lat = time.monotonic() - arrived
            m.PROCESSING_SECONDS.observe(lat)
            if self.latencies is not None:
                self.latencies.append(lat)
        return status

    def _count_no_target(self, shard: str) -> str:
        counter = self._no_target.get(shard)
        if counter is None:
            counter = self._no_target[shard] = m.READINGS_NO_TARGET.labels(shard)
        counter.inc()
        return "no_target"

    def _emit(self, slot: DeviceSlot, reading: Any, predictions: Any) -> None:
        served_only = self.predictions == "champion"
        actual = getattr(reading, self.target)
        out = []
        for p in predictions:
            if (p.model == SERVED) != served_only:
                continue  # "champion": the served forecast only; "all": every model's
            out.append(
                {
                    "device": reading.device,
                    "ts": p.ts,
                    "model": p.source or p.model,
                    "horizon": p.horizon,
                    "prediction": p.value,
                    "target_ts": p.target_ts,
                    "actual": actual if p.horizon == 0 else None,
                }
            )
        if out:
            self.writer.add(out)

    # -------------------------------------------------------------------- figures
    def _refresh(self, dm: _DeviceMetrics, slot: DeviceSlot, force: bool = False) -> None:
        """Set the summary gauges of one device from its models' accumulators."""
        models = slot.models
        dm.figures_at = time.time()
        dm.stale = False
        for p in dm.predictions:
            dm.prediction(p.model, p.horizon).set(p.value)
        if dm.ewma is not None:
            dm.interval.set(dm.ewma)
        first = models.task.horizons[0]
        for h, hz in models.horizons.items():
            champion = hz.selector.champion
            for name in (*hz.names, SERVED):
                stats = hz.served if name == SERVED else hz.stats[name]
                if stats.n:
                    _, mae, rolling_mae, rolling_rmse = dm.pair(name, h)
                    mae.set(stats.mae)
                    rolling_mae.set(stats.rolling_mae)
                    rolling_rmse.set(stats.rolling_rmse)
                if h == first and name != SERVED:
                    dm.champion(name).set(1.0 if name == champion else 0.0)
        if force and models.last_ts is not None:
            dm.last_ts.set(models.last_ts)

    def refresh_figures(self, states: list[ShardState]) -> None:
        """Bring the summary gauges of devices learned since their last refresh up to date."""
        for state in states:
            for device, slot in state.devices.items():
                dm = self._dm.get(device)
                if dm is not None and dm.stale:
                    self._refresh(dm, slot)

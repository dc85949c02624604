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
5. figures: the fleet's (:mod:`stream.fleet`: readings by shard and
   outcome, the error histogram by model and horizon, events), the watched
   devices' series (:mod:`stream.watch`), and prediction records (to the
   output writer, when one is given).

Every decoded record has exactly one outcome: ``learned``, ``duplicate``,
``late``, ``glitch``, ``no_target`` or ``device_limit`` (``poison`` when it does
not decode), which is what the exactly-once accounting adds up.

The watched devices' summary gauges (MAE, rolling MAE/RMSE, champion, last
predictions) are read from the models' own accumulators, the ones the offline
evaluation uses, refreshed at most every ``figures_interval`` seconds and by
:meth:`StreamCore.refresh_figures` (called when the stream is idle).
:meth:`StreamCore.sweep` sets the fleet's gauges and finds quiet devices.

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

import contextlib
import logging
import time
from bisect import bisect_left
from typing import TYPE_CHECKING

from monitoring import metrics as m
from monitoring.metrics import FieldNotes
from online_models.records import SERVED, Event, Prediction, StepResult
from stream.fleet import Fleet
from stream.output import OutputRecord, RecordSink, dead_letter_line
from stream.state import DeviceSlot, ShardState
from stream.watch import WatchedDevice
from telemetry.reading import InvalidReading, Reading, decode_payload

if TYPE_CHECKING:
    from prometheus_client import Counter

    from online_models.catalog import Catalog
    from online_models.config import TaskConfig

__all__ = ["StreamCore"]

log = logging.getLogger(__name__)

BOUNDS, SUM, NAN = m.RESIDUAL_BOUNDS, m.SCORES.SUM, m.SCORES.NAN
OUTCOMES = (
    ("learned", m.READINGS_LEARNED),
    ("duplicate", m.READINGS_DUPLICATE),
    ("late", m.READINGS_LATE),
    ("glitch", m.READINGS_GLITCH),
    ("no_target", m.READINGS_NO_TARGET),
)


class StreamCore:
    """Handles records of leased shards (see the module docstring).

    ``predictions``: ``"champion"`` (the served forecast per horizon: the
    champion's, or persistence's where the champion has none; the record's
    ``model`` says which), ``"all"`` (every model's) or ``"none"``; records
    go to ``writer.add``, with the events (``"kind": "event"``).
    ``watch``: the devices that get per-device series.
    """

    def __init__(
        self,
        catalog: Catalog,
        task: TaskConfig,
        *,
        writer: RecordSink | None = None,
        predictions: str = "champion",
        max_devices: int = 100_000,
        models: str = "default",
        figures_interval: float = 1.0,
        latencies: list[float] | None = None,
        watch: frozenset[str] = frozenset(),
        worst_k: int = m.DEFAULT_WORST_K,
    ) -> None:
        from online_models.device import DeviceModels

        self._new_models = lambda device: DeviceModels(device, catalog, task, models=models)
        self.target = task.target
        self._notes = FieldNotes(m.VALUES_DROPPED, m.VALUES_CLIPPED)
        self.writer = writer
        self.predictions = predictions if writer is not None else "none"
        self.max_devices = max_devices
        self.figures_interval = figures_interval
        self._figures_at = 0.0
        self.latencies = latencies
        self.devices_held = 0
        self.fleet = Fleet(writer, worst_k)
        self.watch = watch
        self.watched: dict[str, WatchedDevice] = {d: WatchedDevice(d) for d in sorted(watch)}
        m.WATCHED.set(len(watch))
        self._stale: set[str] = set()  # watched devices learned since their last refresh
        self._outcomes: dict[str, dict[str, Counter]] = {}  # shard -> outcome -> counter child

    def adopt(self, state: ShardState) -> None:
        """Count the devices a newly leased shard brings (quiet from now if they stay silent)."""
        self.devices_held += len(state.devices)
        m.DEVICES_HELD.set(self.devices_held)
        m.SHARD_DEVICES.labels(state.shard_id).set(len(state.devices))
        now = time.time()
        for device, slot in state.devices.items():
            self.fleet.activity(device, now)
            watched = self.watched.get(device)
            if watched is not None:
                watched.refresh(slot.models)

    def release(self, state: ShardState) -> None:
        self.devices_held -= len(state.devices)
        m.DEVICES_HELD.set(self.devices_held)
        with contextlib.suppress(KeyError):  # a shard handed over before its first sweep
            m.SHARD_DEVICES.remove(state.shard_id)
        self.fleet.forget(state.devices)

    # ------------------------------------------------------------------- hot path
    def handle(self, state: ShardState, seq: str, data: bytes, arrived: float | None = None) -> str:
        """Handle one record; returns its outcome (see the module docstring)."""
        if state.skip_through is not None and int(seq) <= state.skip_through:
            state.replayed += 1
            return "replayed"
        shard = state.shard_id
        outcomes = self._outcomes.get(shard) or self._shard_outcomes(shard)
        outcomes["processed"].inc()
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
                outcomes["no_target"].inc()
                return "no_target"
            if self.devices_held >= self.max_devices:
                return self._device_limit(state, data, seq)
            slot = self._new_device(state, device, reading.ts)
        result = slot.models.step(reading)
        status = result.status
        outcomes[status].inc()
        watched = self.watched.get(device) if self.watch else None
        if status != "learned":
            if watched is not None and status != "no_target":
                watched.outcomes[status].inc()
            return status
        state.dirty.add(device)
        now = time.time()
        act = self.fleet.activities.get(device) or self.fleet.activity(device, now)
        act.arrived(reading.ts, now)
        self.fleet.score(result.scores)
        for e in result.events:
            self.fleet.event(state, device, e, now)
        if watched is not None:
            self._watched(watched, slot, reading, result, act.interval, now)
        if self.predictions != "none" and result.predictions:
            self._emit(reading, result.predictions)
        if arrived is not None:
            lat = time.monotonic() - arrived
            m.PROCESSING_SECONDS.observe(lat)
            if self.latencies is not None:
                self.latencies.append(lat)
        return status

    def _shard_outcomes(self, shard: str) -> dict[str, Counter]:
        children = {name: metric.labels(shard) for name, metric in OUTCOMES}
        children["processed"] = m.READINGS_PROCESSED.labels(shard)
        self._outcomes[shard] = children
        return children

    def _device_limit(self, state: ShardState, data: bytes, seq: str) -> str:
        message = (
            f"this process already holds {self.devices_held} devices (--max-devices); "
            "add processes or raise the limit"
        )
        state.dead_letters.append(
            dead_letter_line(data, "device_limit", message, state.shard_id, seq)
        )
        m.RECORDS_POISON.labels(state.shard_id, "device_limit").inc()
        return "device_limit"

    def _new_device(self, state: ShardState, device: str, ts: float) -> DeviceSlot:
        """A device's first reading of the target: a fresh model set, and an event."""
        slot = state.devices[device] = DeviceSlot(self._new_models(device))
        self.devices_held += 1
        m.DEVICES_HELD.set(self.devices_held)
        reason = f"first reading of the target ({self.target}): a fresh model set"
        self.fleet.event(state, device, Event("first_reading", "", 0, reason, {}, ts), time.time())
        return slot

    def _watched(
        self,
        w: WatchedDevice,
        slot: DeviceSlot,
        reading: Reading,
        result: StepResult,
        interval: float | None,
        now: float,
    ) -> None:
        w.learned(getattr(reading, self.target), reading.ts, now, interval)
        w.predictions = result.predictions  # gauges set with the figures (below)
        errors = w.errors
        for s in result.scores:  # ScoreSeries.add, inlined
            key = (s.model, s.horizon)
            acc = (errors.get(key) or w.error_children(*key))[0]
            residual = s.actual - s.predicted
            if residual == residual:
                acc[bisect_left(BOUNDS, residual)] += 1.0
            else:
                acc[NAN] += 1.0
            acc[SUM] += residual
        self._stale.add(w.device)
        if result.events or now - self._figures_at >= self.figures_interval:
            self._figures_at = now
            self._stale.discard(w.device)
            w.refresh(slot.models)

    def _emit(self, reading: Reading, predictions: tuple[Prediction, ...]) -> None:
        served_only = self.predictions == "champion"
        actual = getattr(reading, self.target)
        out: list[OutputRecord] = []
        for p in predictions:
            if (p.model == SERVED) != served_only:
                continue  # "champion": the served forecast only; "all": every model's
            out.append(
                {
                    "kind": "prediction",
                    "device": reading.device,
                    "ts": p.ts,
                    "model": p.source or p.model,
                    "horizon": p.horizon,
                    "prediction": p.value,
                    "target_ts": p.target_ts,
                    "actual": actual if p.horizon == 0 else None,
                }
            )
        if out and self.writer is not None:  # a writer: predictions are not "none"
            self.writer.add(out)

    # -------------------------------------------------------------------- figures
    def event(self, state: ShardState, device: str, event: Event) -> None:
        """An event that did not come from a reading (an operator's promotion, say)."""
        self.fleet.event(state, device, event, time.time())

    def refresh_watched(self, state: ShardState, device: str) -> None:
        """A watched device's summary gauges, now (an operator changed its models)."""
        watched = self.watched.get(device)
        if watched is not None and device in state.devices:
            self._stale.discard(device)
            watched.refresh(state.devices[device].models)

    def refresh_figures(self, states: list[ShardState]) -> None:
        """Bring the watched devices' summary gauges up to date."""
        if not self.watched:
            return
        for state in states:
            for device in self.watch.intersection(state.devices):
                if device in self._stale:
                    self._stale.discard(device)
                    self.watched[device].refresh(state.devices[device].models)

    def sweep(self, states: list[ShardState]) -> None:
        """The fleet's gauges (quiet, reset, champions, worst-k) and quiet-device events."""
        self.fleet.sweep(states)

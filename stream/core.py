"""The processor's core: one Kinesis record of one shard at a time, through its parts.

:class:`StreamCore` does no network I/O of its own (the benchmark runs it bare); the
batch loop that feeds it is :mod:`stream.runner`'s. A record goes:

1. through the gate (:mod:`stream.gate`): a record at or below the shard manifest's
   sequence number is already in the models, skipped whole (``replayed``); a packed
   record addressed to another shard is a stray copy left by a reshard, counted and
   skipped whole (``misrouted``: the bridge sent its readings again to their shard);
   else it is unpacked and decoded into what it holds, one item per reading (a packed
   record holds many, a device's batch several): readings, each judged on its own,
   and dead letters (reason, shard, sequence number and the part's index; written with
   the next checkpoint);
2. each reading: the values validation dropped or clipped (``Reading.notes``) are
   counted by field and reason; a reading without the task's target (``temp`` by
   default) of a device that has no model set yet is ``no_target`` and goes no
   further; else the device registry (:mod:`stream.devices`) gives the device's
   slot, a fresh model set for a new device (up to ``max_devices`` per process,
   beyond which the reading is dead-lettered as ``device_limit``);
3. the device's :class:`~online_models.device.DeviceModels` steps the reading: it
   drops a not-newer (device, ts) as duplicate or late, glitches and readings
   without the target (``no_target``), else predicts, and scores and learns unless
   its anomaly watch holds the reading back (``held``: predicted from, not learned),
   and returns a :class:`~online_models.records.StepResult` (anomalies among its
   events);
4. what it returned is reported: every metric through :class:`~stream.fleet.Fleet`
   (readings by shard and outcome, the error histogram by model and horizon,
   events), the watched devices' series through their
   :class:`~stream.watch.WatchedDevice` (their model figures are read at scrape
   time, :data:`stream.watch.WATCHED`), and the output records
   (:mod:`stream.records`) to the writer, when one is given.

Every decoded reading (part) has exactly one outcome: ``learned``, ``held``,
``duplicate``, ``late``, ``glitch``, ``no_target``, ``device_limit`` or ``poison`` (the
part is not a reading; a record that cannot be unpacked is one part), which is what the
exactly-once accounting adds up: per shard, ``iotcast_readings_processed_total`` (parts)
= learned + held + duplicate + late + glitch + no_target + dead-lettered
(``iotcast_records_poison_total``, ``device_limit`` included). Records are counted apart
(``iotcast_records_processed_total``, the stray ones in ``iotcast_records_misrouted_total``).
A record is all or nothing: :meth:`StreamCore.handle` runs all of its readings,
synchronously, before the shard's position (``last_seq``) moves past it, and the batch
loop checkpoints only between records. It returns the record's outcome: ``replayed``,
``misrouted``, the outcome its readings share (a record of one reading: that
reading's), or ``mixed``. :meth:`StreamCore.sweep` sets the fleet's gauges, finds
quiet devices and asks each device's watch whether it has gone silent.

**The silent-device sweep runs on each shard's event time**, the newest reading's
``ts`` handled on that shard (:meth:`StreamCore.clock`), not the wall clock: a device
is silent when the devices beside it have moved on by many times its usual interval
while it sent nothing. The wall clock would call every device of a replay or of a
backlog being caught up silent (their readings' times lie in the past), and would
make the processor's events differ from ``iotcast evaluate``'s on the same readings.
What event time cannot see, a shard where nothing at all arrives, is the wall-clock
``quiet`` event's and the lag alerts' to catch.

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
>>> from telemetry.envelope import pack
>>> later = Reading(1594512005.0, "d1", 0.005, 51.0, False, 0.007, False, 0.02, 22.6)
>>> core.handle(st, "5", pack([encode(later), b"{"], "shardId-0")), len(st.dead_letters)
('mixed', 2)
>>> core.handle(st, "6", pack([encode(later)], "shardId-9")), st.last_seq
('misrouted', '6')
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from monitoring import metrics as m
from online_models.records import SERVED, Event, Prediction
from stream.devices import DeviceRegistry
from stream.fleet import Fleet, ShardCounts
from stream.gate import DeadLetter, Gate
from stream.output import RecordSink
from stream.records import PredictionRecord
from stream.state import DeviceSlot, ShardState
from telemetry.reading import Reading, encode

if TYPE_CHECKING:
    from online_models.catalog import Catalog
    from online_models.config import TaskConfig
    from stream.batch_watch import BatchWatch

__all__ = ["StreamCore"]


class StreamCore:
    """Handles records of leased shards (see the module docstring).

    ``predictions``: ``"champion"`` (the served forecast per horizon: the
    champion's, or persistence's where the champion has none; the record's
    ``model`` says which), ``"all"`` (every model's) or ``"none"``; records
    go to ``writer.add``, with the events (``"kind": "event"``).
    ``watch``: the devices that get per-device series. ``latencies``: a list the
    processing time of every learned record is appended to (benchmarks).
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
        latencies: list[float] | None = None,
        watch: frozenset[str] = frozenset(),
        worst_k: int = m.DEFAULT_WORST_K,
    ) -> None:
        self.target = task.target
        self.levels = task.interval_levels  # of the served forecasts' intervals
        self.gate = Gate()
        self.devices = DeviceRegistry(catalog, task, models=models, max_devices=max_devices)
        self.fleet = Fleet(writer, worst_k)
        self.writer = writer
        self.predictions = predictions if writer is not None else "none"
        self.latencies = latencies
        self.watch = watch
        self.watched = self.fleet.watching(watch)
        self._clock: dict[str, float] = {}  # per shard, the newest reading's event time
        # the batch models' shadow and verdicts (stream.batch_watch), with --batch-expert
        self.batch: BatchWatch | None = None

    @property
    def devices_held(self) -> int:
        return self.devices.held

    def adopt(self, state: ShardState) -> None:
        """Count the devices a newly leased shard brings (quiet from now if they stay silent)."""
        self.devices.adopt(state)
        self.fleet.held(self.devices.held)
        self.fleet.shard_held(state.shard_id, len(state.devices))
        now = time.time()
        for device, slot in state.devices.items():
            self.fleet.activity(device, now)
            watched = self.watched.get(device)
            if watched is not None:
                watched.slot = slot

    def release(self, state: ShardState) -> None:
        self._clock.pop(state.shard_id, None)
        self.devices.release(state)
        self.fleet.held(self.devices.held)
        self.fleet.shard_held(state.shard_id, None)
        self.fleet.forget(state.devices)

    # ------------------------------------------------------------------- hot path
    def handle(self, state: ShardState, seq: str, data: bytes, arrived: float | None = None) -> str:
        """Handle one record, all of its readings; returns the record's outcome (see the module
        docstring)."""
        if self.gate.replayed(state, seq):
            state.replayed += 1
            return "replayed"
        shard = state.shard_id
        counts = self.fleet.counts(shard)
        counts["records"].inc()
        opened = self.gate.open(data, shard, seq)
        if opened.misrouted is not None:  # a stray copy: its readings are on their shard
            counts["misrouted"].inc()
            status = "misrouted"
        else:
            items = opened.items
            counts["processed"].inc(len(items))
            status = ""
            learned = False
            for part, item in enumerate(items):
                if isinstance(item, DeadLetter):
                    self._dead_letter(state, item)
                    outcome = "poison"
                else:
                    where = None if opened.single else part
                    outcome = self._reading(state, counts, item, data, seq, where)
                    learned = learned or outcome == "learned"
                status = outcome if not status or status == outcome else "mixed"
            if learned and arrived is not None:
                lat = time.monotonic() - arrived
                self.fleet.latency(lat)
                if self.latencies is not None:
                    self.latencies.append(lat)
        # All-or-nothing: the record was handled whole, synchronously (nothing above awaits),
        # and only now does the shard's position move past it; a checkpoint (S3 manifest, then
        # DynamoDB) is taken only between records (stream.batches), so it never falls inside one.
        state.last_seq = seq
        state.since_checkpoint += max(1, len(opened.items))  # readings: --checkpoint-every
        return status

    def _reading(
        self,
        state: ShardState,
        counts: ShardCounts,
        reading: Reading,
        data: bytes,
        seq: str,
        part: int | None,
    ) -> str:
        """One reading of the record (its ``part``; None: the record is this one reading): its
        device's models step it; the outcome is reported."""
        if reading.notes:
            self.fleet.notes(reading.notes)
        device = reading.device
        slot = state.devices.get(device)
        if slot is None:
            if getattr(reading, self.target) is None:
                counts["no_target"].inc()
                return "no_target"
            slot = self._new_device(state, device, reading.ts)
            if slot is None:
                message = self.devices.limit_message()
                raw = data if part is None else encode(reading)
                refused = self.gate.refuse(
                    raw, "device_limit", message, state.shard_id, seq, part=part
                )
                self._dead_letter(state, refused)
                return "device_limit"
        result = slot.models.step(reading)
        status = result.status
        counts[status].inc()
        watched = self.watched.get(device) if self.watch else None
        if status != "learned" and status != "held":
            if watched is not None and status != "no_target":
                watched.outcomes[status].inc()
            return status
        state.dirty.add(device)
        now = time.time()
        shard = state.shard_id
        if reading.ts > self._clock.get(shard, -math.inf):
            self._clock[shard] = reading.ts
        act = self.fleet.arrived(device, reading.ts, now)
        self.fleet.score(result.scores)
        if self.batch is not None and result.scores:
            self.batch.observe(result.scores, reading.ts)
        for e in result.events:
            self.fleet.event(state, device, e, now)
        if watched is not None:
            watched.learned(slot, getattr(reading, self.target), now, act.interval, result)
        if self.predictions != "none" and result.predictions:
            self._emit(reading, result.predictions)
        return status

    def _dead_letter(self, state: ShardState, dead: DeadLetter) -> None:
        state.dead_letters.append(dead.line)
        self.fleet.dead_letter(state.shard_id, dead.reason)

    def _new_device(self, state: ShardState, device: str, ts: float) -> DeviceSlot | None:
        """A device's first reading of the target: a fresh model set, and an event."""
        slot = self.devices.create(state, device)
        if slot is not None:
            self.fleet.held(self.devices.held)
            reason = f"first reading of the target ({self.target}): a fresh model set"
            self.event(state, device, Event("first_reading", "", 0, reason, {}, ts))
        return slot

    def _emit(self, reading: Reading, predictions: tuple[Prediction, ...]) -> None:
        """One prediction record for the reading, every horizon's forecast in it."""
        served_only = self.predictions == "champion"
        made = [p for p in predictions if (p.model == SERVED) == served_only]
        if made and self.writer is not None:  # a writer: predictions are not "none"
            actual = getattr(reading, self.target)
            record = PredictionRecord.of(reading.device, reading.ts, actual, made, self.levels)
            self.writer.add((record,))

    # -------------------------------------------------------------------- figures
    def event(self, state: ShardState, device: str, event: Event) -> None:
        """An event that did not come from a reading (an operator's promotion, say)."""
        self.fleet.event(state, device, event, time.time())

    def clock(self, shard: str) -> float | None:
        """The shard's event time: the newest reading's ``ts`` handled on it (None before one)."""
        return self._clock.get(shard)

    def sweep(self, states: list[ShardState]) -> None:
        """Silent devices by each shard's event time (an anomaly event each, see the module
        docstring), then the fleet's gauges (quiet, reset, anomalies going on, champions,
        worst-k) and quiet-device events."""
        now = time.time()
        for state in states:
            clock = self._clock.get(state.shard_id)
            if clock is None:
                continue
            for device, slot in state.devices.items():
                event = slot.models.silence(clock)
                if event is not None:
                    state.dirty.add(device)  # the watch changed: the next checkpoint saves it
                    self.fleet.event(state, device, event, now)
        self.fleet.sweep(states)

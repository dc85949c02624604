"""Fleet figures and per-device events: what the processor reports about all its devices.

The series here do not grow with the devices: they are labelled by model,
horizon, shard, kind or reason (``monitoring.metrics``). What is about one
device goes out as an event record (:mod:`stream.events`) and, for the k
worst devices now, as a rotating set of gauges.

:class:`Fleet` is the one writer of the processor core's metrics: the core
(:mod:`stream.core`) reports through it and touches no metric itself. It
holds a small :class:`Activity` per device (its cadence, when it last sent,
whether it went quiet, when a model of it was last reset) and:

- :meth:`Fleet.counts` gives a shard's counters (records handled and misrouted,
  readings decoded and by outcome); :meth:`Fleet.dead_letter`, :meth:`Fleet.notes` (values the validation
  dropped or clipped), :meth:`Fleet.held`, :meth:`Fleet.shard_held` and
  :meth:`Fleet.latency` count and set the rest of what a record moves;
- :meth:`Fleet.watching` makes the watched devices'
  :class:`~stream.watch.WatchedDevice` (the writers of their own series; their
  model figures are read at scrape time, :data:`stream.watch.WATCHED`);
- :meth:`Fleet.score` adds scored predictions to the fleet's absolute-error
  histogram (``iotcast_error_celsius{model, horizon}``): the same scores
  ``iotcast evaluate`` averages, so ``_sum / _count`` of ``model="served"`` is
  the score-weighted mean of the devices' prequential MAEs;
- :meth:`Fleet.event` counts an event and records it: the shard's next
  checkpoint writes it to S3, the processor's log gets a JSON line, the
  predictions stream a record of ``"kind": "event"``; an anomaly (a kind of
  :data:`~stream.events.ANOMALY_KINDS`) is also counted once by kind in
  ``iotcast_anomaly_events_total``, at its first record (its start, or its
  whole when it is known only at its end);
- :meth:`Fleet.sweep` (every few seconds) finds devices gone quiet (an
  event each), and sets the per-process gauges: devices quiet, devices with a
  reset in the last hour, devices per shard, devices with an anomaly going on
  by kind, champions by model and horizon, and the worst-k devices per
  horizon (served rolling MAE over persistence's).

>>> fleet = Fleet(worst_k=2)
>>> a = fleet.activity("d1"); a.arrived(100.0, now=1000.0); a.arrived(130.0, now=1001.0)
>>> a.interval
30.0
>>> a.quiet_after()
300.0
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from monitoring import metrics as m
from monitoring.metrics import FieldNotes
from online_models.records import SERVED, Event, Score
from stream.events import ANOMALY_KINDS, event_line
from stream.records import EventRecord
from stream.state import ShardState
from stream.watch import WATCHED, WatchedDevice

if TYPE_CHECKING:
    from prometheus_client import Counter as PromCounter

    from online_models.device import DeviceModels
    from stream.output import RecordSink

__all__ = ["OUTCOMES", "Activity", "Fleet", "ShardCounts"]

log = logging.getLogger("iotcast.events")

BASELINE = "persistence"  # the bar of the worst-k ratio
QUIET_FACTOR = 10.0  # quiet: no reading for this many usual intervals
QUIET_MIN = 60.0  # ... and at least this long (seconds)
QUIET_UNKNOWN = 300.0  # ... or this long while the interval is not known
RESET_WINDOW = 3600.0
MIN_INTERVALS = 5  # readings before the smoothed interval counts as the device's cadence
EB, ESUM, ENAN = m.ERROR_BOUNDS, len(m.ERROR_BOUNDS), len(m.ERROR_BOUNDS) + 1
# A decoded reading's outcomes (DeviceModels.step's, and no_target before a device has models).
OUTCOMES = (
    ("learned", m.READINGS_LEARNED),
    ("held", m.READINGS_HELD),
    ("duplicate", m.READINGS_DUPLICATE),
    ("late", m.READINGS_LATE),
    ("glitch", m.READINGS_GLITCH),
    ("no_target", m.READINGS_NO_TARGET),
)
# A shard's counters, looked up once: "records" (handled), "misrouted" (stray records),
# "processed" (readings, parts of records) and each outcome (readings).
ShardCounts = dict[str, "PromCounter"]


class Activity:
    """When a device sends, its usual cadence, and what the sweep has said about it."""

    __slots__ = ("prev_ts", "interval", "n", "received", "quiet", "reset_at")

    def __init__(self, now: float) -> None:
        self.prev_ts: float | None = None
        self.interval: float | None = None  # smoothed gap between readings (event time)
        self.n = 0
        self.received = now  # wall clock of the newest reading (or of taking the device on)
        self.quiet = False
        self.reset_at = 0.0  # wall clock of the newest model reset

    def arrived(self, ts: float, now: float) -> None:
        if self.prev_ts is not None:
            gap = ts - self.prev_ts
            self.interval = (
                gap if self.interval is None else self.interval + 0.05 * (gap - self.interval)
            )
            self.n += 1
        self.prev_ts = ts
        self.received = now
        self.quiet = False

    def quiet_after(self) -> float:
        """Seconds of silence after which the device counts as quiet."""
        if self.interval is None or self.n < MIN_INTERVALS:
            return QUIET_UNKNOWN
        return max(QUIET_FACTOR * self.interval, QUIET_MIN)


class Fleet:
    """The fleet's figures and events (see the module docstring)."""

    def __init__(self, writer: RecordSink | None = None, worst_k: int = m.DEFAULT_WORST_K) -> None:
        self.writer = writer
        self.worst_k = worst_k
        self.activities: dict[str, Activity] = {}
        self._errors: dict[tuple[str, int], list[float]] = {}
        self._kinds: dict[str, PromCounter] = {}
        self._counts: dict[str, ShardCounts] = {}
        self._notes = FieldNotes(m.VALUES_DROPPED, m.VALUES_CLIPPED)
        self._anomalies = {kind: m.ANOMALY_EVENTS.labels(kind) for kind in ANOMALY_KINDS}  # at 0

    def activity(self, device: str, now: float | None = None) -> Activity:
        act = self.activities.get(device)
        if act is None:
            act = self.activities[device] = Activity(time.time() if now is None else now)
        return act

    def watching(self, devices: frozenset[str]) -> dict[str, WatchedDevice]:
        """The watch list's devices, their series exported from now on."""
        m.WATCHED.set(len(devices))
        watched = {d: WatchedDevice(d) for d in sorted(devices)}
        for w in watched.values():
            WATCHED.add(w)
        return watched

    # ------------------------------------------------------------------ hot path
    def counts(self, shard: str) -> ShardCounts:
        """The shard's counters: ``records`` (handled), ``misrouted`` (stray records skipped),
        ``processed`` (readings decoded: parts of records) and readings by outcome."""
        counts = self._counts.get(shard)
        if counts is None:
            counts = {name: metric.labels(shard) for name, metric in OUTCOMES}
            counts["processed"] = m.READINGS_PROCESSED.labels(shard)
            counts["records"] = m.RECORDS_PROCESSED.labels(shard)
            counts["misrouted"] = m.RECORDS_MISROUTED.labels(shard)
            self._counts[shard] = counts
        return counts

    def dead_letter(self, shard: str, reason: str) -> None:
        """A part of a record (a reading, or a record refused whole) dead-lettered for
        ``reason``."""
        m.RECORDS_POISON.labels(shard, reason).inc()

    def notes(self, notes: tuple[tuple[str, str], ...]) -> None:
        """A decoded reading's dropped and clipped values (``Reading.notes``)."""
        self._notes.count(notes)

    def arrived(self, device: str, ts: float, now: float) -> Activity:
        """A reading of ``device`` learned: its activity, updated."""
        act = self.activities.get(device)
        if act is None:
            act = self.activities[device] = Activity(now)
        act.arrived(ts, now)
        return act

    def latency(self, seconds: float) -> None:
        """From a record's arrival in the processor to its figures being updated."""
        m.PROCESSING_SECONDS.observe(seconds)

    def held(self, devices: int) -> None:
        """Devices whose models this process holds."""
        m.DEVICES_HELD.set(devices)

    def shard_held(self, shard: str, devices: int | None) -> None:
        """Devices of a shard held now (None: the shard was handed over)."""
        if devices is not None:
            m.SHARD_DEVICES.labels(shard).set(devices)
            return
        with contextlib.suppress(KeyError):  # a shard handed over before its first sweep
            m.SHARD_DEVICES.remove(shard)

    def score(self, scores: Iterable[Score]) -> None:
        """Add scored predictions to the fleet's absolute-error histogram (``ScoreSeries.add``,
        inlined: a dozen scores a reading)."""
        errors = self._errors
        for s in scores:
            key = (s.model, s.horizon)
            acc = errors.get(key)
            if acc is None:
                acc = errors[key] = m.ERRORS.series(s.model, str(s.horizon))
            error = abs(s.actual - s.predicted)
            if error == error:
                acc[bisect_left(EB, error)] += 1.0
                acc[ESUM] += error
            else:
                acc[ENAN] += 1.0

    def event(self, state: ShardState, device: str, event: Event, now: float) -> None:
        """Count one event and record it (S3 with the next checkpoint, log, predictions stream)."""
        kind = event.kind
        if kind == "promotion":
            m.PROMOTIONS.labels(event.model).inc()
        elif kind == "drift":
            m.DRIFTS.labels(event.model).inc()
        elif kind == "model_reset":
            m.MODEL_RESETS.labels(event.model, str(event.horizon), event.figures["reason"]).inc()
            self.activity(device, now).reset_at = now
        elif kind in self._anomalies and event.figures.get("phase") != "end":
            self._anomalies[kind].inc()
        counter = self._kinds.get(kind)
        if counter is None:
            counter = self._kinds[kind] = m.EVENTS.labels(kind)
        counter.inc()
        record = EventRecord.of(device, event, state.shard_id, now)
        line = event_line(record)  # encoded once: S3 with the next checkpoint, and the log
        state.events.append(line)
        log.info("%s", line[:-1].decode())
        if self.writer is not None:
            self.writer.add([record])

    # --------------------------------------------------------------------- sweep
    def sweep(self, states: Iterable[ShardState], now: float | None = None) -> None:
        """Quiet devices (an event each as they go quiet) and the per-process gauges."""
        now = time.time() if now is None else now
        quiet = reset = 0
        champions: Counter[tuple[str, int]] = Counter()
        ratios: dict[int, list[tuple[float, float, str]]] = {}
        bands: dict[tuple[int, float], list[float]] = {}  # scored, hits, width sum
        ongoing: Counter[str] = Counter(dict.fromkeys(ANOMALY_KINDS, 0))
        for state in states:
            m.SHARD_DEVICES.labels(state.shard_id).set(len(state.devices))
            for device, slot in state.devices.items():
                act = self.activity(device, now)
                if now - act.received > act.quiet_after():
                    if not act.quiet:
                        act.quiet = True
                        self._quiet(state, device, act, now)
                    quiet += 1
                if now - act.reset_at < RESET_WINDOW:
                    reset += 1
                self._figures(slot.models, device, champions, ratios)
                self._bands(slot.models, bands)
                if slot.models.ongoing:
                    ongoing.update({kind for kind, _ in slot.models.ongoing})
        m.DEVICES_QUIET.set(quiet)
        for kind, devices in ongoing.items():
            m.ANOMALIES_ONGOING.labels(kind).set(devices)
        for (h, level), (n, hits, width) in bands.items():
            if n:
                m.INTERVAL_COVERAGE.labels(str(h), str(level)).set(hits / n)
                m.INTERVAL_WIDTH.labels(str(h), str(level)).set(width / n)
        m.DEVICES_RESET.set(reset)
        self._champions(champions)
        self._worst(ratios)

    def forget(self, devices: Iterable[str]) -> None:
        """Devices handed over to another process: their activity goes with them."""
        for device in devices:
            self.activities.pop(device, None)

    def _quiet(self, state: ShardState, device: str, act: Activity, now: float) -> None:
        silent = now - act.received
        figures = {"silent_seconds": round(silent, 1), "usual_interval_seconds": act.interval}
        reason = f"no reading for {silent:.0f} s (quiet after {act.quiet_after():.0f} s)"
        self.event(state, device, Event("quiet", "", 0, reason, figures), now)

    def _figures(
        self,
        models: DeviceModels,
        device: str,
        champions: Counter[tuple[str, int]],
        ratios: dict[int, list[tuple[float, float, str]]],
    ) -> None:
        for h in models.horizons:
            champions[(models.champion(h), h)] += 1
            served = models.stats(SERVED, h).rolling_mae
            try:
                base = models.stats(BASELINE, h)
            except KeyError:  # the baseline does not run at this horizon
                continue
            if served is None or not base.n or not base.rolling_mae:
                continue
            ratios.setdefault(h, []).append((served / base.rolling_mae, served, device))

    _seen_champions: frozenset[tuple[str, int]] = frozenset()

    @staticmethod
    def _bands(models: DeviceModels, bands: dict[tuple[int, float], list[float]]) -> None:
        for h in models.horizons:
            band = models.interval(h)
            n = band.scored
            for level in band.levels:
                if n:
                    acc = bands.setdefault((h, level), [0.0, 0.0, 0.0])
                    acc[0] += n
                    acc[1] += n * (band.coverage(level) or 0.0)
                    acc[2] += n * (band.width(level) or 0.0)

    def _champions(self, champions: Counter[tuple[str, int]]) -> None:
        for model, h in self._seen_champions - champions.keys():
            m.CHAMPIONS.labels(model, str(h)).set(0)
        for (model, h), n in champions.items():
            m.CHAMPIONS.labels(model, str(h)).set(n)
        self._seen_champions = frozenset(self._seen_champions | champions.keys())

    def _worst(self, ratios: dict[int, list[tuple[float, float, str]]]) -> None:
        rows = [
            (str(h), str(rank), device, ratio, mae)
            for h, values in sorted(ratios.items())
            for rank, (ratio, mae, device) in enumerate(heapq.nlargest(self.worst_k, values), 1)
        ]
        m.WORST_RATIO.clear()
        m.WORST_MAE.clear()
        for h, rank, device, ratio, mae in rows:
            m.WORST_RATIO.labels(h, rank, device).set(ratio)
            m.WORST_MAE.labels(h, rank, device).set(mae)

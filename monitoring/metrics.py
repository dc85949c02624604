"""Every ``iotcast_*`` Prometheus metric, declared once, in one place.

Dashboards and alert rules refer to these names; code elsewhere only calls
``.labels(...).set/inc/observe``.  Names carry base units (``_seconds``,
``_celsius``), counters end in ``_total``, labels are ``model``, ``horizon``
(seconds, as a string; ``0`` is the nowcast), ``shard``, ``reason``, ``code``,
``kind``, ``field`` (one of :data:`FIELD_LABELS`: a sensor of the data contract,
or ``extra`` for any other field a device sends) and, on the few series that
name devices, ``device`` and ``rank``.

A processor's series do not grow with its devices (``docs/monitoring.md``):

- fleet figures: readings by shard and outcome, the error distribution of
  every model by horizon (:data:`ERROR`, a histogram: the served forecast's
  and persistence's side by side), champions, promotions, drifts, resets and
  events by kind; per shard: devices, lag, checkpoint age;
- the k worst devices now (:data:`WORST_RATIO`): k x horizons gauges whose
  device label rotates;
- the per-device series of the watched devices only (at most
  :data:`MAX_WATCHED`, ``--watch``).

What happens to any one device (first reading, promotion, drift, reset, gone
quiet) is an event record (:mod:`stream.events`), not a series.
"""

from __future__ import annotations

import math
import threading
import time
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

from telemetry.reading import SENSORS

__all__ = [
    "Declared",
    "declared",
    "DEFAULT_WORST_K",
    "ERRORS",
    "ERROR_BOUNDS",
    "FIELD_LABELS",
    "FieldNotes",
    "MAX_WATCHED",
    "RESIDUAL_BOUNDS",
    "SCORES",
    "ScoreSeries",
    "created_samples",
    "field_label",
    "labelnames",
]

# The ``field`` label of the dropped/clipped counters: a sensor of the data contract, or
# "extra" for any other field (their names come from devices: never a label of their own).
FIELD_LABELS = (*SENSORS, "extra")
_SENSOR_FIELDS = frozenset(SENSORS)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_RESIDUAL_BUCKETS = (-5, -2, -1, -0.5, -0.25, -0.1, 0, 0.1, 0.25, 0.5, 1, 2, 5)
RESIDUAL_BOUNDS = tuple(float(b) for b in _RESIDUAL_BUCKETS) + (math.inf,)
_ERROR_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10)
ERROR_BOUNDS = tuple(float(b) for b in _ERROR_BUCKETS) + (math.inf,)
_FLEET_LABELS = ("model", "horizon")  # of the fleet's error histogram
_DEVICE_LABELS = ("device", "model", "horizon")  # of a watched device's residual histogram
MAX_WATCHED = 50  # devices on the watch list, at most (each costs the per-device series)
DEFAULT_WORST_K = 5


@dataclass(frozen=True)
class Declared:
    """What a metric was declared as: its name, kind and label names."""

    name: str
    kind: str  # counter, gauge, histogram
    labelnames: tuple[str, ...]


_DECLARED: dict[str, Declared] = {}
_M = TypeVar("_M", Counter, Gauge, Histogram)


def _declare(
    cls: type[_M], name: str, documentation: str, labelnames: Sequence[str] = (), **kwargs: Any
) -> _M:
    """Declare a metric (``cls(name, documentation, labelnames, **kwargs)``) and note it."""
    metric = cls(name, documentation, labelnames, **kwargs)
    (family,) = metric.describe()
    _DECLARED[family.name] = Declared(family.name, family.type, tuple(labelnames))
    return metric


# ----------------------------------------------------------------------- bridge
BRIDGE_RECEIVED = _declare(
    Counter, "iotcast_bridge_messages_received_total", "MQTT messages received by the bridge."
)
BRIDGE_FORWARDED = _declare(
    Counter, "iotcast_bridge_readings_forwarded_total", "Readings accepted by Kinesis (PutRecords)."
)
BRIDGE_DEAD_LETTERS = _declare(
    Counter,
    "iotcast_bridge_dead_letters_total",
    "Messages written to the dead letter, by validation reason.",
    ["reason"],
)
BRIDGE_RETRIES = _declare(
    Counter,
    "iotcast_bridge_retries_total",
    "Records or calls retried, by error code (e.g. ProvisionedThroughputExceededException).",
    ["code"],
)
BRIDGE_BUFFER = _declare(
    Gauge, "iotcast_bridge_buffer_records", "Records waiting in the bridge's buffer."
)
BRIDGE_BUFFER_CAPACITY = _declare(
    Gauge,
    "iotcast_bridge_buffer_capacity_records",
    "Capacity of the bridge's buffer (backpressure above it).",
)
BRIDGE_PUT_SECONDS = _declare(
    Histogram,
    "iotcast_bridge_put_records_seconds",
    "PutRecords call latency.",
    buckets=_LATENCY_BUCKETS,
)
BRIDGE_OLDEST_UNACKED = _declare(
    Gauge,
    "iotcast_bridge_oldest_unacked_age_seconds",
    "Age of the oldest MQTT message received but not yet acknowledged.",
)
BRIDGE_MQTT_CONNECTED = _declare(
    Gauge, "iotcast_bridge_mqtt_connected", "1 while the bridge is connected to the MQTT broker."
)
BRIDGE_KINESIS_UP = _declare(
    Gauge,
    "iotcast_bridge_kinesis_up",
    "1 while the last Kinesis call succeeded, 0 after a failed one.",
)
BRIDGE_VALUES_DROPPED = _declare(
    Counter,
    "iotcast_bridge_values_dropped_total",
    "Sensor values the bridge's validation dropped from readings it forwarded (the reading went "
    "on with its other fields), by field (a sensor, or extra) and reason (wrong_type, "
    "not_finite, out_of_range). Such a reading is forwarded as its original payload.",
    ["field", "reason"],
)
BRIDGE_VALUES_CLIPPED = _declare(
    Counter,
    "iotcast_bridge_values_clipped_total",
    "Sensor values just beyond a physical limit, within the sensor's tolerance (relative "
    "humidity 100.5 %), clipped to the limit by the bridge's validation, by field and reason "
    "(clipped). Such a reading is forwarded as its original payload.",
    ["field", "reason"],
)
BRIDGE_REORDERED = _declare(
    Counter,
    "iotcast_bridge_reordered_total",
    "Records that landed behind a newer record of their device: PutRecords refused them "
    "mid-run (InternalFailure) while later ones were accepted.",
)

# -------------------------------------------------------------------- processor
# Fleet figures: their series depend on shards, models, horizons and reasons, never on
# devices.  Per-device detail is for the watched devices only (below), the k worst devices
# (WORST_*) and the event log (stream.events).
RECORDS_PROCESSED = _declare(
    Counter,
    "iotcast_records_processed_total",
    "Kinesis records handled by the processor (a packed record holds many readings; the "
    "misrouted ones included, the replayed ones not), by shard.",
    ["shard"],
)
RECORDS_MISROUTED = _declare(
    Counter,
    "iotcast_records_misrouted_total",
    "Packed Kinesis records skipped whole because their header names another shard: stray "
    "copies a reshard left, whose readings the bridge sent again to their shard, by shard.",
    ["shard"],
)
READINGS_PROCESSED = _declare(
    Counter,
    "iotcast_readings_processed_total",
    "Readings decoded by the processor (parts of records: a packed record's readings, a "
    "device batch's; a record refused whole counts as one), by shard. Each has one outcome: "
    "learned, held, duplicate, late, glitch, no_target, or dead-lettered "
    "(iotcast_records_poison_total).",
    ["shard"],
)
READINGS_LEARNED = _declare(
    Counter,
    "iotcast_readings_learned_total",
    "Readings learned (each exactly once), by shard.",
    ["shard"],
)
READINGS_HELD = _declare(
    Counter,
    "iotcast_readings_held_total",
    "Readings predicted from but not learned because the device's anomaly watch held them "
    "back (a suspected spike, a stuck sensor's values), by shard.",
    ["shard"],
)
READINGS_DUPLICATE = _declare(
    Counter,
    "iotcast_readings_duplicate_total",
    "Readings not learned because (device, ts) was already learned, by shard.",
    ["shard"],
)
READINGS_LATE = _declare(
    Counter,
    "iotcast_readings_late_total",
    "Readings not learned because they are older than the newest one learned, by shard.",
    ["shard"],
)
READINGS_GLITCH = _declare(
    Counter,
    "iotcast_readings_glitch_total",
    "Sensor glitch readings flagged and skipped, by shard.",
    ["shard"],
)
READINGS_NO_TARGET = _declare(
    Counter,
    "iotcast_readings_no_target_total",
    "Readings not learned because they lack the target sensor, by shard (a device that has "
    "never reported the target has no model set).",
    ["shard"],
)
VALUES_DROPPED = _declare(
    Counter,
    "iotcast_values_dropped_total",
    "Sensor values dropped from decoded records by validation (the reading went on with its "
    "other fields), by field (a sensor, or extra) and reason (wrong_type, not_finite, "
    "out_of_range).",
    ["field", "reason"],
)
VALUES_CLIPPED = _declare(
    Counter,
    "iotcast_values_clipped_total",
    "Sensor values of decoded records just beyond a physical limit, within the sensor's "
    "tolerance (relative humidity 100.5 %), clipped to the limit, by field and reason (clipped).",
    ["field", "reason"],
)
RECORDS_POISON = _declare(
    Counter,
    "iotcast_records_poison_total",
    "Readings (parts of records) and records the processor dead-lettered, by shard and "
    "reason: a part that is not a valid reading (its validation reason), a record that "
    "cannot be unpacked (bad_envelope, unknown_version), a reading beyond the device limit "
    "(device_limit).",
    ["shard", "reason"],
)
# Declared, not registered: its samples come from ERRORS (a ScoreSeries), as RESIDUAL's.
ERROR = _declare(
    Histogram,
    "iotcast_error_celsius",
    "Absolute error |actual - predicted| of every scored prediction of the fleet, by model "
    'and horizon (seconds); model="served" is the forecast the processor publishes (the '
    "champion's at the time, persistence's where it had none). _sum / _count is the fleet's "
    "MAE, the score-weighted mean of the devices' prequential MAEs.",
    _FLEET_LABELS,
    buckets=_ERROR_BUCKETS,
    registry=None,
)
CHAMPIONS = _declare(
    Gauge,
    "iotcast_champions",
    "Devices held whose champion at this horizon (seconds) is this model.",
    ["model", "horizon"],
)
PROMOTIONS = _declare(
    Counter,
    "iotcast_promotions_total",
    "Champion changes, by new champion (automatic or by an operator).",
    ["model"],
)
MODEL_RESETS = _declare(
    Counter,
    "iotcast_model_resets_total",
    "Models the guard reset to a fresh one (it raised, forecast a non-finite value or one "
    "outside the plausible range), by model, horizon (seconds) and reason.",
    ["model", "horizon", "reason"],
)
DRIFTS = _declare(
    Counter,
    "iotcast_drift_detected_total",
    "ADWIN drift detections on the champion's absolute residuals, by champion.",
    ["model"],
)
EVENTS = _declare(
    Counter,
    "iotcast_events_total",
    "Per-device events recorded (the event log, stream.events), by kind: first_reading, "
    "promotion, drift, model_reset, quiet, and the anomalies' spike, level_shift, stuck, "
    "silent, gas_rise (their start and end records each).",
    ["kind"],
)
ANOMALY_EVENTS = _declare(
    Counter,
    "iotcast_anomaly_events_total",
    "Sensor anomalies found, by kind (spike, level_shift, stuck, silent, gas_rise): each "
    "counted once, when it starts (or when it is reported whole, already over: a spike).",
    ["kind"],
)
ANOMALIES_ONGOING = _declare(
    Gauge,
    "iotcast_anomalies_ongoing",
    "Devices held with an anomaly of this kind going on (started, not yet ended; set every 5 s).",
    ["kind"],
)
DEVICES_HELD = _declare(Gauge, "iotcast_devices_held", "Devices whose models this process holds.")
BATCH_VERSION = _declare(
    Gauge,
    "iotcast_batch_version",
    "The batch model version this process forecasts with (--batch-expert), by stage: active "
    "(weighed with each device's champion) and shadow (scored, not weighed); 0 for none.",
    ["stage"],
)
BATCH_EVENTS = _declare(
    Counter,
    "iotcast_batch_events_total",
    "Steps of the batch models' lifecycle in this process, by kind: batch_shadow (a new "
    "version in shadow), batch_active (weighed), batch_refused (worse than the version it "
    "replaces after its shadow, or not loadable).",
    ["kind"],
)
SHARD_DEVICES = _declare(
    Gauge, "iotcast_shard_devices", "Devices of a shard this process holds.", ["shard"]
)
INTERVAL_COVERAGE = _declare(
    Gauge,
    "iotcast_interval_coverage_ratio",
    "Fraction of the served forecast's targets inside the prediction interval published with "
    "them, at this horizon (seconds) and level, over the devices held (since each device's "
    "model set started; set every 5 s).",
    ["horizon", "level"],
)
INTERVAL_WIDTH = _declare(
    Gauge,
    "iotcast_interval_width_celsius",
    "Mean width of the served forecast's published prediction intervals at this horizon "
    "(seconds) and level, over the devices held (in the target's unit; set every 5 s).",
    ["horizon", "level"],
)
DEVICES_QUIET = _declare(
    Gauge,
    "iotcast_devices_quiet",
    "Devices held with no reading received for more than 10 times their usual interval "
    "(at least 60 s; 300 s while the interval is not known).",
)
DEVICES_RESET = _declare(
    Gauge,
    "iotcast_devices_reset_last_hour",
    "Devices held with at least one model reset in the last hour (wall clock).",
)
WATCHED = _declare(
    Gauge, "iotcast_watched_devices", "Devices on the watch list (per-device series)."
)
WORST_RATIO = _declare(
    Gauge,
    "iotcast_worst_device_error_ratio",
    "The k devices with the highest served rolling MAE relative to persistence's, per horizon "
    "(rank 1 = worst): served rolling MAE / persistence rolling MAE. The set rotates.",
    ["horizon", "rank", "device"],
)
WORST_MAE = _declare(
    Gauge,
    "iotcast_worst_device_mae_celsius",
    "Served rolling MAE of the worst-k devices (same labels as iotcast_worst_device_error_ratio).",
    ["horizon", "rank", "device"],
)
SHARD_OWNED = _declare(
    Gauge, "iotcast_shard_owned", "1 for each shard this process holds the lease of.", ["shard"]
)
STREAM_SHARDS = _declare(Gauge, "iotcast_stream_shards", "Open shards of the telemetry stream.")
SHARD_LAG = _declare(
    Gauge,
    "iotcast_shard_lag_seconds",
    "How long the record being processed has waited since it arrived in the shard, while "
    "newer records wait behind it (records fetched but not yet processed count); 0 when "
    "the shard is caught up.",
    ["shard"],
)
CHECKPOINT_AGE = _declare(
    Gauge,
    "iotcast_checkpoint_age_seconds",
    "Seconds since the shard's last completed checkpoint.",
    ["shard"],
)
CHECKPOINT_SECONDS = _declare(
    Histogram,
    "iotcast_checkpoint_seconds",
    "Time to write one shard checkpoint (S3 then DynamoDB).",
    buckets=_LATENCY_BUCKETS,
)
CHECKPOINTS = _declare(
    Counter,
    "iotcast_checkpoints_total",
    "Shard checkpoints, by outcome (ok, retry, failed).",
    ["shard", "outcome"],
)
PROCESSING_SECONDS = _declare(
    Histogram,
    "iotcast_processing_seconds",
    "Time from a record's arrival in the processor to its metrics being updated.",
    buckets=_LATENCY_BUCKETS,
)
PREDICTIONS_EMITTED = _declare(
    Counter,
    "iotcast_predictions_emitted_total",
    "Prediction records written to the output stream (one per reading learned, every horizon "
    "in it).",
)
OUTPUT_RECORDS = _declare(
    Counter,
    "iotcast_output_records_total",
    "Kinesis records written to the output stream (each packs many prediction and event records).",
)

# ------------------------------------------------------------ watched devices only
# The series below carry a device label and exist only for the devices on the watch list
# (``--watch``, IOTCAST_WATCH; at most MAX_WATCHED).  Those declared with registry=None
# (the last prediction, the error figures, the champion, the newest reading learned) are
# read from the device's models when Prometheus scrapes (stream.watch.WatchedFigures).
DEVICE_READINGS = _declare(
    Counter,
    "iotcast_device_readings_total",
    "Readings of a watched device, by outcome (learned, held, duplicate, late, glitch).",
    ["device", "outcome"],
)
PREDICTION = _declare(
    Gauge,
    "iotcast_prediction_celsius",
    "Last prediction of the target, by watched device, model and horizon (seconds).",
    ["device", "model", "horizon"],
    registry=None,
)
PREDICTION_LOW = _declare(
    Gauge,
    "iotcast_prediction_low_celsius",
    "Lower bound of the served forecast's last prediction interval, by watched device, horizon "
    "(seconds) and level.",
    ["device", "horizon", "level"],
    registry=None,
)
PREDICTION_HIGH = _declare(
    Gauge,
    "iotcast_prediction_high_celsius",
    "Upper bound of the served forecast's last prediction interval, by watched device, horizon "
    "(seconds) and level.",
    ["device", "horizon", "level"],
    registry=None,
)
ACTUAL = _declare(
    Gauge,
    "iotcast_actual_celsius",
    "Last actual value of the target, by watched device.",
    ["device"],
)
ROLLING_MAE = _declare(
    Gauge,
    "iotcast_rolling_mae_celsius",
    "Rolling mean absolute error of scored predictions, by watched device.",
    ["device", "model", "horizon"],
    registry=None,
)
ROLLING_RMSE = _declare(
    Gauge,
    "iotcast_rolling_rmse_celsius",
    "Rolling root mean squared error of scored predictions, by watched device.",
    ["device", "model", "horizon"],
    registry=None,
)
MAE = _declare(
    Gauge,
    "iotcast_mae_celsius",
    "Mean absolute error of all scored predictions since the model started (prequential), "
    "by watched device.",
    ["device", "model", "horizon"],
    registry=None,
)
# The residual histogram and the scored counter are declared here (name, labels, buckets)
# but not registered: their samples come from SCORES (a ScoreSeries, below), plain
# accumulators the hot loop updates for ~1 us a score instead of ~3 us through
# .observe()/.inc(); the exposition is the same as these two metrics would give.
RESIDUAL = _declare(
    Histogram,
    "iotcast_residual_celsius",
    "Residuals (actual - predicted) of scored predictions, by watched device.",
    _DEVICE_LABELS,
    buckets=_RESIDUAL_BUCKETS,
    registry=None,
)
SCORED = _declare(
    Counter,
    "iotcast_predictions_scored_total",
    "Predictions scored against the actual value, by watched device.",
    _DEVICE_LABELS,
    registry=None,
)
CHAMPION = _declare(
    Gauge,
    "iotcast_champion_info",
    "1 for the current champion model of a watched device (first horizon).",
    ["device", "model"],
    registry=None,
)
MODEL_VERSION = _declare(
    Gauge,
    "iotcast_model_version",
    "Checkpoint version of a watched device's model set.",
    ["device"],
)
LAST_READING_TS = _declare(
    Gauge,
    "iotcast_last_reading_timestamp_seconds",
    "Event time (epoch seconds) of the newest reading learned, by watched device.",
    ["device"],
    registry=None,
)
LAST_READING_RECEIVED = _declare(
    Gauge,
    "iotcast_last_reading_received_timestamp_seconds",
    "Wall-clock time (epoch seconds) the processor received a watched device's newest reading "
    "(processing time; the silent-device alert uses it, since event time may be a replay's past).",
    ["device"],
)
DEVICE_INTERVAL = _declare(
    Gauge,
    "iotcast_device_interval_seconds",
    "Smoothed interval between a watched device's readings (its usual cadence).",
    ["device"],
)


def declared() -> dict[str, Declared]:
    """Every metric of this module: name (a counter's without ``_total``) -> kind and labels.

    >>> d = declared()["iotcast_error_celsius"]; (d.kind, d.labelnames)
    ('histogram', ('model', 'horizon'))
    >>> declared()["iotcast_readings_learned"].kind
    'counter'
    """
    return dict(_DECLARED)


def labelnames(metric: Counter | Gauge | Histogram) -> tuple[str, ...]:
    """The label names ``metric`` was declared with here.

    >>> labelnames(CHAMPION)
    ('device', 'model')
    """
    (family,) = metric.describe()
    return _DECLARED[family.name].labelnames


def created_samples() -> bool:
    """Whether prometheus_client's own metrics export ``_created`` samples now (the
    ``PROMETHEUS_DISABLE_CREATED_SERIES`` setting, or ``disable_created_metrics()``): asked
    of a throwaway counter, through the public API."""
    probe = Counter("created_probe", "Whether counters export _created.", registry=None)
    return any(s.name.endswith("_created") for family in probe.collect() for s in family.samples)


class ScoreSeries:
    """Exports a histogram (and optionally a counter of the same observations) from plain
    per-label-set accumulators, through prometheus_client's public collector API.

    ``histogram`` and ``counter`` are the declared metrics (not registered: this collector
    gives their samples); ``labelnames`` and ``buckets`` are the ones they were declared with.
    ``series(*labelvalues)`` gives the accumulator of one label set: a list of the
    histogram's non-cumulative bucket counts (one per bound of :attr:`bounds`, the last
    ``+Inf``), then the sum of observations, the count of NaN observations (counted by the
    counter, in no bucket) and the creation time. :meth:`add` is the hot path's update;
    :meth:`collect` (the ``/metrics`` thread) copies each list before reading it and yields
    exactly the samples the declared Histogram and Counter give.

    >>> from prometheus_client import CollectorRegistry, generate_latest
    >>> scores = ScoreSeries(RESIDUAL, _DEVICE_LABELS, _RESIDUAL_BUCKETS, SCORED,
    ...                      registry=CollectorRegistry())
    >>> acc = scores.series("d1", "linear", "60")
    >>> scores.add(acc, 0.3); scores.add(acc, -7.0)
    >>> text = generate_latest(scores.registry).decode()
    >>> 'iotcast_residual_celsius_bucket{device="d1",horizon="60",le="0.5",model="linear"} 2.0' in text
    True
    >>> 'iotcast_predictions_scored_total{device="d1",horizon="60",model="linear"} 2.0' in text
    True
    >>> errors = ScoreSeries(ERROR, _FLEET_LABELS, _ERROR_BUCKETS, registry=CollectorRegistry())
    >>> acc = errors.series("served", "3600"); errors.add(acc, 0.25); errors.add(acc, 0.5)
    >>> text = generate_latest(errors.registry).decode()
    >>> 'iotcast_error_celsius_sum{horizon="3600",model="served"} 0.75' in text
    True
    """

    def __init__(
        self,
        histogram: Histogram,
        labelnames: tuple[str, ...],
        buckets: tuple[float, ...],
        counter: Counter | None = None,
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        (self._hist_family,) = histogram.describe()
        self._counter_family = next(iter(counter.describe())) if counter is not None else None
        self.registry = registry
        self.labelnames = labelnames
        self.bounds = tuple(float(b) for b in buckets) + (math.inf,)
        self._le = tuple(floatToGoString(b) for b in self.bounds)
        self.SUM = len(self.bounds)
        self.NAN = self.SUM + 1
        self.CREATED = self.NAN + 1
        self._series: dict[tuple[str, ...], list[float]] = {}
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def series(self, *labelvalues: str) -> list[float]:
        acc = self._series.get(labelvalues)
        if acc is None:
            with self._lock:
                acc = self._series.get(labelvalues)
                if acc is None:
                    acc = [0.0] * self.CREATED + [time.time()]
                    self._series[labelvalues] = acc
        return acc

    def remove(self, *labelvalues: str) -> None:
        """Forget one label set's series (what ``Histogram.remove`` does)."""
        with self._lock:
            self._series.pop(labelvalues, None)

    def add(self, acc: list[float], value: float) -> None:
        """One observation (what ``Histogram.observe`` plus ``Counter.inc`` count)."""
        if value == value:
            acc[bisect_left(self.bounds, value)] += 1.0
        else:
            acc[self.NAN] += 1.0
        acc[self.SUM] += value

    def describe(self) -> list[Metric]:
        return [self._family(self._hist_family)] + (
            [self._family(self._counter_family)] if self._counter_family is not None else []
        )

    @staticmethod
    def _family(declared: Metric) -> Metric:
        return Metric(declared.name, declared.documentation, declared.type)

    def collect(self) -> list[Metric]:
        hist = self._family(self._hist_family)
        total = self._family(self._counter_family) if self._counter_family else None
        hname = hist.name
        created = created_samples()
        export_sum = self.bounds[0] >= 0  # prometheus_client exports _sum only then
        with self._lock:
            items = list(self._series.items())
        for values, acc in items:
            acc = list(acc)  # one C-level copy: the hot loop may be adding to it
            labels = dict(zip(self.labelnames, values, strict=True))
            cumulative = 0.0
            for le, n in zip(self._le, acc, strict=False):
                cumulative += n
                hist.add_sample(hname + "_bucket", {**labels, "le": le}, cumulative)
            hist.add_sample(hname + "_count", labels, cumulative)
            if export_sum:
                hist.add_sample(hname + "_sum", labels, acc[self.SUM])
            if created:
                hist.add_sample(hname + "_created", labels, acc[self.CREATED])
            if total is not None:
                total.add_sample(total.name + "_total", labels, cumulative + acc[self.NAN])
                if created:
                    total.add_sample(total.name + "_created", labels, acc[self.CREATED])
        return [hist] if total is None else [hist, total]


SCORES = ScoreSeries(RESIDUAL, _DEVICE_LABELS, _RESIDUAL_BUCKETS, SCORED)  # watched devices
ERRORS = ScoreSeries(ERROR, _FLEET_LABELS, _ERROR_BUCKETS)  # the fleet


def field_label(field: str) -> str:
    """The ``field`` label of a dropped or clipped value: the sensor, or ``extra``.

    >>> field_label("humidity"), field_label("pressure")
    ('humidity', 'extra')
    """
    return field if field in _SENSOR_FIELDS else "extra"


class FieldNotes:
    """Counts a reading's notes (``Reading.notes``: dropped and clipped values) into a
    dropped and a clipped counter, with the children looked up once per (field, reason).

    >>> from prometheus_client import CollectorRegistry, Counter
    >>> reg = CollectorRegistry()
    >>> dropped = Counter("d", "dropped", ["field", "reason"], registry=reg)
    >>> clipped = Counter("c", "clipped", ["field", "reason"], registry=reg)
    >>> notes = FieldNotes(dropped, clipped)
    >>> notes.count((("co", "wrong_type"), ("humidity", "clipped"), ("wind", "not_finite")))
    >>> reg.get_sample_value("d_total", {"field": "extra", "reason": "not_finite"})
    1.0
    >>> reg.get_sample_value("c_total", {"field": "humidity", "reason": "clipped"})
    1.0
    """

    def __init__(self, dropped: Counter, clipped: Counter) -> None:
        self.dropped = dropped
        self.clipped = clipped
        self._children: dict[tuple[str, str], Counter] = {}

    def count(self, notes: tuple[tuple[str, str], ...]) -> None:
        children = self._children
        for note in notes:
            child = children.get(note)
            if child is None:
                field, reason = note
                counter = self.clipped if reason == "clipped" else self.dropped
                child = children[note] = counter.labels(field_label(field), reason)
            child.inc()

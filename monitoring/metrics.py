"""Every ``iotcast_*`` Prometheus metric, declared once, in one place.

Dashboards and alert rules refer to these names; code elsewhere only calls
``.labels(...).set/inc/observe``.  Names carry base units (``_seconds``,
``_celsius``), counters end in ``_total``, labels are ``device``, ``model``,
``horizon`` (seconds, as a string; ``0`` is the nowcast), ``shard``,
``reason``, ``code``, ``field`` (one of :data:`FIELD_LABELS`: a sensor of the
data contract, or ``extra`` for any other field a device sends).

The number of distinct ``device`` label values is capped: :func:`device_label`
returns the device itself for the first ``cap`` devices seen and
:data:`OVERFLOW_DEVICE` after that, counting each overflowed reading.

>>> labels = DeviceLabels(cap=2)
>>> [labels("a"), labels("b"), labels("c"), labels("a")]
['a', 'b', '_overflow', 'a']
>>> labels.overflowed
1
"""

from __future__ import annotations

import math
import threading
import time
from bisect import bisect_left

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client import metrics as _client_metrics
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

from telemetry.reading import SENSORS

__all__ = [
    "DeviceLabels",
    "FIELD_LABELS",
    "FieldNotes",
    "OVERFLOW_DEVICE",
    "RESIDUAL_BOUNDS",
    "SCORES",
    "ScoreSeries",
    "device_label",
    "field_label",
    "set_device_label_cap",
]

OVERFLOW_DEVICE = "_overflow"
# The ``field`` label of the dropped/clipped counters: a sensor of the data contract, or
# "extra" for any other field (their names come from devices: never a label of their own).
FIELD_LABELS = (*SENSORS, "extra")
_SENSOR_FIELDS = frozenset(SENSORS)
DEFAULT_DEVICE_LABEL_CAP = 1000

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_RESIDUAL_BUCKETS = (-5, -2, -1, -0.5, -0.25, -0.1, 0, 0.1, 0.25, 0.5, 1, 2, 5)
RESIDUAL_BOUNDS = tuple(float(b) for b in _RESIDUAL_BUCKETS) + (math.inf,)
_LE = tuple(floatToGoString(b) for b in RESIDUAL_BOUNDS)

# ----------------------------------------------------------------------- bridge
BRIDGE_RECEIVED = Counter(
    "iotcast_bridge_messages_received_total", "MQTT messages received by the bridge."
)
BRIDGE_FORWARDED = Counter(
    "iotcast_bridge_readings_forwarded_total", "Readings accepted by Kinesis (PutRecords)."
)
BRIDGE_DEAD_LETTERS = Counter(
    "iotcast_bridge_dead_letters_total",
    "Messages written to the dead letter, by validation reason.",
    ["reason"],
)
BRIDGE_RETRIES = Counter(
    "iotcast_bridge_retries_total",
    "Records or calls retried, by error code (e.g. ProvisionedThroughputExceededException).",
    ["code"],
)
BRIDGE_BUFFER = Gauge("iotcast_bridge_buffer_records", "Records waiting in the bridge's buffer.")
BRIDGE_BUFFER_CAPACITY = Gauge(
    "iotcast_bridge_buffer_capacity_records",
    "Capacity of the bridge's buffer (backpressure above it).",
)
BRIDGE_PUT_SECONDS = Histogram(
    "iotcast_bridge_put_records_seconds", "PutRecords call latency.", buckets=_LATENCY_BUCKETS
)
BRIDGE_OLDEST_UNACKED = Gauge(
    "iotcast_bridge_oldest_unacked_age_seconds",
    "Age of the oldest MQTT message received but not yet acknowledged.",
)
BRIDGE_MQTT_CONNECTED = Gauge(
    "iotcast_bridge_mqtt_connected", "1 while the bridge is connected to the MQTT broker."
)
BRIDGE_KINESIS_UP = Gauge(
    "iotcast_bridge_kinesis_up", "1 while the last Kinesis call succeeded, 0 after a failed one."
)
BRIDGE_VALUES_DROPPED = Counter(
    "iotcast_bridge_values_dropped_total",
    "Sensor values the bridge's validation dropped from readings it forwarded (the reading went "
    "on with its other fields), by field (a sensor, or extra) and reason (wrong_type, "
    "not_finite, out_of_range). Such a reading is forwarded as its original payload.",
    ["field", "reason"],
)
BRIDGE_VALUES_CLIPPED = Counter(
    "iotcast_bridge_values_clipped_total",
    "Sensor values just beyond a physical limit, within the sensor's tolerance (relative "
    "humidity 100.5 %), clipped to the limit by the bridge's validation, by field and reason "
    "(clipped). Such a reading is forwarded as its original payload.",
    ["field", "reason"],
)
BRIDGE_REORDERED = Counter(
    "iotcast_bridge_reordered_total",
    "Records that landed behind a newer record of their device: PutRecords refused them "
    "mid-run (InternalFailure) while later ones were accepted.",
)

# -------------------------------------------------------------------- processor
READINGS_PROCESSED = Counter(
    "iotcast_readings_processed_total",
    "Kinesis records decoded by the processor, by shard.",
    ["shard"],
)
READINGS_LEARNED = Counter(
    "iotcast_readings_learned_total", "Readings learned (each exactly once), by device.", ["device"]
)
READINGS_DUPLICATE = Counter(
    "iotcast_readings_duplicate_total",
    "Readings not learned because (device, ts) was already learned.",
    ["device"],
)
READINGS_LATE = Counter(
    "iotcast_readings_late_total",
    "Readings not learned because they are older than the newest one learned.",
    ["device"],
)
READINGS_GLITCH = Counter(
    "iotcast_readings_glitch_total", "Sensor glitch readings flagged and skipped.", ["device"]
)
READINGS_NO_TARGET = Counter(
    "iotcast_readings_no_target_total",
    "Readings not learned because they lack the target sensor, by shard (a device that has "
    "never reported the target has no model set and no per-device series).",
    ["shard"],
)
VALUES_DROPPED = Counter(
    "iotcast_values_dropped_total",
    "Sensor values dropped from decoded records by validation (the reading went on with its "
    "other fields), by field (a sensor, or extra) and reason (wrong_type, not_finite, "
    "out_of_range).",
    ["field", "reason"],
)
VALUES_CLIPPED = Counter(
    "iotcast_values_clipped_total",
    "Sensor values of decoded records just beyond a physical limit, within the sensor's "
    "tolerance (relative humidity 100.5 %), clipped to the limit, by field and reason (clipped).",
    ["field", "reason"],
)
RECORDS_POISON = Counter(
    "iotcast_records_poison_total",
    "Kinesis records that are not readings, dead-lettered by the processor.",
    ["shard", "reason"],
)
PREDICTION = Gauge(
    "iotcast_prediction_celsius",
    "Last prediction of the target, by device, model and horizon (seconds).",
    ["device", "model", "horizon"],
)
ACTUAL = Gauge("iotcast_actual_celsius", "Last actual value of the target, by device.", ["device"])
ROLLING_MAE = Gauge(
    "iotcast_rolling_mae_celsius",
    "Rolling mean absolute error of scored predictions.",
    ["device", "model", "horizon"],
)
ROLLING_RMSE = Gauge(
    "iotcast_rolling_rmse_celsius",
    "Rolling root mean squared error of scored predictions.",
    ["device", "model", "horizon"],
)
MAE = Gauge(
    "iotcast_mae_celsius",
    "Mean absolute error of all scored predictions since the model started (prequential).",
    ["device", "model", "horizon"],
)
# The residual histogram and the scored counter are declared here (name, labels, buckets)
# but not registered: their samples come from SCORES (a ScoreSeries, below), plain
# accumulators the hot loop updates for ~1 us a score instead of ~3 us through
# .observe()/.inc(); the exposition is the same as these two metrics would give.
RESIDUAL = Histogram(
    "iotcast_residual_celsius",
    "Residuals (actual - predicted) of scored predictions.",
    ["device", "model", "horizon"],
    buckets=_RESIDUAL_BUCKETS,
    registry=None,
)
SCORED = Counter(
    "iotcast_predictions_scored_total",
    "Predictions scored against the actual value.",
    ["device", "model", "horizon"],
    registry=None,
)
CHAMPION = Gauge(
    "iotcast_champion_info", "1 for the current champion model of a device.", ["device", "model"]
)
MODEL_VERSION = Gauge(
    "iotcast_model_version", "Checkpoint version of a device's model set.", ["device"]
)
PROMOTIONS = Counter(
    "iotcast_promotions_total",
    "Champion changes, by device and new champion (automatic or by an operator).",
    ["device", "model"],
)
MODEL_RESETS = Counter(
    "iotcast_model_resets_total",
    "Models the guard reset to a fresh one (it raised, forecast a non-finite value or one "
    "outside the plausible range), by device, model, horizon (seconds) and reason.",
    ["device", "model", "horizon", "reason"],
)
DRIFTS = Counter(
    "iotcast_drift_detected_total",
    "ADWIN drift detections on the champion's absolute residuals.",
    ["device", "model"],
)
LAST_READING_TS = Gauge(
    "iotcast_last_reading_timestamp_seconds",
    "Event time (epoch seconds) of the newest reading learned, by device.",
    ["device"],
)
LAST_READING_RECEIVED = Gauge(
    "iotcast_last_reading_received_timestamp_seconds",
    "Wall-clock time (epoch seconds) the processor received a device's newest reading "
    "(processing time; the silent-device alert uses it, since event time may be a replay's past).",
    ["device"],
)
DEVICE_INTERVAL = Gauge(
    "iotcast_device_interval_seconds",
    "Smoothed interval between a device's readings (its usual cadence).",
    ["device"],
)
DEVICES_HELD = Gauge("iotcast_devices_held", "Devices whose models this process holds.")
DEVICE_LABEL_OVERFLOW = Counter(
    "iotcast_device_label_overflow_total",
    "Readings reported under the overflow device label (label cap reached).",
)
SHARD_OWNED = Gauge(
    "iotcast_shard_owned", "1 for each shard this process holds the lease of.", ["shard"]
)
STREAM_SHARDS = Gauge("iotcast_stream_shards", "Open shards of the telemetry stream.")
SHARD_LAG = Gauge(
    "iotcast_shard_lag_seconds",
    "How far the record being processed is behind the newest record known in the shard "
    "(arrival times; records fetched but not yet processed count as lag).",
    ["shard"],
)
CHECKPOINT_AGE = Gauge(
    "iotcast_checkpoint_age_seconds",
    "Seconds since the shard's last completed checkpoint.",
    ["shard"],
)
CHECKPOINT_SECONDS = Histogram(
    "iotcast_checkpoint_seconds",
    "Time to write one shard checkpoint (S3 then DynamoDB).",
    buckets=_LATENCY_BUCKETS,
)
CHECKPOINTS = Counter(
    "iotcast_checkpoints_total",
    "Shard checkpoints, by outcome (ok, retry, failed).",
    ["shard", "outcome"],
)
PROCESSING_SECONDS = Histogram(
    "iotcast_processing_seconds",
    "Time from a record's arrival in the processor to its metrics being updated.",
    buckets=_LATENCY_BUCKETS,
)
PREDICTIONS_EMITTED = Counter(
    "iotcast_predictions_emitted_total", "Prediction records written to the output stream."
)


def _use_created() -> bool:
    return bool(getattr(_client_metrics, "_use_created", True))


class ScoreSeries:
    """Exports :data:`RESIDUAL` and :data:`SCORED` from plain per-series accumulators.

    ``series(device, model, horizon)`` gives the accumulator of one label set:
    a list of the residual histogram's non-cumulative bucket counts
    (``len(RESIDUAL_BOUNDS)`` of them, the last one ``+Inf``), then the sum of
    residuals, the count of NaN residuals (scored, in no bucket) and the
    creation time. :meth:`add` is the hot path's update;
    :meth:`collect` (the ``/metrics`` thread) copies each list before reading
    it and yields exactly the samples the declared Histogram and Counter give.

    >>> from prometheus_client import CollectorRegistry, generate_latest
    >>> scores = ScoreSeries(RESIDUAL, SCORED, registry=CollectorRegistry())
    >>> acc = scores.series("d1", "linear", "60")
    >>> ScoreSeries.add(acc, 0.3); ScoreSeries.add(acc, -7.0)
    >>> text = generate_latest(scores.registry).decode()
    >>> 'iotcast_residual_celsius_bucket{device="d1",horizon="60",le="0.5",model="linear"} 2.0' in text
    True
    >>> 'iotcast_predictions_scored_total{device="d1",horizon="60",model="linear"} 2.0' in text
    True
    """

    SUM = len(_RESIDUAL_BUCKETS) + 1
    NAN = SUM + 1
    CREATED = NAN + 1

    def __init__(self, residual: Histogram, scored: Counter, registry=REGISTRY) -> None:
        self.residual = residual
        self.scored = scored
        self.registry = registry
        self._series: dict[tuple[str, str, str], list[float]] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def series(self, device: str, model: str, horizon: str) -> list[float]:
        key = (device, model, horizon)
        acc = self._series.get(key)
        if acc is None:
            with self._lock:
                acc = self._series.get(key)
                if acc is None:
                    acc = [0.0] * self.CREATED + [time.time()]
                    self._series[key] = acc
        return acc

    @staticmethod
    def add(acc: list[float], residual: float, _bounds=RESIDUAL_BOUNDS, _sum=SUM) -> None:
        """One scored residual (what ``Histogram.observe`` plus ``Counter.inc`` count)."""
        if residual == residual:
            acc[bisect_left(_bounds, residual)] += 1.0
        else:
            acc[_sum + 1] += 1.0
        acc[_sum] += residual

    def describe(self) -> list[Metric]:
        return [self.residual._get_metric(), self.scored._get_metric()]

    def collect(self) -> list[Metric]:
        hist = self.residual._get_metric()
        total = self.scored._get_metric()
        hname, cname = self.residual._name, self.scored._name
        created = _use_created()
        with self._lock:
            items = list(self._series.items())
        for (device, model, horizon), acc in items:
            acc = list(acc)  # one C-level copy: the hot loop may be adding to it
            labels = {"device": device, "model": model, "horizon": horizon}
            cumulative = 0.0
            for le, n in zip(_LE, acc, strict=False):
                cumulative += n
                hist.add_sample(hname + "_bucket", {**labels, "le": le}, cumulative)
            hist.add_sample(hname + "_count", labels, cumulative)
            if RESIDUAL_BOUNDS[0] >= 0:  # prometheus_client exports _sum only then
                hist.add_sample(hname + "_sum", labels, acc[self.SUM])
            total.add_sample(cname + "_total", labels, cumulative + acc[self.NAN])
            if created:
                hist.add_sample(hname + "_created", labels, acc[self.CREATED])
                total.add_sample(cname + "_created", labels, acc[self.CREATED])
        return [hist, total]


SCORES = ScoreSeries(RESIDUAL, SCORED)


class DeviceLabels:
    """Caps distinct ``device`` label values; thread-safe."""

    def __init__(self, cap: int = DEFAULT_DEVICE_LABEL_CAP) -> None:
        self.cap = cap
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self.overflowed = 0

    def __call__(self, device: str) -> str:
        if device in self._seen:
            return device
        with self._lock:
            if len(self._seen) < self.cap:
                self._seen.add(device)
                return device
            self.overflowed += 1
        DEVICE_LABEL_OVERFLOW.inc()
        return OVERFLOW_DEVICE


_labels = DeviceLabels()


def device_label(device: str) -> str:
    """The label value to report ``device`` under (itself, or the overflow label)."""
    return _labels(device)


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


def set_device_label_cap(cap: int) -> None:
    """Set the process-wide cap on distinct device labels (call once at start-up)."""
    global _labels
    _labels = DeviceLabels(cap)

"""Sensor anomalies in the running processor, on kinesalite and the moto server: a device
whose sensor sticks and then spikes raises ``stuck`` and ``spike`` events (the predictions
stream, the event log in S3) and counts them in /metrics; the readings the watch holds
back are predicted from but not learned."""

from __future__ import annotations

from online_models.catalog import load_catalog
from online_models.config import TaskConfig
from stream.events import read_events
from telemetry.reading import Reading
from tests import support

DEVICE = "sensor-7"
T0 = 1_765_000_000.0
MODELS = "persistence,rolling_mean"
HORIZONS = (0, 60)


def _at(i: int, temp: float) -> Reading:
    return Reading(T0 + 5 * i, DEVICE, 0.005, 51.0, False, 0.007, False, 0.02, temp)


def stuck_then_spike() -> list[Reading]:
    """A reading every 5 s: calm for 10 minutes, stuck at 22.3 for 1,000 s (its usual run
    of one value is 5 s), calm again, one reading of 35.0, calm."""
    calm = lambda i: _at(i, 22.0 + 0.1 * (i % 3))  # noqa: E731
    out = [calm(i) for i in range(120)]
    out += [_at(i, 22.3) for i in range(120, 320)]
    out += [calm(i) for i in range(320, 330)]
    out += [_at(330, 35.0)]
    out += [calm(i) for i in range(331, 340)]
    return out


def test_a_stuck_then_spiking_sensor_raises_stuck_and_spike_events(settings, tmp_path):
    support.create_stream(settings, shards=1)
    support.create_stream(settings, shards=1, name=settings.predictions_stream)
    support.create_bucket(settings)
    readings = stuck_then_spike()
    # what the processor must decide, reading by reading: the models of the device, offline
    task = TaskConfig(horizons=HORIZONS)
    (offline,) = support.reference(readings, load_catalog(), task, MODELS).values()
    assert offline.n_held > 100 and offline.n_learned + offline.n_held == len(readings)
    support.put_records(settings, support.items_of(readings))
    flags = support.processor_flags(
        MODELS, HORIZONS, session_timeout=None, heartbeat=None, predictions="champion"
    )
    with support.stops_cleanly(support.start_processor(settings, tmp_path, *flags)) as proc:
        support.wait_for(
            lambda: support.metric_sum(proc, "iotcast_readings_processed_total") == len(readings),
            120,
            "every reading processed",
        )
        support.wait_for(
            lambda: any(e["event"] == "spike" for e in read_events(
                settings.client("s3"), settings.bucket, settings.app
            )),
            60,
            "the anomaly events in the event log (written with a checkpoint)",
        )  # fmt: skip
        support.wait_for(
            lambda: support.metric_values(support.scrape(proc), "iotcast_anomalies_ongoing"),
            30,
            "the sweep's anomaly gauges",
        )
        text = support.scrape(proc)

    # /metrics: each anomaly counted once by kind; the held readings by shard
    counted = support.metric_values(text, "iotcast_anomaly_events_total")
    assert counted['kind="stuck"'] == 1 and counted['kind="spike"'] == 1
    assert support.metric_values(text, "iotcast_anomalies_ongoing")['kind="stuck"'] == 0
    held = sum(support.metric_values(text, "iotcast_readings_held_total").values())
    learned = sum(support.metric_values(text, "iotcast_readings_learned_total").values())
    assert (held, learned) == (offline.n_held, offline.n_learned)

    # the events, on the predictions stream and in the S3 event log: stuck from the run's
    # start, ongoing, then ended by the next other value; the spike whole, with the range
    records = support.stream_outputs(settings, settings.predictions_stream)
    logged = read_events(settings.client("s3"), settings.bucket, settings.app)
    for events in ([r for r in records if r["kind"] == "event"], logged):
        anomalies = [e for e in events if e["event"] in ("stuck", "spike")]
        assert [(e["event"], e["figures"]["phase"]) for e in anomalies] == [
            ("stuck", "start"), ("stuck", "end"), ("spike", "whole"),
        ]  # fmt: skip
        start, end, spike = (e["figures"] for e in anomalies)
        assert start["start_ts"] == end["start_ts"] == T0 + 5 * 120
        assert start["end_ts"] is None and end["end_ts"] == T0 + 5 * 320
        assert start["value"] == end["value"] == 22.3
        assert spike["start_ts"] == T0 + 5 * 330 and spike["value"] == 35.0
        assert 21.5 < spike["expected_low"] < spike["expected_high"] < 23.0  # the calm level
        assert spike["score"] > 1
        assert {e["device"] for e in anomalies} == {DEVICE}

    # held readings are predicted from: the spike's record carries the served nowcast, whose
    # interval leaves 35.0 far outside
    predictions = [r for r in records if r["kind"] == "prediction"]
    assert len(predictions) == offline.n_learned + offline.n_held
    (spiked,) = [r for r in predictions if r["actual"] == 35.0]
    (nowcast,) = [f for f in spiked["forecasts"] if f["horizon"] == 0]
    assert nowcast["intervals"] and all(hi < 35.0 for _, _, hi in nowcast["intervals"])

"""What the processor emits, on the real moto server: prediction records and metrics."""

from __future__ import annotations

import itertools

from stream.records import decode_records
from telemetry.generate import generate
from tests import support


def test_champion_predictions_and_events_reach_the_output_stream_and_metrics(settings, tmp_path):
    """Predictions and events on the output stream; fleet series for every device, the
    per-device series for the watched one only."""
    support.create_stream(settings, shards=1)
    support.create_stream(settings, shards=1, name=settings.predictions_stream)
    support.create_bucket(settings)
    readings = list(itertools.islice(generate(days=1, seed=31), 400))
    devices = sorted({r.device for r in readings})
    watched = devices[0]
    support.put_records(settings, support.items_of(readings) + [(b"\x00garbage", "x")])
    flags = support.processor_flags(
        "persistence,rolling_mean", session_timeout=None, heartbeat=None, predictions="champion"
    )
    flags += ("--watch", watched)
    with support.stops_cleanly(support.start_processor(settings, tmp_path, *flags)) as proc:
        support.wait_for(
            lambda: (
                support.metric_sum(proc, "iotcast_readings_processed_total") == len(readings) + 1
            ),
            120,
            "every record processed",
        )
        support.wait_for(
            lambda: support.metric_sum(proc, "iotcast_predictions_emitted_total") > 0,
            60,
            "predictions sent",
        )
        support.wait_for(
            lambda: support.metric_sum(proc, "iotcast_checkpoints_total") > 0, 60, "a checkpoint"
        )
        support.wait_for(
            lambda: support.metric_values(support.scrape(proc), "iotcast_worst_device_error_ratio"),
            30,
            "the worst-k gauges (the fleet sweep)",
        )
        text = support.scrape(proc)
    packed = support.stream_records(settings, settings.predictions_stream)
    records = [d for data in packed for d in decode_records(data)]
    predictions = [r for r in records if r["kind"] == "prediction"]
    events = [r for r in records if r["kind"] == "event"]
    assert len(predictions) + len(events) == len(records)
    learned = sum(support.metric_values(text, "iotcast_readings_learned_total").values())
    assert learned > 350
    # One prediction record per learned reading, every horizon in it (the served forecast).
    assert len(predictions) == learned
    assert len(packed) <= 0.05 * len(predictions), len(packed)  # packed as the telemetry is
    assert set(predictions[0]) == {"kind", "version", "device", "ts", "actual", "forecasts"}
    assert {p["version"] for p in predictions} == {2}
    assert all(r["actual"] is not None for r in predictions)
    forecasts = [(r, f) for r in predictions for f in r["forecasts"]]
    assert set(forecasts[0][1]) == {"horizon", "model", "prediction", "target_ts", "intervals"}
    # the served forecast's intervals, once its band has ten residuals; the wider level wider
    banded = [f["intervals"] for _, f in forecasts if f["intervals"] is not None]
    assert len(banded) > 0.8 * len(forecasts)
    assert all(lo <= hi for iv in banded for _, lo, hi in iv)
    assert {(iv[0][0], iv[1][0]) for iv in banded} == {(0.8, 0.95)}
    assert sum(iv[1][2] - iv[1][1] >= iv[0][2] - iv[0][1] for iv in banded) > 0.95 * len(banded)
    horizons = [[f["horizon"] for f in r["forecasts"]] for r in predictions]
    assert all(h in ([0], [60], [0, 60]) for h in horizons), horizons[:5]
    assert sum(h == [0, 60] for h in horizons) > 0.9 * len(horizons)
    assert all(f["target_ts"] == r["ts"] + f["horizon"] for r, f in forecasts)
    assert {f["model"] for _, f in forecasts} <= {"persistence", "rolling_mean"}
    firsts = sorted(e["device"] for e in events if e["event"] == "first_reading")
    assert firsts == devices
    assert support.metric_values(text, "iotcast_events_total")['kind="first_reading"'] == len(
        devices
    )
    assert support.metric_values(text, "iotcast_records_poison_total") == {
        'reason="invalid_json",shard="shardId-000000000000"': 1.0
    }
    for name in (
        "iotcast_error_celsius_count",
        "iotcast_champions",
        "iotcast_shard_owned",
        "iotcast_shard_devices",
        "iotcast_checkpoints_total",
        "iotcast_processing_seconds_count",
        "iotcast_devices_held",
        "iotcast_shard_lag_seconds",
    ):
        assert support.metric_values(text, name), name
    served = support.metric_values(text, "iotcast_error_celsius_count")
    assert served['horizon="60",model="served"'] > 0
    for name in (
        "iotcast_mae_celsius",
        "iotcast_rolling_mae_celsius",
        "iotcast_prediction_celsius",
        "iotcast_champion_info",
        "iotcast_device_readings_total",
    ):
        labelled = support.metric_values(text, name)
        assert labelled and all(f'device="{watched}"' in k for k in labelled), name
    named = {
        k.split('device="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("iotcast_") and 'device="' in line
        for k in [line]
    }
    worst = {
        k.split('device="')[1].split('"')[0]
        for k in support.metric_values(text, "iotcast_worst_device_error_ratio")
    }
    assert named == {watched} | worst, "only watched and worst-k devices are named in /metrics"

"""What the processor emits, on the real moto server: prediction records and metrics."""

from __future__ import annotations

import itertools

import orjson

from telemetry.generate import generate
from tests import support


def _read_stream(settings, name: str) -> list[dict]:
    kinesis = settings.client("kinesis")
    out = []
    for shard in kinesis.list_shards(StreamName=name)["Shards"]:
        it = kinesis.get_shard_iterator(
            StreamName=name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while True:
            resp = kinesis.get_records(ShardIterator=it, Limit=10_000)
            out += [orjson.loads(r["Data"]) for r in resp["Records"]]
            if not resp["Records"]:
                break
            it = resp["NextShardIterator"]
    return out


def test_champion_predictions_reach_the_output_stream_and_metrics(settings, tmp_path):
    support.create_stream(settings, shards=1)
    support.create_stream(settings, shards=1, name=settings.predictions_stream)
    support.create_bucket(settings)
    readings = list(itertools.islice(generate(days=1, seed=31), 400))
    support.put_records(settings, support.items_of(readings) + [(b"\x00garbage", "x")])
    flags = support.processor_flags(
        "persistence,rolling_mean", session_timeout=None, heartbeat=None, predictions="champion"
    )
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
        text = support.scrape(proc)
    records = _read_stream(settings, settings.predictions_stream)
    learned = sum(support.metric_values(text, "iotcast_readings_learned_total").values())
    assert learned > 350
    # One champion prediction per learned reading and horizon (the first reading has no 60 s forecast).
    assert len(records) >= learned and len(records) <= 2 * learned
    assert set(records[0]) == {
        "device",
        "ts",
        "model",
        "horizon",
        "prediction",
        "target_ts",
        "actual",
    }
    nowcasts = [r for r in records if r["horizon"] == 0]
    assert nowcasts and all(r["actual"] is not None and r["target_ts"] == r["ts"] for r in nowcasts)
    assert all(
        r["actual"] is None and r["target_ts"] == r["ts"] + 60
        for r in records
        if r["horizon"] == 60
    )
    assert support.metric_values(text, "iotcast_records_poison_total") == {
        'reason="invalid_json",shard="shardId-000000000000"': 1.0
    }
    for name in (
        "iotcast_mae_celsius",
        "iotcast_rolling_mae_celsius",
        "iotcast_prediction_celsius",
        "iotcast_champion_info",
        "iotcast_shard_owned",
        "iotcast_checkpoints_total",
        "iotcast_processing_seconds_count",
        "iotcast_devices_held",
        "iotcast_shard_lag_seconds",
    ):
        assert support.metric_values(text, name), name

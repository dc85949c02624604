"""Bridge pieces against the real moto server: shard routing, start-up errors, dead letters."""

from __future__ import annotations

import subprocess
import threading
import time

import orjson
import pytest

from bridge.batcher import Lane
from bridge.deadletter import DeadLetterWriter, dead_letter_entry
from bridge.kinesis import open_shard_ranges, shard_index
from bridge.retry import BridgeFailure, RetryPolicy
from bridge.service import Bridge, BridgeOptions
from iotcast.cli import local_env
from tests import support
from tests.faultproxy import FaultProxy


def test_lane_batches_by_count_bytes_and_linger():
    lane = Lane(max_records=500, max_bytes=1000, linger=0.2)
    for i in range(30):
        lane.put(i, size=100)
    assert lane.take() == list(range(10))  # 10 x 100 bytes fill the byte limit
    assert lane.take() == list(range(10, 20))  # in arrival order, never more than the limit
    lane2 = Lane(max_records=500, max_bytes=10_000, linger=0.2)
    lane2.put("a", size=1)
    started = time.monotonic()
    assert lane2.take() == ["a"]
    assert time.monotonic() - started >= 0.15  # waited for more to come
    lane2.put("b", size=1)
    closer = threading.Timer(0.05, lane2.close)
    closer.start()
    assert lane2.take() == ["b"]  # closing hands out what is queued at once
    assert lane2.take() is None


def test_shard_index_matches_where_kinesis_puts_the_key(boto, settings):
    kinesis = boto("kinesis")
    support.create_stream(settings, 4)  # and wait until ACTIVE: kinesalite lists no shard before
    ranges = open_shard_ranges(kinesis, settings.stream)
    assert len(ranges) == 4
    shard_ids = sorted(
        (int(s["HashKeyRange"]["StartingHashKey"]), s["ShardId"])
        for s in kinesis.list_shards(StreamName=settings.stream)["Shards"]
    )
    for n in range(40):
        key = f"device-{n}"
        got = kinesis.put_record(StreamName=settings.stream, PartitionKey=key, Data=b"x")["ShardId"]
        assert shard_ids[shard_index(ranges, key)][1] == got, key


def test_missing_stream_exits_2_with_a_message_saying_what_to_do(settings):
    argv = support.iotcast_argv(settings.replace(stream="no-such-stream"), "bridge")
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=120, env=local_env(settings)
    )
    assert result.returncode == 2, result.stderr
    assert "Kinesis stream 'no-such-stream' does not exist" in result.stderr
    assert "--create-stream --shards N" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_kinesis_at_start_raises_what_to_check(settings):
    proxy = FaultProxy.before(settings)
    proxy.down = True
    try:
        bridge = Bridge(proxy.route(settings).bridge_target(), BridgeOptions(client_id="x"))
        with pytest.raises(BridgeFailure, match="ServiceUnavailable.*Check --endpoint-url"):
            bridge.start()
    finally:
        proxy.close()


def test_create_stream_creates_stream_and_bucket(settings, boto, mosquitto):
    settings = settings.replace(mqtt_url=f"mqtt://127.0.0.1:{mosquitto.port}")
    bridge = Bridge(
        settings.bridge_target(), BridgeOptions(client_id="c", create_stream=True, shards=3)
    )
    bridge.start()
    try:
        summary = boto("kinesis").describe_stream_summary(StreamName=settings.stream)
        assert summary["StreamDescriptionSummary"]["OpenShardCount"] == 3
        boto("s3").head_bucket(Bucket=settings.bucket)
        assert bridge.health()["ok"] is True
    finally:
        assert bridge.stop(5)


def test_dead_letter_write_is_retried_until_the_bucket_exists(settings, boto):
    s3 = boto("s3")
    abort = threading.Event()
    writer = DeadLetterWriter(
        s3, settings.bucket, RetryPolicy(base=0.05, cap=0.2, give_up_after=30), abort
    )
    entries = [
        dead_letter_entry("iot/x/telemetry", b"{bad", "invalid_json", "not JSON", time.time())
    ]
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(key=writer.write(entries, time.time())))
    thread.start()
    time.sleep(0.6)
    assert thread.is_alive()  # NoSuchBucket: still retrying, nothing dropped
    s3.create_bucket(Bucket=settings.bucket)
    thread.join(10)
    body = s3.get_object(Bucket=settings.bucket, Key=result["key"])["Body"].read()
    assert [orjson.loads(line) for line in body.splitlines()] == entries
    assert result["key"].startswith("dead-letter/")


def test_dead_letter_write_past_the_bound_raises_what_to_do(settings, boto):
    writer = DeadLetterWriter(
        boto("s3"),
        settings.bucket,
        RetryPolicy(base=0.01, cap=0.05, give_up_after=0.3),
        threading.Event(),
    )
    entry = dead_letter_entry("iot/x/telemetry", b"{", "invalid_json", "not JSON", time.time())
    with pytest.raises(BridgeFailure, match="NoSuchBucket.*Check that the bucket exists"):
        writer.write([entry], time.time())

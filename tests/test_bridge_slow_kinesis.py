"""A slow PutRecords answer must not make the bridge send the batch a second time.

Real moto server behind :class:`tests.faultproxy.FaultProxy`, whose first
PutRecords reaches moto only after 33 s, as a loaded moto answers late (the
demo saw ten 30 s ReadTimeoutErrors).  The bridge used to give such a call up
after 30 s and resend it while the server was still going to apply the first
one: two interleaved copies on the stream, and on moto readings lost behind
newer ones of their device.
"""

from __future__ import annotations

import threading

import boto3
import orjson
import pytest

from bridge.kinesis import Entry, KinesisSender, client_config
from bridge.retry import RetryPolicy
from tests.faultproxy import FaultProxy
from tests.support import create_stream

SLOW = 33.0  # above the old 30 s read timeout


def read_stream(kinesis, stream: str) -> list[dict]:
    (shard,) = kinesis.list_shards(StreamName=stream)["Shards"]
    it = kinesis.get_shard_iterator(
        StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    out: list[dict] = []
    while True:
        resp = kinesis.get_records(ShardIterator=it, Limit=10_000)
        out += [orjson.loads(r["Data"]) for r in resp["Records"]]
        if not resp["Records"]:
            return out
        it = resp["NextShardIterator"]


@pytest.mark.timeout(120)
def test_a_slow_put_is_waited_for_not_sent_twice(settings):
    create_stream(settings, shards=1)
    proxy = FaultProxy.before(settings, slow_puts=1, slow_seconds=SLOW)
    try:
        client = boto3.client(
            "kinesis",
            config=client_config(),
            endpoint_url=proxy.url,
            region_name=settings.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        sender = KinesisSender(client, settings.stream, RetryPolicy(), threading.Event())
        sent = [{"device": "ab"[i % 2], "ts": i} for i in range(1_000)]
        calls = [
            sender.put([Entry(r["device"], orjson.dumps(r)) for r in sent[i : i + 500]]).calls
            for i in range(0, len(sent), 500)
        ]
    finally:
        proxy.close()
    on_stream = read_stream(settings.client("kinesis"), settings.stream)
    assert calls == [1, 1], f"{proxy.put_calls} PutRecords calls for 2 batches"
    assert on_stream == sent  # each reading once, in order

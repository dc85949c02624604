"""Lease heartbeats survive a DynamoDB outage (the defect the DynamoDB fault found).

async-kinesis' heartbeat loop ended for good on the first heartbeat that
failed past the SDK's retries; once DynamoDB was back, every lease of the
process looked abandoned and the other processor took them over (seen in
``test_dynamodb_outage_keeps_leases_and_retries_checkpoints`` with a 30 s
outage).  Here the outage is short and the SDK retries are off, so the
same failure shows in seconds.
"""

from __future__ import annotations

import asyncio
import time

import boto3

from stream.consumer import Leases, LeaseSettings, TakeEveryLease
from tests.faultproxy import FaultProxy


def test_lease_heartbeats_resume_after_a_dynamodb_outage(moto_server, unique, monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # no SDK retries: each heartbeat fails at once
    proxy = FaultProxy(moto_server.url)
    table = f"kinesis-checkpoints-hb-{unique}"
    ddb = boto3.client("dynamodb", endpoint_url=moto_server.url, region_name="us-east-1")

    def lease_ts() -> float:
        item = ddb.get_item(TableName=table, Key={"shard_id": {"S": "shardId-0"}})["Item"]
        return float(item["ts"]["N"])

    async def scenario() -> tuple[bool, int, float, float]:
        leases = Leases(
            LeaseSettings(
                f"hb-{unique}",
                endpoint_url=proxy.url,
                region="us-east-1",
                session_timeout=4,
                heartbeat=0.2,
                ref="owner",
            ),
            TakeEveryLease(),
        )
        try:
            ok, _ = await leases.allocate("shardId-0")
            assert ok
            proxy.refuse("dynamodb", 1.5)
            await asyncio.sleep(2.0)
            restored = time.time()
            await asyncio.sleep(2.5)  # heartbeats again (ts has a one-second resolution)
            alive = not leases.inner.heartbeat_task.done()
            return (
                alive,
                getattr(leases, "heartbeat_failures", 0),
                restored,
                await asyncio.to_thread(lease_ts),
            )
        finally:
            await leases.abandon()

    try:
        alive, failures, restored, ts = asyncio.run(scenario())
    finally:
        proxy.close()
    assert proxy.refused_requests["dynamodb"] > 0
    assert alive, "the heartbeat task ended with the outage"
    assert ts >= int(restored), "the lease was not heartbeaten after the outage"
    assert failures > 0


def test_overdue_lease_is_left_to_its_owner_right_after_dynamodb_was_silent(settings, boto):
    """After DynamoDB did not answer for over a session timeout, a lease that looks overdue is
    not taken over until its owner had a session timeout to renew it (the leases swapped in
    the DynamoDB fault test before this)."""
    from stream.lease_table import LeaseTable

    table = f"kinesis-checkpoints-{settings.app}"
    ddb = boto("dynamodb")
    ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "shard_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "shard_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    overdue = int(time.time()) - 30  # its owner last heartbeat 30 s ago (session timeout 4 s)
    ddb.put_item(
        TableName=table,
        Item={"shard_id": {"S": "shardId-0"}, "ref": {"S": "other"}, "ts": {"N": str(overdue)}},
    )
    leases = LeaseTable(ddb, table, "me", session_timeout=4)
    leases.seen_at = time.monotonic()  # DynamoDB answered just now
    assert leases.lease_free("shardId-0"), "a lease overdue while DynamoDB answered"
    leases.seen_at = time.monotonic() - 30  # ... then nothing for 30 s
    assert not leases.lease_free("shardId-0"), "taken over right after the silence"
    leases.back_at = time.monotonic() - 5  # the owner had 5 s > 4 s to renew
    assert leases.lease_free("shardId-0")

"""The processor's own reads and writes of the lease table (async-kinesis keeps the leases).

async-kinesis holds, heartbeats and takes over the shard leases in the table
``kinesis-checkpoints-<app>``; :class:`LeaseTable` asks the same table what
the processor needs besides:

- is a shard's lease free to take (saves async-kinesis' one-second back-off
  against a live owner)?
- does this process still own a shard (checked before a manifest is written)?
- how many processes are alive: each writes a presence item
  (``process#<ref>``, with its session timeout and the URL of its /metrics
  when it serves one, for ``iotcast status``) every heartbeat and counts the
  fresh ones.

After DynamoDB was unreachable for longer than a session timeout, every
lease looks overdue because nobody could heartbeat, not because its owner
died: another process's lease is not taken over until its owner had a
session timeout of working DynamoDB to renew it (:meth:`LeaseTable.in_grace`).

>>> table = LeaseTable(None, "kinesis-checkpoints-doc", "me", session_timeout=4)
>>> table.in_grace(), table.presence_key
(False, 'process#me')
"""

from __future__ import annotations

import logging
import time
from typing import Any

from botocore.exceptions import ClientError

from stream.aws import DynamoDBClient, Item

__all__ = ["PRESENCE_PREFIX", "LeaseTable", "LostLease"]

log = logging.getLogger(__name__)

PRESENCE_PREFIX = "process#"


class LostLease(RuntimeError):
    """Another process holds the shard's lease now: this one must not write its manifest."""


class LeaseTable:
    """Lease and presence queries of one process (see the module docstring)."""

    def __init__(
        self,
        dynamodb: DynamoDBClient,
        table: str,
        ref: str,
        *,
        session_timeout: float,
        metrics_url: str | None = None,
    ) -> None:
        self.dynamodb = dynamodb
        self.table = table
        self.ref = ref
        self.session_timeout = session_timeout
        self.metrics_url = metrics_url
        self.seen_at: float | None = None  # DynamoDB's last answer (monotonic)
        self.back_at: float | None = None  # its first answer after a silence over a session

    @property
    def presence_key(self) -> str:
        return PRESENCE_PREFIX + self.ref

    # ------------------------------------------------------------ silence and grace
    def answered(self) -> None:
        """Note an answer from DynamoDB; after a silence over a session timeout, start the grace."""
        now = time.monotonic()
        last = self.seen_at
        if last is not None and now - last > self.session_timeout:
            self.back_at = now
            log.warning(
                "DynamoDB did not answer for %.0fs; leases of other processes are left to them "
                "for %.0fs (they could not heartbeat either)",
                now - last,
                self.session_timeout,
            )
        self.seen_at = now

    def in_grace(self) -> bool:
        back = self.back_at
        return back is not None and time.monotonic() - back < self.session_timeout

    # ------------------------------------------------------------------- leases
    def lease_free(self, shard_id: str) -> bool:
        """False while another live process holds the lease (saves async-kinesis' 1 s back-off)."""
        try:
            item = self.dynamodb.get_item(
                TableName=self.table, Key={"shard_id": {"S": shard_id}}
            ).get("Item")
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                return True
            raise
        self.answered()
        if not item or "ref" not in item or "S" not in item["ref"]:
            return True
        if self.in_grace():
            return False  # overdue only because DynamoDB was unreachable: let its owner renew it
        ts = float(item.get("ts", {}).get("N", 0))
        return time.time() - ts >= self.session_timeout

    def check_owner(self, shard_id: str, mine: str) -> None:
        """Raise :class:`LostLease` when the shard's lease names another holder than ``mine``."""
        item = self.dynamodb.get_item(
            TableName=self.table, Key={"shard_id": {"S": shard_id}}, ConsistentRead=True
        ).get("Item", {})
        self.answered()
        ref = item.get("ref", {}).get("S")
        if ref is not None and ref != mine:
            raise LostLease(f"shard {shard_id} is now leased by {ref}")

    # ----------------------------------------------------------------- presence
    def write_presence(self) -> int:
        """Write this process's presence item; return the live processes (at least 1)."""
        now = time.time()
        item: Item = {
            "shard_id": {"S": self.presence_key},
            "ts": {"N": str(int(now))},
            "ttl": {"N": str(int(now + 86_400))},
            "session": {"N": str(self.session_timeout)},
        }
        if self.metrics_url:
            item["metrics"] = {"S": self.metrics_url}
        try:
            self.dynamodb.put_item(TableName=self.table, Item=item)
            items = self._presence_items()
            self.answered()
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                return 1  # lease table not created yet (the first lease creates it)
            raise
        live = sum(1 for it in items if now - float(it["ts"]["N"]) < self.session_timeout)
        return max(live, 1)

    def _presence_items(self) -> list[Item]:
        items: list[Item] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "ConsistentRead": True,
            "FilterExpression": "begins_with(shard_id, :p)",
            "ExpressionAttributeValues": {":p": {"S": PRESENCE_PREFIX}},
        }
        while True:
            page = self.dynamodb.scan(**kwargs)
            items += page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def remove_presence(self) -> None:
        try:
            self.dynamodb.delete_item(
                TableName=self.table, Key={"shard_id": {"S": self.presence_key}}
            )
        except ClientError as exc:
            log.warning(
                "could not remove this process's presence item (%s); it expires after "
                "the session timeout",
                exc,
            )

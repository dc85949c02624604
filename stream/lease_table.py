"""The lease table: its name, its items, and the processor's own reads and writes of it.

async-kinesis holds, heartbeats and takes over the shard leases in the table
``kinesis-checkpoints-<app>`` (:func:`lease_table_name`, the one place that
name is made).  Its items are of two kinds, parsed here and nowhere else
(:func:`parse_item`, :func:`read_lease_table`, used by the processor and by
``iotcast status`` and ``iotcast reshard``):

- a shard's lease (:class:`LeaseItem`): ``shard_id``, the holder ``ref``, the
  heartbeat time ``ts`` and the ``sequence`` checkpointed there;
- a processor's presence (:class:`PresenceItem`): ``shard_id`` is
  ``process#<ref>``, with ``ts``, the session timeout and its /metrics URL.

:class:`LeaseTable` asks the table what the processor needs besides:

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

>>> table = LeaseTable(None, lease_table_name("doc"), "me", session_timeout=4)
>>> table.in_grace(), table.presence_key, table.table
(False, 'process#me', 'kinesis-checkpoints-doc')
>>> parse_item({"shard_id": {"S": "shardId-0"}, "ref": {"S": "p1"}, "ts": {"N": "100"}})
LeaseItem(shard_id='shardId-0', owner='p1', ts=100.0, sequence=None)
>>> parse_item({"shard_id": {"S": "process#p1"}, "ts": {"N": "100"}, "session": {"N": "4"}})
PresenceItem(process='p1', ts=100.0, session_timeout=4.0, metrics_url=None)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import ClientError

from stream.aws import DynamoDBClient, Item

__all__ = [
    "PRESENCE_PREFIX",
    "LeaseItem",
    "LeaseTable",
    "LeaseTableContents",
    "LostLease",
    "PresenceItem",
    "lease_table_name",
    "parse_item",
    "read_lease_table",
]

log = logging.getLogger(__name__)

PRESENCE_PREFIX = "process#"


def lease_table_name(app: str) -> str:
    """The DynamoDB table of the consumer group ``app``'s leases, checkpointed sequence
    numbers and presence items (async-kinesis creates it on the first lease).

    >>> lease_table_name("iotcast")
    'kinesis-checkpoints-iotcast'
    """
    return f"kinesis-checkpoints-{app}"


@dataclass(frozen=True)
class LeaseItem:
    """A shard's lease: its holder (None once released), heartbeat time (seconds since the
    epoch; None when absent) and the sequence number checkpointed in DynamoDB."""

    shard_id: str
    owner: str | None
    ts: float | None
    sequence: str | None


@dataclass(frozen=True)
class PresenceItem:
    """A processor's presence: its ref, heartbeat time, session timeout (None when the item
    predates it) and the URL of its /metrics (None when it serves none)."""

    process: str
    ts: float | None
    session_timeout: float | None
    metrics_url: str | None


def _cell(item: Item, name: str) -> str | None:
    cell = item.get(name, {})
    return cell.get("S", cell.get("N"))


def parse_item(item: Item) -> LeaseItem | PresenceItem:
    """One item of the lease table, as a lease or a presence (see the module docstring)."""
    key = item["shard_id"]["S"]
    raw_ts = _cell(item, "ts")
    ts = float(raw_ts) if raw_ts is not None else None
    if key.startswith(PRESENCE_PREFIX):
        session = _cell(item, "session")
        return PresenceItem(
            key[len(PRESENCE_PREFIX) :],
            ts,
            float(session) if session else None,
            _cell(item, "metrics"),
        )
    return LeaseItem(key, _cell(item, "ref"), ts, _cell(item, "sequence"))


@dataclass(frozen=True)
class LeaseTableContents:
    """Every item of a lease table, parsed: leases by shard, presences by process."""

    leases: dict[str, LeaseItem]
    presences: dict[str, PresenceItem]

    @classmethod
    def of(cls, items: Iterable[Item]) -> LeaseTableContents:
        leases: dict[str, LeaseItem] = {}
        presences: dict[str, PresenceItem] = {}
        for item in items:
            parsed = parse_item(item)
            if isinstance(parsed, PresenceItem):
                presences[parsed.process] = parsed
            else:
                leases[parsed.shard_id] = parsed
        return cls(leases, presences)


class _ScanPages(Protocol):
    def paginate(self, *, TableName: str, ConsistentRead: bool) -> Iterable[dict[str, Any]]: ...


class _Scanner(Protocol):
    def get_paginator(self, operation_name: str) -> _ScanPages: ...


def read_lease_table(dynamodb: _Scanner, table: str) -> LeaseTableContents:
    """The whole table (a consistent scan), parsed; empty when the table does not exist yet
    (no processor of the consumer group has run)."""
    pages = dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
    try:
        items = [it for page in pages for it in page.get("Items", [])]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            return LeaseTableContents({}, {})
        raise
    return LeaseTableContents.of(items)


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
        lease = parse_item(item) if item else None
        if not isinstance(lease, LeaseItem) or lease.owner is None:
            return True
        if self.in_grace():
            return False  # overdue only because DynamoDB was unreachable: let its owner renew it
        return time.time() - (lease.ts or 0.0) >= self.session_timeout

    def check_owner(self, shard_id: str, mine: str) -> None:
        """Raise :class:`LostLease` when the shard's lease names another holder than ``mine``."""
        item = self.dynamodb.get_item(
            TableName=self.table, Key={"shard_id": {"S": shard_id}}, ConsistentRead=True
        ).get("Item", {})
        self.answered()
        lease = parse_item(item) if item else None
        ref = lease.owner if isinstance(lease, LeaseItem) else None
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
        live = sum(1 for it in items if now - (parse_item(it).ts or 0.0) < self.session_timeout)
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

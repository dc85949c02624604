"""Kinesis transport: async-kinesis' consumer, with its DynamoDB leases under our control.

async-kinesis checkpoints a shard's sequence number as soon as the records
before it have been handed out; that would move DynamoDB past the models in
S3 and lose learning after a crash.  :class:`LeaseCheckpointer` wraps its
DynamoDB checkpointer (leases, heartbeats, takeover after
``session_timeout``) and ignores those calls: the processor writes the
sequence number with :meth:`LeaseCheckpointer.commit`, only after the S3
manifest that covers it was accepted.  It also asks the processor before
taking a lease (:class:`LeaseHooks`): parents must be finished before their
children start, a shard just handed over is not taken back at once, and the
shard's models are loaded (and verified) before its first record arrives;
the resume point is the manifest's sequence number when it is ahead of
DynamoDB's (or DynamoDB's table was lost).

:class:`LeaseConsumer` tags every record with its shard, sequence number,
arrival time and lease epoch (records of a lease given up are dropped), puts
a :class:`ShardEnd` behind the last record of a closed shard, and can stop
fetching one shard for a graceful hand-over.

>>> rec = RawRecord("shardId-0", "17", b"{}", 0.0, 1)
>>> len(rec), rec.sequence
(2, '17')
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from botocore.exceptions import BotoCoreError, ClientError
from kinesis import Consumer
from kinesis.dynamodb import DynamoDBCheckPointer
from kinesis.processors import Processor

from monitoring.metrics import SHARD_LAG

__all__ = [
    "LeaseCheckpointer",
    "LeaseConsumer",
    "LeaseHooks",
    "PassThrough",
    "RawRecord",
    "RecordBatch",
    "ShardEnd",
]

log = logging.getLogger(__name__)

ITERATOR_ATTEMPTS = 6


class RawRecord:
    """One Kinesis record as the processor receives it (``len`` = payload bytes).

    >>> RawRecord("shardId-0", "17", b"{}", 0.0, 1).shard_id
    'shardId-0'
    """

    __slots__ = ("shard_id", "sequence", "data", "arrived", "epoch")

    def __init__(
        self, shard_id: str, sequence: str, data: bytes, arrived: float, epoch: int
    ) -> None:
        self.shard_id = shard_id
        self.sequence = sequence
        self.data = data
        self.arrived = arrived
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.data)


class RecordBatch:
    """The records of one GetRecords call, queued as one item (``len`` = payload bytes).

    async-kinesis queues every record with its own ``wait_for`` (a task per
    record); one item per batch keeps that cost per call, not per record.

    >>> len(RecordBatch("shardId-0", 1, [RawRecord("shardId-0", "1", b"abc", 0.0, 1)]))
    3
    """

    __slots__ = ("shard_id", "epoch", "records", "nbytes")

    def __init__(self, shard_id: str, epoch: int, records: list[RawRecord]) -> None:
        self.shard_id = shard_id
        self.epoch = epoch
        self.records = records
        self.nbytes = sum(len(r.data) for r in records)

    def __len__(self) -> int:
        return self.nbytes


class ShardEnd:
    """Queued behind the last record of a closed shard (split or merge).

    >>> ShardEnd("shardId-0", 2).epoch
    2
    """

    __slots__ = ("shard_id", "epoch")

    def __init__(self, shard_id: str, epoch: int) -> None:
        self.shard_id = shard_id
        self.epoch = epoch


class PassThrough(Processor):
    """Hands records to the processor undecoded: decoding (and dead-lettering) is ours.

    >>> list(PassThrough().parse(b"raw"))
    [b'raw']
    """

    def parse(self, data: Any):
        yield data


class LeaseHooks:
    """What the checkpointer asks the processor around a lease (overridden by the processor).

    >>> import asyncio
    >>> asyncio.run(LeaseHooks().on_allocated("shardId-0", "42", epoch=1))
    '42'
    """

    async def may_allocate(self, shard_id: str) -> bool:
        return True

    async def on_allocated(self, shard_id: str, sequence: str | None, epoch: int) -> str | None:
        """Load the shard's state; return the sequence number to resume after."""
        return sequence

    async def on_shard_end(self, shard_id: str) -> None:
        return None


class _Borrowed:
    """``async with`` over a shared resource that stays open afterwards."""

    def __init__(self, resource: Any) -> None:
        self.resource = resource

    async def __aenter__(self) -> Any:
        return self.resource

    async def __aexit__(self, *exc: object) -> None:
        return None


class _SharedSession:
    """Stands in for the aioboto3 session of async-kinesis' DynamoDB checkpointer.

    That checkpointer opens a new DynamoDB resource (a new HTTP connector, and an
    SSL context loading the CA bundle: ~0.1 s, over 1 s on a busy machine, on the
    event loop) for every heartbeat, checkpoint and lease call; this hands it one
    long-lived resource instead.
    """

    def __init__(self, resource: Any) -> None:
        self._resource = resource

    def resource(self, *args: Any, **kwargs: Any) -> _Borrowed:
        return _Borrowed(self._resource)


class LeaseCheckpointer:
    """async-kinesis' DynamoDB checkpointer, checkpointing only when told (module docstring).

    Create it inside a running event loop (the inner checkpointer starts its
    heartbeat task at once).

    >>> import asyncio
    >>> async def calls_from_async_kinesis():
    ...     leases = LeaseCheckpointer(
    ...         "app", LeaseHooks(), endpoint_url="http://127.0.0.1:9", region="us-east-1"
    ...     )
    ...     await leases.checkpoint("shardId-0", "99")  # noted, not written
    ...     leases.inner.heartbeat_task.cancel()
    ...     return leases.consumed, leases.get_all_checkpoints()
    >>> asyncio.run(calls_from_async_kinesis())
    ({'shardId-0': '99'}, {})
    """

    def __init__(
        self,
        app: str,
        hooks: LeaseHooks,
        *,
        endpoint_url: str | None,
        region: str,
        session_timeout: float = 60,
        heartbeat: float = 15,
        cooldown: float | None = None,
        ref: str | None = None,
    ) -> None:
        self.inner = DynamoDBCheckPointer(
            name=app,
            id=ref,
            # async-kinesis computes `age - session_timeout` with age a Decimal: an int is required.
            session_timeout=max(1, math.ceil(session_timeout)),
            heartbeat_frequency=heartbeat,
            endpoint_url=endpoint_url,
            region_name=region,
            create_table=True,
        )
        self.table_name = self.inner.table_name
        # async-kinesis' heartbeat loop ends for good on the first failed heartbeat (a DynamoDB
        # outage longer than its retries): the leases would then look abandoned to every other
        # process once DynamoDB is back. Each heartbeat's error is logged and the next one retries.
        self.heartbeat_failures = 0
        self._inner_heartbeat = self.inner.do_heartbeat
        self.inner.do_heartbeat = self._heartbeat
        self._endpoint_url = endpoint_url
        self._region = region
        self._resource_cm: Any = None
        self.hooks = hooks
        self.cooldown = session_timeout if cooldown is None else cooldown
        self.epochs: dict[str, int] = {}
        self._released: dict[str, float] = {}  # shard -> monotonic time it was handed over
        self._giving_up: set[str] = set()
        self.refused: set[str] = set()  # shards whose checkpoint failed verification
        self.consumed: dict[str, str] = {}  # what async-kinesis would have checkpointed (info only)

    # ------------------------------------------------------ async-kinesis protocol
    def get_ref(self) -> str:
        return self.inner.get_ref()

    def get_all_checkpoints(self) -> dict[str, Any]:
        return self.inner.get_all_checkpoints()

    def is_allocated(self, shard_id: str) -> bool:
        return shard_id not in self._giving_up and self.inner.is_allocated(shard_id)

    async def allocate(self, shard_id: str) -> tuple[bool, str | None]:
        if shard_id in self.refused or shard_id in self._giving_up:
            return False, None
        released = self._released.get(shard_id)
        if released is not None and time.monotonic() - released < self.cooldown:
            return False, None
        if not await self.hooks.may_allocate(shard_id):
            return False, None
        await self._share_resource()
        ok, sequence = await self.inner.allocate(shard_id)
        if not ok:
            return False, None
        self._released.pop(shard_id, None)
        epoch = self.epochs[shard_id] = self.epochs.get(shard_id, 0) + 1
        try:
            resume = await self.hooks.on_allocated(shard_id, sequence, epoch)
        except BaseException:
            self.epochs[shard_id] += 1
            await self.inner.deallocate(shard_id)
            raise
        if resume is None and shard_id in self.refused:
            self.epochs[shard_id] += 1
            await self.inner.deallocate(shard_id)
            return False, None
        return True, resume

    async def checkpoint(self, shard_id: str, sequence: str) -> None:
        """Called by async-kinesis as records are consumed: noted, never written (see module)."""
        self.consumed[shard_id] = sequence

    async def deallocate(self, shard_id: str) -> None:
        """async-kinesis found the shard closed: finish it after its last queued record."""
        await self.hooks.on_shard_end(shard_id)

    async def close(self) -> None:
        await self.inner.close()
        if self._resource_cm is not None:
            await self._resource_cm.__aexit__(None, None, None)
            self._resource_cm = None

    async def _share_resource(self) -> None:
        """Initialise the inner checkpointer (table), then give it one long-lived resource."""
        if self._resource_cm is not None:
            return
        import aioboto3

        await self.inner._initialize()
        cm = aioboto3.Session().resource(
            "dynamodb", endpoint_url=self._endpoint_url, region_name=self._region
        )
        resource = await cm.__aenter__()
        self._resource_cm = cm
        self.inner._session = _SharedSession(resource)

    async def _heartbeat(self, key: str, value: dict[str, Any]) -> None:
        try:
            await self._inner_heartbeat(key, value)
        except (BotoCoreError, ClientError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.heartbeat_failures += 1
            log.warning(
                "lease heartbeat of %s failed (%s); retrying at the next heartbeat", key, exc
            )

    # ------------------------------------------------------------------ ours
    async def commit(self, shard_id: str, sequence: str) -> None:
        """Checkpoint ``sequence`` in DynamoDB (after S3 accepted the manifest covering it)."""
        await self.inner.checkpoint(shard_id, sequence)

    def give_up(self, shard_id: str) -> None:
        """Stop counting the shard as ours at once (records still queued become stale)."""
        self._giving_up.add(shard_id)
        self.epochs[shard_id] = self.epochs.get(shard_id, 0) + 1

    async def release(self, shard_id: str) -> None:
        """Release the lease (keeping the last committed sequence number) and keep off it a while."""
        try:
            if self.inner.is_allocated(shard_id):
                await self.inner.deallocate(shard_id)
        finally:
            self._giving_up.discard(shard_id)
            self._released[shard_id] = time.monotonic()

    def owned(self) -> list[str]:
        return [s for s in self.inner.get_all_checkpoints() if self.is_allocated(s)]


class LeaseConsumer(Consumer):
    """async-kinesis' Consumer with records tagged for the processor (see the module docstring).

    >>> import asyncio
    >>> async def build():
    ...     leases = LeaseCheckpointer(
    ...         "app", LeaseHooks(), endpoint_url="http://127.0.0.1:9", region="us-east-1"
    ...     )
    ...     consumer = LeaseConsumer("iot-telemetry", leases, endpoint_url="http://127.0.0.1:9")
    ...     leases.inner.heartbeat_task.cancel()
    ...     return consumer.stream_name, consumer.open_shards()
    >>> asyncio.run(build())
    ('iot-telemetry', [])
    """

    def __init__(
        self,
        stream: str,
        checkpointer: LeaseCheckpointer,
        *,
        shard_refresh: float = 60.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(stream, checkpointer=checkpointer, processor=PassThrough(), **kwargs)
        self.leases = checkpointer
        self._shard_refresh_interval = shard_refresh
        self.on_lag: Callable[[str, float], None] | None = None

    async def get_records(self, shard: dict[str, Any]) -> dict[str, Any] | None:
        shard_id = shard["ShardId"]
        epoch = self.leases.epochs.get(shard_id, 0)
        result = await super().get_records(shard)
        if result is None:
            return None
        if self.leases.epochs.get(shard_id, 0) != epoch or not self.leases.is_allocated(shard_id):
            return None  # the lease changed while fetching: the next owner reads these records
        arrived = time.monotonic()
        rows = result["Records"]
        if rows:
            batch = RecordBatch(
                shard_id,
                epoch,
                [
                    RawRecord(shard_id, row["SequenceNumber"], row["Data"], arrived, epoch)
                    for row in rows
                ],
            )
            last = dict(rows[-1])
            last["Data"] = batch
            result["Records"] = [last]
        millis = result.get("MillisBehindLatest")
        if millis is not None:
            SHARD_LAG.labels(shard_id).set(millis / 1000.0)
        return result

    async def get_shard_iterator(
        self, shard_id: str, last_sequence_number: str | None = None
    ) -> str:
        """async-kinesis' call, retried with a bound: if it fails right after a lease was taken,
        async-kinesis keeps the lease but never reads the shard."""
        for attempt in range(1, ITERATOR_ATTEMPTS + 1):
            try:
                return await super().get_shard_iterator(shard_id, last_sequence_number)
            except (BotoCoreError, ClientError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                if attempt == ITERATOR_ATTEMPTS:
                    log.error(
                        "GetShardIterator for %s failed %d times (%s); giving the lease up",
                        shard_id,
                        attempt,
                        exc,
                    )
                    self.leases.give_up(shard_id)
                    await self.leases.release(shard_id)
                    raise
                log.warning("GetShardIterator for %s failed (%s); retrying", shard_id, exc)
                await asyncio.sleep(min(0.25 * 2**attempt, 5.0))
        raise AssertionError("unreachable")

    async def next_items(self, limit: int = 1000) -> list[Any]:
        """Up to ``limit`` queued items (batches, shard ends); [] after ``idle_timeout`` without any.

        What ``async for`` over the consumer does, minus its per-item task and its
        checkpoint sentinels (our checkpointer ignores them: see :class:`LeaseCheckpointer`).
        """
        if not self.shards:
            await self.get_conn()
        if not self.fetch_task:
            self._start_fetch_task()
        if self.fetch_task.done() and not self.fetch_task.cancelled():
            exc = self.fetch_task.exception()
            if exc is not None:
                raise exc
        try:
            first = await asyncio.wait_for(self.queue.get(), timeout=self.idle_timeout)
        except TimeoutError:
            return []
        items = [first]
        while len(items) < limit:
            try:
                items.append(self.queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        return [i for i in items if i.__class__ is not dict]  # drop __CHECKPOINT__ sentinels

    async def shard_closed_marker(self, shard_id: str) -> None:
        """Queue a :class:`ShardEnd` behind the shard's last records."""
        await self.queue.put(ShardEnd(shard_id, self.leases.epochs.get(shard_id, 0)))

    def stop_fetching(self, shard_id: str) -> None:
        """Forget the shard's iterator (a new lease gets a fresh one)."""
        for shard in self.shards or ():
            if shard["ShardId"] == shard_id:
                shard.pop("ShardIterator", None)
                # Not cancelled (async-kinesis' fetch loop would stop on the CancelledError):
                # detached; its records carry the old epoch and are dropped.
                shard["fetch"] = None

    def mark_finished(self, shard_id: str) -> None:
        """A closed shard finished elsewhere: let its children start here (async-kinesis
        only counts a parent exhausted if this process consumed it)."""
        self._closed_shards.add(shard_id)
        self._exhausted_parents.add(shard_id)

    def open_shards(self) -> list[dict[str, Any]]:
        return [
            s
            for s in self.shards or ()
            if "EndingSequenceNumber" not in s.get("SequenceNumberRange", {})
        ]

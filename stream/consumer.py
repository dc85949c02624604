"""Kinesis transport: async-kinesis' consumer, with its DynamoDB leases under our control.

This is the one module that bends async-kinesis' internals (its private
attributes, a wrapped heartbeat, a shared DynamoDB resource, the closed-shard
bookkeeping); ``tests/test_kinesis_adapter.py`` fails when the installed
version changes what it relies on.

async-kinesis checkpoints a shard's sequence number as soon as the records
before it have been handed out; that would move DynamoDB past the models in
S3 and lose learning after a crash.  :class:`Leases` wraps its DynamoDB
checkpointer (leases, heartbeats, takeover after ``session_timeout``) and
ignores those calls (async-kinesis' ``checkpoint()``, kept because the
library calls it): the processor writes the sequence number with
:meth:`Leases.write_sequence`, only after the S3 manifest that covers it was
accepted.  It also asks the processor before and after taking a lease
(:class:`LeaseHooks`): parents must be finished before their children start,
a shard just handed over is not taken back at once, and the shard's models
are loaded (and verified) before its first record arrives; the resume point
is the manifest's sequence number when it is ahead of DynamoDB's (or
DynamoDB's table was lost).

:class:`LeaseConsumer` tags every record with its shard, sequence number,
arrival time and lease epoch (records of a lease given up are dropped), puts
a :class:`ShardEnd` behind the last record of a closed shard, and can stop
fetching one shard for a graceful hand-over.

Backpressure (:class:`RecordBuffer`): async-kinesis fetches while its queue
has room for one more *item*, and a queued item here is a whole GetRecords
batch, so a slow processor used to pull the stream into its memory (all of
it) while every fetch said it was at the tip.  Now a fetch first reserves
room for ``record_limit`` records (its ``Limit``) under ``buffer_records``,
records fetched and not yet handed to the processor; while that is full
nothing is fetched and the backlog stays in Kinesis.  The lag gauge
(``iotcast_shard_lag_seconds``) is set as records are *handled*
(:meth:`LeaseConsumer.handled`, :func:`shard_lag`): while records newer than
the one being handled are known in the shard (the newest arrival time known is
the last fetch's last record plus its ``MillisBehindLatest``), how long that
record has waited since it arrived, so records waiting in this process count as
lag too, and so does a backlog that arrived in a burst; 0 once the shard is
caught up.

>>> rec = RawRecord("shardId-0", "17", b"{}", 0.0, 1)
>>> len(rec), rec.sequence
(2, '17')
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

import aiohttp
from botocore.exceptions import BotoCoreError, ClientError
from kinesis import Consumer
from kinesis.dynamodb import DynamoDBCheckPointer
from kinesis.processors import Processor

from monitoring.metrics import SHARD_LAG
from stream.lease_table import lease_table_name

__all__ = [
    "GetRecordsOutput",
    "KinesisRecordRow",
    "KinesisShard",
    "LeaseConsumer",
    "LeaseHooks",
    "LeaseSettings",
    "Leases",
    "PassThrough",
    "RawRecord",
    "RecordBatch",
    "RecordBuffer",
    "RefuseLease",
    "ShardEnd",
    "TakeEveryLease",
    "shard_lag",
]

log = logging.getLogger(__name__)

ITERATOR_ATTEMPTS = 6
# A failing shard listing or GetRecords (a Kinesis outage) is retried after 0.5, 1, 2, ... s,
# at most every MAX_RETRY_SECONDS (the listing: at most every shard_refresh).
FIRST_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 10.0


def retry_delay(failures: int, cap: float = MAX_RETRY_SECONDS) -> float:
    """Seconds before the next try after ``failures`` failures in a row (doubling, capped).

    >>> [retry_delay(n) for n in (1, 2, 3, 6, 20)]
    [0.5, 1.0, 2.0, 10.0, 10.0]
    """
    return min(cap, FIRST_RETRY_SECONDS * 2 ** min(failures - 1, 30))


def shard_lag(tip: float, handled: float, now: float) -> float:
    """The lag gauge's figure as a record that arrived at ``handled`` is handled, ``tip`` being
    the newest arrival time known in its shard (seconds since the epoch): how long the record
    waited (``now - handled``) while newer records wait behind it, 0 once it is the newest (the
    shard caught up); never less than the gap in arrival times, so that a clock behind the
    stream's does not hide a backlog.

    A backlog that arrived in a burst (the bridge packs readings, a device flushes its queue
    after an outage) is lag too: its records arrived within a second, and the processor may
    take minutes to reach the last of them.

    >>> round(shard_lag(tip=100.0, handled=99.9, now=103.0), 3)  # a burst, handled 3 s late
    3.1
    >>> shard_lag(tip=100.0, handled=100.0, now=103.0)  # the newest record: caught up
    0.0
    >>> shard_lag(tip=160.0, handled=100.0, now=130.0)  # this clock 30 s+ behind Kinesis'
    60.0
    """
    if handled >= tip:
        return 0.0
    return max(tip - handled, now - handled)


def _worth_logging(failures: int) -> bool:
    """Log the 1st, 2nd, 4th, 8th, ... failure in a row (a long outage stays readable)."""
    return failures & (failures - 1) == 0


class KinesisShard(TypedDict, total=False):
    """A shard as async-kinesis keeps it: Kinesis' description (ListShards), with the fields
    async-kinesis adds while it reads the shard."""

    ShardId: str
    ParentShardId: str
    AdjacentParentShardId: str
    HashKeyRange: dict[str, str]  # StartingHashKey, EndingHashKey (decimal strings)
    SequenceNumberRange: dict[str, str]  # StartingSequenceNumber, EndingSequenceNumber
    ShardIterator: str
    LastSequenceNumber: str
    fetch: asyncio.Task[object] | None  # async-kinesis' fetch in flight


class KinesisRecordRow(TypedDict, total=False):
    """One record of a GetRecords answer; :meth:`LeaseConsumer.get_records` hands
    async-kinesis one row whose ``Data`` is the whole :class:`RecordBatch`."""

    SequenceNumber: str
    Data: bytes | RecordBatch
    PartitionKey: str
    ApproximateArrivalTimestamp: datetime


class GetRecordsOutput(TypedDict, total=False):
    Records: list[KinesisRecordRow]
    NextShardIterator: str
    MillisBehindLatest: int


@dataclass(slots=True, eq=False)
class RawRecord:
    """One Kinesis record as the processor receives it (``len`` = payload bytes).

    ``arrived`` is when this process fetched it (monotonic clock); ``in_stream``
    when Kinesis accepted it (``ApproximateArrivalTimestamp``, None if not given).

    >>> RawRecord("shardId-0", "17", b"{}", 0.0, 1).shard_id
    'shardId-0'
    """

    shard_id: str
    sequence: str
    data: bytes
    arrived: float
    epoch: int
    in_stream: datetime | None = None

    def __len__(self) -> int:
        return len(self.data)


class RecordBatch:
    """The records of one GetRecords call, queued as one item (``len`` = payload bytes).

    async-kinesis queues every record with its own ``wait_for`` (a task per
    record); one item per batch keeps that cost per call, not per record.

    >>> len(RecordBatch("shardId-0", 1, [RawRecord("shardId-0", "1", b"abc", 0.0, 1)]))
    3
    """

    __slots__ = ("shard_id", "epoch", "records", "nbytes", "hold")

    def __init__(
        self, shard_id: str, epoch: int, records: list[RawRecord], hold: int | None = None
    ) -> None:
        self.shard_id = shard_id
        self.epoch = epoch
        self.records = records
        self.nbytes = sum(len(r.data) for r in records)
        self.hold = hold  # the RecordBuffer reservation these records were fetched under

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


class RecordBuffer:
    """Records fetched and not yet handed to the processor, kept under a bound.

    A fetch :meth:`reserve` s room for ``chunk`` records (its GetRecords
    ``Limit``), waiting while ``used + chunk > bound``; :meth:`fetched` shrinks
    the reservation to what came back; the batch's records then move from the
    reservation to :attr:`queued` when queued (:meth:`queued_batch`) and leave it
    when the processor takes them (:meth:`taken`).  :attr:`peak` is the most
    ever used.

    >>> import asyncio
    >>> async def fill():
    ...     buf = RecordBuffer(bound=10, chunk=4)
    ...     a, b = await buf.reserve(), await buf.reserve()
    ...     third = asyncio.ensure_future(buf.reserve())
    ...     await asyncio.sleep(0)
    ...     waiting = not third.done()  # 4 + 4 + 4 > 10
    ...     buf.fetched(a, 1)  # the first fetch found one record
    ...     c = await third
    ...     buf.release(b), buf.release(c)
    ...     return waiting, buf.used, buf.peak
    >>> asyncio.run(fill())
    (True, 1, 9)
    """

    def __init__(self, bound: int, chunk: int) -> None:
        if not 1 <= chunk <= bound:
            raise ValueError(f"chunk ({chunk}) must be between 1 and the bound ({bound})")
        self.bound = bound
        self.chunk = chunk
        self.queued = 0
        self.peak = 0
        self._held: dict[int, int] = {}  # reservation -> records reserved or fetched, not queued
        self._next = 0
        self._room = asyncio.Event()
        self.open = True

    def close(self) -> None:
        """Stop waiting for room: the consumer is closing (nobody takes records any more)."""
        self.open = False
        self._room.set()

    @property
    def used(self) -> int:
        return self.queued + sum(self._held.values())

    async def reserve(self) -> int:
        """Wait for room for one fetch (or :meth:`close`); return its reservation."""
        while self.open and self.used + self.chunk > self.bound:
            self._room.clear()
            await self._room.wait()
        self._next += 1
        self._held[self._next] = self.chunk
        self._note()
        return self._next

    def fetched(self, hold: int, records: int) -> None:
        if hold in self._held:
            self._held[hold] = records
            self._freed()

    def release(self, hold: int) -> None:
        """The reservation's records will not be queued (nothing fetched, lease changed, error)."""
        if self._held.pop(hold, None) is not None:
            self._freed()

    def queued_batch(self, batch: RecordBatch) -> None:
        if batch.hold is not None:
            self._held.pop(batch.hold, None)
        self.queued += len(batch.records)
        self._note()

    def taken(self, batch: RecordBatch) -> None:
        self.queued -= len(batch.records)
        self._freed()

    def _note(self) -> None:
        self.peak = max(self.peak, self.used)

    def _freed(self) -> None:
        self._room.set()


class _BufferedQueue(asyncio.Queue):
    """async-kinesis' queue, unbounded in items (the :class:`RecordBuffer` bounds the records).

    A bounded item count would make async-kinesis' ``put`` wait, and after 30 s
    drop the batch and move its iterator past it.
    """

    _queue: deque[Any]  # asyncio.Queue's items (what its _init, _put and _get use)

    def __init__(self, buffer: RecordBuffer) -> None:
        super().__init__(maxsize=0)
        self.buffer = buffer

    def _put(self, item: Any) -> None:
        super()._put(item)
        if item.__class__ is RecordBatch:
            self.buffer.queued_batch(item)

    def _get(self) -> Any:
        item = super()._get()
        if item.__class__ is RecordBatch:
            self.buffer.taken(item)
        return item

    def peek(self) -> Any:
        """The next item without taking it (None when empty)."""
        return self._queue[0] if self._queue else None


class _ShardProgress:
    """Where a shard's lag stands: newest arrival time known in the shard, last fetched, last handled."""

    __slots__ = ("epoch", "tip", "fetched", "handled")

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.tip = 0.0  # seconds since the epoch (Kinesis' clock)
        self.fetched = 0.0
        self.handled = 0.0


class PassThrough(Processor):
    """Hands records to the processor undecoded: decoding (and dead-lettering) is ours.

    >>> list(PassThrough().parse(b"raw"))
    [b'raw']
    """

    def parse(self, data: bytes) -> Iterator[bytes]:
        yield data


class RefuseLease(Exception):
    """Raised by :meth:`LeaseHooks.on_allocated` to refuse a shard just leased (its checkpoint
    fails verification): the lease is given back and this process leaves the shard alone
    until restarted."""


class LeaseHooks(ABC):
    """What :class:`Leases` asks the processor around a lease (aiokafka's rebalance listener).

    In this order, for each shard async-kinesis tries to lease:

    1. :meth:`may_allocate` before the lease is taken: False leaves the shard
       alone this round (async-kinesis tries again later);
    2. async-kinesis takes the lease in DynamoDB;
    3. :meth:`on_allocated` with DynamoDB's sequence number and the lease's epoch:
       load the shard's state, return the sequence number to resume after, or
       raise :class:`RefuseLease` (the lease is given back);
    4. the shard's records, then, for a closed shard consumed to its end, a
       :class:`ShardEnd` behind its last record (queued by :class:`LeaseConsumer`,
       not a hook).

    ``listed`` is the consumer's last listing of the stream's shards (parents,
    hash ranges). Both hooks run on the event loop, inside async-kinesis'
    allocation round.

    >>> import asyncio
    >>> asyncio.run(TakeEveryLease().on_allocated("shardId-0", "42", 1, []))
    '42'
    """

    @abstractmethod
    async def may_allocate(self, shard_id: str, listed: Sequence[KinesisShard]) -> bool:
        """May this process try to lease the shard now?"""

    @abstractmethod
    async def on_allocated(
        self, shard_id: str, sequence: str | None, epoch: int, listed: Sequence[KinesisShard]
    ) -> str | None:
        """The lease is taken: load the shard; return the sequence number to resume after."""


class TakeEveryLease(LeaseHooks):
    """Hooks that take every free lease and resume where DynamoDB says (tests, tools)."""

    async def may_allocate(self, shard_id: str, listed: Sequence[KinesisShard]) -> bool:
        return True

    async def on_allocated(
        self, shard_id: str, sequence: str | None, epoch: int, listed: Sequence[KinesisShard]
    ) -> str | None:
        return sequence


@dataclass(frozen=True)
class LeaseSettings:
    """Where the lease table is and how leases are held: consumer group ``app`` (the table is
    :func:`~stream.lease_table.lease_table_name`), DynamoDB's endpoint and region, the session
    timeout, the heartbeat period, how long a released shard is not taken back (``cooldown``,
    the session timeout by default) and this process's ``ref``."""

    app: str
    endpoint_url: str | None = None
    region: str | None = None
    session_timeout: float = 60
    heartbeat: float = 15
    cooldown: float | None = None
    ref: str | None = None


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


class Leases:
    """The shard leases of one process: async-kinesis' DynamoDB checkpointer, under our control.

    async-kinesis holds, heartbeats and takes over the leases through it; the
    processor writes a shard's sequence number with :meth:`write_sequence`, only
    after the S3 manifest covering it was accepted (module docstring).  Create it
    inside a running event loop (the inner checkpointer starts its heartbeat task
    at once).  :class:`LeaseConsumer` creates one for itself; ``listing`` (the
    consumer's shards, for the hooks) and ``on_shard_closed`` come from it.

    >>> import asyncio
    >>> async def calls_from_async_kinesis():
    ...     settings = LeaseSettings("app", endpoint_url="http://127.0.0.1:9", region="us-east-1")
    ...     leases = Leases(settings, TakeEveryLease())
    ...     await leases.checkpoint("shardId-0", "99")  # async-kinesis' call: noted, not written
    ...     leases.inner.heartbeat_task.cancel()
    ...     return leases.table_name, leases.consumed, leases.get_all_checkpoints()
    >>> asyncio.run(calls_from_async_kinesis())
    ('kinesis-checkpoints-app', {'shardId-0': '99'}, {})
    """

    def __init__(
        self,
        settings: LeaseSettings,
        hooks: LeaseHooks,
        *,
        listing: Callable[[], Sequence[KinesisShard]] = tuple,
        on_shard_closed: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.inner = DynamoDBCheckPointer(
            name=settings.app,
            id=settings.ref,
            # async-kinesis computes `age - session_timeout` with age a Decimal: an int is required.
            session_timeout=max(1, math.ceil(settings.session_timeout)),
            heartbeat_frequency=settings.heartbeat,
            endpoint_url=settings.endpoint_url,
            region_name=settings.region,
            create_table=True,
            table_name=lease_table_name(settings.app),
        )
        self.table_name = self.inner.table_name
        # async-kinesis' heartbeat loop ends for good on the first failed heartbeat (a DynamoDB
        # outage longer than its retries): the leases would then look abandoned to every other
        # process once DynamoDB is back. Each heartbeat's error is logged and the next one retries.
        self.heartbeat_failures = 0
        self._inner_heartbeat = self.inner.do_heartbeat
        self.inner.do_heartbeat = self._heartbeat
        self._endpoint_url = settings.endpoint_url
        self._region = settings.region
        self._resource_cm: Any = None
        self.hooks = hooks
        self.listing = listing
        self.on_shard_closed = on_shard_closed
        cooldown = settings.cooldown
        self.cooldown = settings.session_timeout if cooldown is None else cooldown
        self.epochs: dict[str, int] = {}
        self._released: dict[str, float] = {}  # shard -> monotonic time it was handed over
        self._giving_up: set[str] = set()
        self.refused: set[str] = set()  # shards whose checkpoint failed verification
        self.consumed: dict[str, str] = {}  # what async-kinesis would have checkpointed (info only)

    # ------------------------------------ async-kinesis' checkpointer protocol (its calls only)
    def get_ref(self) -> str:
        return self.inner.get_ref()

    def get_all_checkpoints(self) -> dict[str, str]:
        return self.inner.get_all_checkpoints()

    def is_allocated(self, shard_id: str) -> bool:
        return shard_id not in self._giving_up and self.inner.is_allocated(shard_id)

    async def allocate(self, shard_id: str) -> tuple[bool, str | None]:
        """async-kinesis asks for a lease: the hooks first and after (see :class:`LeaseHooks`)."""
        if shard_id in self.refused or shard_id in self._giving_up:
            return False, None
        released = self._released.get(shard_id)
        if released is not None and time.monotonic() - released < self.cooldown:
            return False, None
        if not await self.hooks.may_allocate(shard_id, self.listing()):
            return False, None
        await self._share_resource()
        ok, sequence = await self.inner.allocate(shard_id)
        if not ok:
            return False, None
        self._released.pop(shard_id, None)
        epoch = self.epochs[shard_id] = self.epochs.get(shard_id, 0) + 1
        try:
            resume = await self.hooks.on_allocated(shard_id, sequence, epoch, self.listing())
        except RefuseLease:
            self.refused.add(shard_id)
            self.epochs[shard_id] += 1
            await self.inner.deallocate(shard_id)
            return False, None
        except BaseException:
            self.epochs[shard_id] += 1
            await self.inner.deallocate(shard_id)
            raise
        return True, resume

    async def checkpoint(self, shard_id: str, sequence: str) -> None:
        """async-kinesis' call as records are consumed (and when it closes a shard or itself):
        noted, never written. async-kinesis would move DynamoDB past the models in S3; the
        processor writes the sequence number itself (:meth:`write_sequence`)."""
        self.consumed[shard_id] = sequence

    async def deallocate(self, shard_id: str) -> None:
        """async-kinesis found the shard closed: finish it after its last queued record."""
        if self.on_shard_closed is not None:
            await self.on_shard_closed(shard_id)

    async def close(self) -> None:
        await self.inner.close()
        await self._close_resource()

    # ------------------------------------------------------ async-kinesis' internals, bent
    async def abandon(self) -> None:
        """Stop heartbeating without releasing the leases (what a crash leaves behind: the
        leases expire after ``session_timeout``); for tests of takeover and heartbeats."""
        self.inner._heartbeat_stopping = True
        task = getattr(self.inner, "heartbeat_task", None)  # set by its first allocate
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._close_resource()

    async def _close_resource(self) -> None:
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

    # ------------------------------------------------------------ the processor's calls
    async def write_sequence(self, shard_id: str, sequence: str) -> None:
        """Write ``sequence`` as the shard's position in DynamoDB (the second half of a
        checkpoint: after S3 accepted the manifest covering it)."""
        await self.inner.checkpoint(shard_id, sequence)

    def give_up(self, shard_id: str) -> None:
        """Stop counting the shard as ours at once (records still queued become stale)."""
        self._giving_up.add(shard_id)
        self.epochs[shard_id] = self.epochs.get(shard_id, 0) + 1

    def forget(self, shard_id: str) -> None:
        """Drop async-kinesis' record of holding the shard (another process holds it now)."""
        self.inner._items.pop(shard_id, None)

    async def release(self, shard_id: str) -> None:
        """Release the lease (keeping the last sequence number written) and keep off it a while."""
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

    It creates its :class:`Leases` (``leases``: where and how; ``hooks``: the
    processor's :class:`LeaseHooks`), hands the hooks its listing of the stream's
    shards and queues a :class:`ShardEnd` when async-kinesis finds a shard closed.
    ``buffer_records`` bounds the records fetched and not yet handed out
    (:class:`RecordBuffer`); each GetRecords asks for at most
    ``min(record_limit, buffer_records // 4)`` of them, and :meth:`next_items`
    hands out at most that many at a time, so the process holds at most
    ``buffer_records`` + one fetch of them.

    >>> import asyncio
    >>> async def build():
    ...     where = LeaseSettings("app", endpoint_url="http://127.0.0.1:9", region="us-east-1")
    ...     consumer = LeaseConsumer(
    ...         "iot-telemetry", TakeEveryLease(), where, endpoint_url="http://127.0.0.1:9"
    ...     )
    ...     consumer.leases.inner.heartbeat_task.cancel()
    ...     return consumer.stream_name, consumer.open_shards()
    >>> asyncio.run(build())
    ('iot-telemetry', [])
    """

    _last_shard_refresh: float  # async-kinesis': time.time() of its last shard listing
    _shard_refresh_interval: float

    def __init__(
        self,
        stream: str,
        hooks: LeaseHooks,
        leases: LeaseSettings,
        *,
        shard_refresh: float = 60.0,
        buffer_records: int = 20_000,
        record_limit: int = 10_000,
        **kwargs: object,
    ) -> None:
        chunk = max(1, min(record_limit, buffer_records // 4))
        self.leases = Leases(
            leases, hooks, listing=self.listed, on_shard_closed=self.shard_closed_marker
        )
        super().__init__(
            stream,
            checkpointer=self.leases,
            processor=PassThrough(),
            record_limit=chunk,
            **kwargs,
        )
        self._shard_refresh_interval = shard_refresh
        self.on_lag: Callable[[str, float], None] | None = None
        self.buffer = RecordBuffer(buffer_records, chunk)
        self.queue = _BufferedQueue(self.buffer)
        self._progress: dict[str, _ShardProgress] = {}
        self.listing_failures = 0  # shard listings failed in a row
        self.fetch_failures: dict[str, int] = {}  # shard -> GetRecords failed in a row
        self._closing = asyncio.Event()

    async def refresh_shards(self) -> None:
        """async-kinesis' shard listing, retried with a bounded backoff when it fails.

        async-kinesis logs a failed listing and lists again at its next fetch round,
        every 0.2 s: during a Kinesis outage, 5 calls a second per process (and as many
        log lines).  Here the next try comes after :func:`retry_delay` (at most
        ``shard_refresh``); the shards already held are read on meanwhile.
        """
        interval = self._shard_refresh_interval
        before = self._last_shard_refresh
        if time.time() - before < interval:
            return  # not due (async-kinesis' own check)
        await super().refresh_shards()
        if self._last_shard_refresh != before:
            if self.listing_failures:
                log.info(
                    "listing the shards of %s works again after %d failed tries",
                    self.stream_name,
                    self.listing_failures,
                )
            self.listing_failures = 0
            return
        # Not listed: an error (logged by async-kinesis), or the stream is not ACTIVE.
        self.listing_failures += 1
        delay = retry_delay(self.listing_failures, cap=max(FIRST_RETRY_SECONDS, interval))
        self._last_shard_refresh = time.time() + delay - interval
        if _worth_logging(self.listing_failures):
            log.warning(
                "listing the shards of %s failed %d times in a row; next try in %.1f s "
                "(shards held are read on)",
                self.stream_name,
                self.listing_failures,
                delay,
            )

    def listed(self) -> Sequence[KinesisShard]:
        """The stream's shards as last listed (empty before the first listing)."""
        return self.shards or ()

    def describe(self, shard_id: str) -> KinesisShard | None:
        """The shard's description from the last listing, if listed."""
        for shard in self.shards or ():
            if shard["ShardId"] == shard_id:
                return shard
        return None

    async def get_records(self, shard: KinesisShard) -> GetRecordsOutput | None:
        """One GetRecords of the shard, once the buffer has room for its records."""
        shard_id = shard["ShardId"]
        hold = await self.buffer.reserve()
        if not self.buffer.open:
            self.buffer.release(hold)
            return None
        try:
            epoch = self.leases.epochs.get(shard_id, 0)
            result = await super().get_records(shard)
            if result is None:
                self.buffer.release(hold)
                await self._fetch_failed(shard_id)
                return None
            if self.fetch_failures.pop(shard_id, 0):
                log.info("GetRecords of %s works again", shard_id)
            if self.leases.epochs.get(shard_id, 0) != epoch or not self.leases.is_allocated(
                shard_id
            ):
                self.buffer.release(hold)
                return None  # the lease changed while fetching: the next owner reads these records
            arrived = time.monotonic()
            rows = result["Records"]
            self.buffer.fetched(hold, len(rows))
            progress = self._progress.get(shard_id)
            if progress is None or progress.epoch != epoch:
                progress = self._progress[shard_id] = _ShardProgress(epoch)
            millis = result.get("MillisBehindLatest")
            if rows:
                batch = RecordBatch(
                    shard_id,
                    epoch,
                    [
                        RawRecord(
                            shard_id,
                            row["SequenceNumber"],
                            row["Data"],
                            arrived,
                            epoch,
                            row.get("ApproximateArrivalTimestamp"),
                        )
                        for row in rows
                    ],
                    hold,
                )
                last = dict(rows[-1])
                last["Data"] = batch
                result["Records"] = [last]
                newest = batch.records[-1].in_stream
                if newest is not None and millis is not None:
                    progress.fetched = newest.timestamp()
                    progress.tip = max(progress.tip, progress.fetched + millis / 1000.0)
                elif millis is not None:  # no arrival times: the fetch's own figure, as before
                    SHARD_LAG.labels(shard_id).set(millis / 1000.0)
            else:
                self.buffer.release(hold)
                if millis is not None and progress.handled >= progress.fetched:
                    # Nothing of this shard waits in the process: the fetch's figure is the lag.
                    SHARD_LAG.labels(shard_id).set(millis / 1000.0)
            return result
        except BaseException:
            self.buffer.release(hold)
            raise

    async def _fetch_failed(self, shard_id: str) -> None:
        """A GetRecords of the shard failed (async-kinesis logged why and waited its fixed
        3 s): wait on, so that tries come at most every :func:`retry_delay` + 3 s; the
        lease is kept (DynamoDB heartbeats go on) and the shard read from where it was."""
        failures = self.fetch_failures[shard_id] = self.fetch_failures.get(shard_id, 0) + 1
        delay = max(0.0, retry_delay(failures) - 3.0)
        if _worth_logging(failures):
            log.warning(
                "GetRecords of %s failed %d times in a row; next try in %.1f s (the lease is kept)",
                shard_id,
                failures,
                delay + 3.0,
            )
        if delay and not self._closing.is_set():
            try:
                await asyncio.wait_for(self._closing.wait(), delay)
            except TimeoutError:
                pass

    async def close(self) -> None:
        """async-kinesis' close, after letting go of fetches waiting for room (it awaits them)."""
        self.buffer.close()
        self._closing.set()
        await super().close()

    def handled(self, record: RawRecord) -> None:
        """The processor is done with ``record``: set its shard's lag gauge (module docstring)."""
        progress = self._progress.get(record.shard_id)
        if progress is None or progress.epoch != record.epoch or record.in_stream is None:
            return
        progress.handled = arrived = record.in_stream.timestamp()
        SHARD_LAG.labels(record.shard_id).set(shard_lag(progress.tip, arrived, time.time()))

    async def get_shard_iterator(
        self, shard_id: str, last_sequence_number: str | None = None
    ) -> str:
        """async-kinesis' call, retried with a bound: if it fails right after a lease was taken,
        async-kinesis keeps the lease but never reads the shard."""
        for shard in self.shards or ():
            if shard["ShardId"] == shard_id:
                # async-kinesis renews an expired iterator after "LastSequenceNumber", which is
                # only set once records were queued: before that (a fetch waiting for room in
                # the buffer) it would be a previous lease's position, or the shard's start.
                if last_sequence_number is None:
                    shard.pop("LastSequenceNumber", None)
                else:
                    shard["LastSequenceNumber"] = last_sequence_number
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

    async def next_items(self, limit: int = 1000) -> list[RecordBatch | ShardEnd]:
        """Up to ``limit`` queued items (batches, shard ends) holding at most one fetch's worth
        of records (``record_limit``; the first item always); [] after ``idle_timeout`` without any.

        What ``async for`` over the consumer does, minus its per-item task and its
        checkpoint sentinels (our leases ignore them: see :class:`Leases`).
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
        records = len(first.records) if first.__class__ is RecordBatch else 0
        while len(items) < limit and (nxt := self.queue.peek()) is not None:
            if nxt.__class__ is RecordBatch:
                if records + len(nxt.records) > self.record_limit:
                    break
                records += len(nxt.records)
            items.append(self.queue.get_nowait())
        return [i for i in items if i.__class__ is not dict]  # drop __CHECKPOINT__ sentinels

    async def shard_closed_marker(self, shard_id: str) -> None:
        """Queue a :class:`ShardEnd` behind the shard's last records."""
        await self.queue.put(ShardEnd(shard_id, self.leases.epochs.get(shard_id, 0)))

    def stop(self, shard_id: str) -> None:
        """Stop reading the shard at once (hand-over): it no longer counts as ours, its queued
        records become stale and its iterator is forgotten; the lease is still held."""
        self.leases.give_up(shard_id)
        self.stop_fetching(shard_id)

    async def lose(self, shard_id: str) -> None:
        """Another process holds the shard's lease now: stop reading it and let it go."""
        self.stop(shard_id)
        self.leases.forget(shard_id)
        await self.leases.release(shard_id)

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

    def open_shards(self) -> list[KinesisShard]:
        return [
            s
            for s in self.shards or ()
            if "EndingSequenceNumber" not in s.get("SequenceNumberRange", {})
        ]

"""The processor process: its parts wired in one event loop, and a graceful stop.

:class:`StreamProcessor` ties the parts together, each given what it needs when
it is built (those that need async-kinesis' leases in :meth:`StreamProcessor.run`,
inside the event loop):

- the transport (:mod:`stream.consumer`) hands out batches of records of the
  shards this process leases; the batch loop (:mod:`stream.batches`, the hot
  path) gives each record to :class:`~stream.core.StreamCore` and asks for a
  checkpoint every ``checkpoint_every`` readings of a shard (a packed record holds
  many; a checkpoint still falls between two records);
- checkpoints (:mod:`stream.checkpointing`): S3 first, then DynamoDB, also
  every ``checkpoint_seconds`` and on hand-over or stop;
- the shard lifecycle (:mod:`stream.shards`): lease, resume from the manifest
  (:class:`~stream.shards.ShardLifecycle`, the lease hooks); hand-over, finish a
  closed shard, release (:class:`~stream.shards.Handover`);
- fair sharing between processes (:mod:`stream.sharing`), through presence
  items in the lease table (:mod:`stream.lease_table`);
- the operator command channel (:mod:`stream.control`).

A graceful stop (``stop`` set: SIGTERM, Ctrl-C) writes a final checkpoint of
every shard, then releases the leases.  Each part counts what it did (records
and stale ones, checkpoints, hand-overs): :attr:`StreamProcessor.stats` sums them.

>>> ProcessorOptions().checkpoint_every, ProcessorOptions(session_timeout=6).heartbeat_seconds
(10000, 1.5)
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
from botocore.config import Config

from stream.batch_registry import BatchRegistry, S3Objects
from stream.batch_watch import BatchWatch, zero_metrics
from stream.batches import BatchLoop
from stream.checkpoint import CheckpointStore
from stream.checkpointing import Checkpointer
from stream.consumer import LeaseConsumer, LeaseSettings, RecordBatch, ShardEnd
from stream.control import ControlChannel
from stream.core import StreamCore
from stream.lease_table import LeaseTable, lease_table_name
from stream.output import PredictionWriter
from stream.shards import Handover, ShardLifecycle, lost_lease
from stream.sharing import FairShare
from stream.state import ShardState

if TYPE_CHECKING:
    from online_models.catalog import Catalog
    from online_models.config import TaskConfig

__all__ = ["ProcessorOptions", "ProcessorTarget", "StreamProcessor"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")


@dataclass(frozen=True)
class ProcessorTarget:
    """What a processor talks to: the telemetry and predictions streams, the checkpoint
    bucket, the consumer group (``app``) and AWS (``aws``: per service, ``kinesis``,
    ``s3`` and ``dynamodb``, the keyword arguments of ``boto3.client``: region,
    endpoint, credentials; each service may answer at its own endpoint).

    >>> aws = {"kinesis": {"region_name": "us-east-1", "endpoint_url": "http://k:4567"},
    ...        "s3": {"region_name": "us-east-1"}, "dynamodb": {"region_name": "us-east-1"}}
    >>> t = ProcessorTarget("iot-telemetry", "iot-predictions", "iotcast", "iotcast", aws=aws)
    >>> t.region, t.endpoint("kinesis"), t.endpoint("dynamodb")
    ('us-east-1', 'http://k:4567', None)
    """

    stream: str
    predictions_stream: str
    bucket: str
    app: str
    aws: Mapping[str, Mapping[str, Any]] = field(repr=False)
    hmac_key: str | None = field(default=None, repr=False)

    def endpoint(self, service: str) -> str | None:
        return self.aws[service].get("endpoint_url")

    @property
    def region(self) -> str | None:
        return self.aws["dynamodb"].get("region_name")


@dataclass(frozen=True)
class ProcessorOptions:
    """Knobs of one processor process (the CLI's flags).

    >>> ProcessorOptions(checkpoint_every=500).checkpoint_every
    500
    """

    checkpoint_every: int = 10_000  # readings (not records) of a shard between checkpoints
    checkpoint_seconds: float = 10.0
    max_devices: int = 100_000
    session_timeout: float = 60.0
    heartbeat: float | None = None
    predictions: str = "champion"
    models: str = "default"
    shard_refresh: float = 10.0
    idle_timeout: float = 0.5
    ref: str | None = None
    s3_threads: int = 8
    record_limit: int = 10_000
    # GetRecords per second and shard (async-kinesis' default is 1; Kinesis allows 5 per
    # shard, shared by every consumer of it): a record waits for the next fetch, so at 1
    # a reading spent up to a second in the stream before the processor saw it.
    fetch_rate: int = 4
    # Records fetched and not yet handled, at most (+ one fetch): the backlog of a slow
    # processor stays in Kinesis, where the lag gauge sees it (stream.consumer.RecordBuffer).
    buffer_records: int = 20_000
    # Where this process serves /metrics, advertised in its presence item (iotcast status).
    metrics_url: str | None = None
    # Devices with per-device series (at most monitoring.metrics.MAX_WATCHED).
    watch: frozenset[str] = frozenset()
    worst_k: int = 5  # devices per horizon in the worst-k gauges
    sweep_seconds: float = 5.0  # the fleet's gauges and quiet devices, this often
    # The batch models of `iotcast retrain` (stream.batch_watch): loaded live, shadowed, weighed.
    batch_expert: bool = False
    batch_poll_seconds: float = 30.0
    batch_shadow_seconds: float = 86_400.0  # of stream time
    batch_shadow_scores: int = 1_000  # per horizon

    @property
    def heartbeat_seconds(self) -> float:
        return self.heartbeat if self.heartbeat is not None else max(self.session_timeout / 4, 0.5)


class StreamProcessor:
    """One processor process (see the module docstring). ``run(stop)`` until ``stop`` is set.

    >>> from online_models.catalog import load_catalog
    >>> from online_models.config import TaskConfig
    >>> opts = ProcessorOptions(predictions="none", ref="doc")
    >>> aws = {s: {"region_name": "us-east-1"} for s in ("kinesis", "s3", "dynamodb")}
    >>> where = ProcessorTarget("iot-telemetry", "iot-predictions", "iotcast", "iotcast", aws=aws)
    >>> p = StreamProcessor(where, opts, load_catalog(), TaskConfig())
    >>> p.ref_id, p.states, p.table.table
    ('doc', {}, 'kinesis-checkpoints-iotcast')
    """

    def __init__(
        self, target: ProcessorTarget, options: ProcessorOptions, catalog: Catalog, task: TaskConfig
    ) -> None:
        self.target = target
        self.options = options
        self.ref_id = options.ref or f"{socket.gethostname()}-{os.getpid()}"
        cfg = Config(
            retries={"max_attempts": 5, "mode": "standard"},
            max_pool_connections=options.s3_threads + 4,
        )
        self.s3 = boto3.client("s3", config=cfg, **target.aws["s3"])
        self.dynamodb = boto3.client("dynamodb", config=cfg, **target.aws["dynamodb"])
        self.store = CheckpointStore(self.s3, target.bucket, target.app, target.hmac_key)
        self.writer = None
        if options.predictions != "none":
            kinesis = boto3.client("kinesis", config=cfg, **target.aws["kinesis"])
            self.writer = PredictionWriter(kinesis, target.predictions_stream)
        self.core = StreamCore(
            catalog,
            task,
            writer=self.writer,
            predictions=options.predictions,
            max_devices=options.max_devices,
            models=options.models,
            watch=options.watch,
            worst_k=options.worst_k,
        )
        self.pool = ThreadPoolExecutor(options.s3_threads, thread_name_prefix="checkpoint")
        self.table = LeaseTable(
            self.dynamodb,
            lease_table_name(target.app),
            self.ref_id,
            session_timeout=options.session_timeout,
            metrics_url=options.metrics_url,
        )
        self.states: dict[str, ShardState] = {}  # the shards held; written by the lifecycle only
        self.control = ControlChannel(self.store, self.ref_id, self.states, self.core)
        self.batch_watch: BatchWatch | None = None
        zero_metrics()  # the batch series exist from the start, at 0 without --batch-expert
        if options.batch_expert:
            registry = BatchRegistry(S3Objects(self.s3, target.bucket), target.app, target.hmac_key)
            self.batch_watch = self.core.batch = BatchWatch(
                registry,
                self.ref_id,
                task.horizons,
                shadow_seconds=options.batch_shadow_seconds,
                shadow_scores=options.batch_shadow_scores,
            )
        self.shards = ShardLifecycle(
            self.store, self.pool, self.table, self.core, self.control, self.states
        )
        self._background: set[asyncio.Task] = set()
        # Built by run(), inside the event loop (async-kinesis' leases need a running one):
        self.consumer: LeaseConsumer | None = None
        self.checkpoints: Checkpointer | None = None
        self.handover: Handover | None = None
        self.batches: BatchLoop | None = None

    @property
    def stats(self) -> dict[str, int]:
        """What the parts did so far: records handled and dropped as stale (the batch loop),
        checkpoints written (the checkpointer), hand-overs (the hand-over)."""
        return {
            "records": self.batches.records if self.batches else 0,
            "stale": self.batches.stale if self.batches else 0,
            "handovers": self.handover.handovers if self.handover else 0,
            "checkpoints": self.checkpoints.written if self.checkpoints else 0,
        }

    # ================================================================== run
    async def run(self, stop: asyncio.Event) -> int:
        opts = self.options
        consumer = self.consumer = LeaseConsumer(
            self.target.stream,
            self.shards,
            LeaseSettings(
                self.target.app,
                endpoint_url=self.target.endpoint("dynamodb"),
                region=self.target.region,
                session_timeout=opts.session_timeout,
                heartbeat=opts.heartbeat_seconds,
                ref=self.ref_id,
            ),
            endpoint_url=self.target.endpoint("kinesis"),
            region_name=self.target.region,
            idle_timeout=opts.idle_timeout,
            sleep_time_no_records=0.5,
            shard_fetch_rate=opts.fetch_rate,
            shard_refresh=opts.shard_refresh,
            record_limit=opts.record_limit,
            buffer_records=opts.buffer_records,
            iterator_type="TRIM_HORIZON",
        )
        checkpoints = self.checkpoints = Checkpointer(
            self.store,
            self.pool,
            self.table,
            consumer.leases,
            on_lost_lease=lost_lease(self.shards, consumer),
            watch=opts.watch,
        )
        self.handover = Handover(self.shards, consumer, checkpoints)
        sharing = FairShare(
            self.table, self.shards, consumer, self.handover, opts.heartbeat_seconds
        )
        batches = self.batches = BatchLoop(
            self.core.handle, self.states, checkpoints, consumer.handled, opts.checkpoint_every
        )
        await sharing.presence()
        tasks = [
            asyncio.create_task(
                checkpoints.ticker(self.states, opts.checkpoint_seconds, self._spawn)
            ),
            asyncio.create_task(sharing.run(stop)),
            asyncio.create_task(self.control.run()),  # operator promote/rollback
            asyncio.create_task(self._sweeper()),
        ]
        if self.batch_watch is not None:  # the batch models: load, shadow, judge
            tasks.append(asyncio.create_task(self.batch_watch.run(opts.batch_poll_seconds)))
        try:
            while not stop.is_set():
                items = await consumer.next_items()
                for item in items:
                    if item.__class__ is RecordBatch:
                        await batches.handle(item, stop)
                    else:
                        self._dispatch(item)
                    if stop.is_set():
                        break
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._shutdown(consumer, checkpoints)
        return 0

    async def _sweeper(self) -> None:
        """The fleet's gauges and quiet devices (StreamCore.sweep), every few seconds."""
        while True:
            await asyncio.sleep(self.options.sweep_seconds)
            self.core.sweep(list(self.states.values()))

    def _dispatch(self, item: Any) -> None:
        if item.__class__ is ShardEnd:
            state = self.states.get(item.shard_id)
            if state is not None and state.epoch == item.epoch and state.stop_reading():
                assert self.handover is not None  # run() made it
                self._spawn(self.handover.finish(state))

    def _spawn(self, coro: Coroutine[object, None, _T]) -> asyncio.Task[_T]:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # ============================================================== stop
    async def _shutdown(self, consumer: LeaseConsumer, checkpoints: Checkpointer) -> None:
        """Graceful stop: final checkpoint of every shard, then release the leases."""
        for task in list(self._background):
            await asyncio.gather(task, return_exceptions=True)
        states = list(self.states.values())  # a lost lease drops its state during the gather
        results = await asyncio.gather(
            *(checkpoints.checkpoint(s, final=True) for s in states), return_exceptions=True
        )
        for state, result in zip(states, results, strict=True):
            if result is not True:
                log.error(
                    "final checkpoint of %s failed (%s); a restart resumes from the last manifest",
                    state.shard_id,
                    result,
                )
        self.core.sweep(list(self.states.values()))
        log.info("final checkpoints written; releasing leases")
        await consumer.close()
        await asyncio.to_thread(self.table.remove_presence)
        if self.writer is not None:
            await asyncio.to_thread(self.writer.close)
        self.pool.shutdown(wait=True)
        stats = self.stats
        log.info(
            "stopped: %d records handled, %d checkpoints, %d hand-overs",
            stats["records"],
            stats["checkpoints"],
            stats["handovers"],
        )

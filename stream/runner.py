"""The processor process: leases, the hot loop, checkpoints, fair sharing, graceful stop.

:class:`StreamProcessor` ties the parts together in one event loop:

- the transport (:mod:`stream.consumer`) hands out records of the shards this
  process leases; :class:`~stream.loop.StreamCore` handles each one;
- checkpoints (DESIGN.md, "Checkpoint protocol"): per shard, every
  ``checkpoint_every`` records or ``checkpoint_seconds`` seconds and on
  hand-over or stop, the devices changed since the last checkpoint are
  pickled at a record boundary (on the loop), then written to S3 on a worker
  thread (dead letters first, then artifacts, then the shard manifest), and
  only after S3 accepted the manifest is the sequence number checkpointed in
  DynamoDB.  A shard has at most one checkpoint in flight: the next one waits;
- on taking a lease: the shard's manifest is loaded and verified (sha256 and,
  with a key, the HMAC signature; a tampered checkpoint is refused and the
  shard left alone), the consumer resumes after the manifest's sequence
  number, and records at or below it are never learned again;
- fair sharing: every process writes a presence item into the lease table
  (``process#<ref>``) each heartbeat; each computes its share
  ``ceil(shards with work / live processes)``, caps async-kinesis'
  ``max_shard_consumers`` at it and hands over (final checkpoint, then lease
  release) the shards it holds above it;
- resharding: a child shard is taken only once its parents' manifests say
  ``finished``; its devices' models come from the parents' final manifests
  (the devices whose partition-key hash falls in the child's range).

>>> ProcessorOptions().checkpoint_every, ProcessorOptions(session_timeout=6).heartbeat_seconds
(10000, 1.5)
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import pickle
import socket
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from monitoring import metrics as m
from monitoring.metrics import device_label
from stream.checkpoint import CheckpointStore, DeviceEntry, ShardManifest, TamperedCheckpoint
from stream.consumer import LeaseCheckpointer, LeaseConsumer, LeaseHooks, RecordBatch, ShardEnd
from stream.loop import StreamCore
from stream.output import PredictionWriter, dead_letter_key
from stream.state import DeviceSlot, ShardState, Snapshot, device_hash

__all__ = ["ProcessorOptions", "ProcessorTarget", "StreamProcessor"]

log = logging.getLogger(__name__)

PRESENCE_PREFIX = "process#"
YIELD_SECONDS = 0.02


class LostLease(RuntimeError):
    """Another process holds the shard's lease now: this one must not write its manifest."""


@dataclass(frozen=True)
class ProcessorTarget:
    """What a processor talks to: the telemetry and predictions streams, the checkpoint
    bucket, the consumer group (``app``) and AWS (``aws``: keyword arguments of
    ``boto3.client``; ``kinesis``: the same for Kinesis, which may live elsewhere).

    >>> t = ProcessorTarget("iot-telemetry", "iot-predictions", "iotcast", "iotcast",
    ...                     aws={"region_name": "us-east-1"}, kinesis={"region_name": "us-east-1"})
    >>> t.region, t.endpoint_url, t.kinesis_endpoint_url
    ('us-east-1', None, None)
    """

    stream: str
    predictions_stream: str
    bucket: str
    app: str
    aws: Mapping[str, Any] = field(repr=False)
    kinesis: Mapping[str, Any] = field(repr=False)
    hmac_key: str | None = field(default=None, repr=False)

    @property
    def endpoint_url(self) -> str | None:
        return self.aws.get("endpoint_url")

    @property
    def kinesis_endpoint_url(self) -> str | None:
        return self.kinesis.get("endpoint_url")

    @property
    def region(self) -> str | None:
        return self.aws.get("region_name")


@dataclass(frozen=True)
class ProcessorOptions:
    """Knobs of one processor process (the CLI's flags).

    >>> ProcessorOptions(checkpoint_every=500).checkpoint_every
    500
    """

    checkpoint_every: int = 10_000
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
    # Records fetched and not yet handled, at most (+ one fetch): the backlog of a slow
    # processor stays in Kinesis, where the lag gauge sees it (stream.consumer.RecordBuffer).
    buffer_records: int = 20_000

    @property
    def heartbeat_seconds(self) -> float:
        return self.heartbeat if self.heartbeat is not None else max(self.session_timeout / 4, 0.5)


class StreamProcessor(LeaseHooks):
    """One processor process (see the module docstring). ``run(stop)`` until ``stop`` is set.

    >>> from online_models.catalog import load_catalog
    >>> from online_models.config import TaskConfig
    >>> opts = ProcessorOptions(predictions="none", ref="doc")
    >>> where = ProcessorTarget("iot-telemetry", "iot-predictions", "iotcast", "iotcast",
    ...                         aws={"region_name": "us-east-1"}, kinesis={"region_name": "us-east-1"})
    >>> p = StreamProcessor(where, opts, load_catalog(), TaskConfig())
    >>> p.ref_id, p.states
    ('doc', {})
    """

    def __init__(
        self, target: ProcessorTarget, options: ProcessorOptions, catalog: Any, task: Any
    ) -> None:
        self.target = target
        self.options = options
        self.ref_id = options.ref or f"{socket.gethostname()}-{os.getpid()}"
        cfg = Config(
            retries={"max_attempts": 5, "mode": "standard"},
            max_pool_connections=options.s3_threads + 4,
        )
        self.s3 = boto3.client("s3", config=cfg, **target.aws)
        self.dynamodb = boto3.client("dynamodb", config=cfg, **target.aws)
        self.store = CheckpointStore(self.s3, target.bucket, target.app, target.hmac_key)
        self.writer = None
        if options.predictions != "none":
            kinesis = boto3.client("kinesis", config=cfg, **target.kinesis)
            self.writer = PredictionWriter(kinesis, target.predictions_stream)
        self.core = StreamCore(
            catalog,
            task,
            writer=self.writer,
            predictions=options.predictions,
            max_devices=options.max_devices,
            models=options.models,
        )
        self.pool = ThreadPoolExecutor(options.s3_threads, thread_name_prefix="checkpoint")
        self.states: dict[str, ShardState] = {}
        self.finished: set[str] = set()
        self._tried: dict[str, float] = {}
        self._background: set[asyncio.Task] = set()
        self.leases: LeaseCheckpointer | None = None
        self.control: Any = None
        self.consumer: LeaseConsumer | None = None
        self.live_processes = 1
        self.share: int | None = None
        self.stats = {"records": 0, "stale": 0, "handovers": 0, "checkpoints": 0}
        # After DynamoDB was unreachable (failing, or answering only after the SDK's retries) for
        # longer than a session timeout, every lease looks overdue because nobody could heartbeat,
        # not because its owner died: another process's lease is not taken over until its owner
        # had a session timeout of working DynamoDB to renew it.
        self._dynamodb_seen_at: float | None = None
        self._dynamodb_back_at: float | None = None

    # ================================================================== run
    async def run(self, stop: asyncio.Event) -> int:
        opts = self.options
        self.leases = LeaseCheckpointer(
            self.target.app,
            self,
            endpoint_url=self.target.endpoint_url,
            region=self.target.region,
            session_timeout=opts.session_timeout,
            heartbeat=opts.heartbeat_seconds,
            ref=self.ref_id,
        )
        self.table = self.leases.table_name
        self.consumer = LeaseConsumer(
            self.target.stream,
            self.leases,
            endpoint_url=self.target.kinesis_endpoint_url,
            region_name=self.target.region,
            idle_timeout=opts.idle_timeout,
            sleep_time_no_records=0.5,
            shard_refresh=opts.shard_refresh,
            record_limit=opts.record_limit,
            buffer_records=opts.buffer_records,
            iterator_type="TRIM_HORIZON",
        )
        await self._presence()
        from stream.control import ControlChannel

        self.control = ControlChannel(self.store, self.ref_id)
        tasks = [
            asyncio.create_task(self._ticker()),
            asyncio.create_task(self._maintenance(stop)),
            asyncio.create_task(self.control.run(self)),  # operator promote/rollback
        ]
        try:
            while not stop.is_set():
                items = await self.consumer.next_items()
                if not items:
                    self.core.refresh_figures(list(self.states.values()))
                for item in items:
                    if item.__class__ is RecordBatch:
                        await self._handle_batch(item, stop)
                    else:
                        self._dispatch(item)
                    if stop.is_set():
                        break
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._shutdown()
        return 0

    async def _handle_batch(self, batch: RecordBatch, stop: asyncio.Event) -> None:
        """Handle a batch record by record, checkpointing at record boundaries as due and
        yielding to the event loop every few milliseconds (lease heartbeats, S3 writes)."""
        handle = self.core.handle
        handled = self.consumer.handled  # the lag gauge, at every yield and the batch's end
        every = self.options.checkpoint_every
        clock = time.monotonic
        budget = clock() + YIELD_SECONDS
        last = None
        for rec in batch.records:
            state = self.states.get(rec.shard_id)
            if state is None or state.epoch != rec.epoch or state.ending:
                self.stats["stale"] += 1
                continue
            handle(state, rec.sequence, rec.data, rec.arrived)
            last = rec
            self.stats["records"] += 1
            if state.since_checkpoint >= every and (
                state.inflight is None or state.inflight.done()
            ):
                await self._checkpoint(state)  # snapshot now; the writing runs on its own
            if clock() >= budget:
                handled(rec)
                await asyncio.sleep(0)
                budget = clock() + YIELD_SECONDS
                if stop.is_set():
                    return
        if last is not None:
            handled(last)

    def _dispatch(self, item: Any) -> None:
        if item.__class__ is ShardEnd:
            state = self.states.get(item.shard_id)
            if state is not None and state.epoch == item.epoch and not state.ending:
                state.ending = True
                self._spawn(self._finish_shard(state))

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # =========================================================== checkpoints
    async def _checkpoint(
        self, state: ShardState, *, final: bool = False, finished: bool = False
    ) -> bool:
        """Snapshot the shard at this record boundary and write it (S3, then DynamoDB)."""
        if state.inflight is not None and not state.inflight.done():
            if not final:
                return False
            await asyncio.gather(state.inflight, return_exceptions=True)
        nothing_new = (
            not state.dirty and not state.dead_letters and state.last_seq == state.committed_seq
        )
        if nothing_new and not finished:
            return True
        snap = state.snapshot(finished=finished)
        task = asyncio.ensure_future(self._write(state, snap))
        state.inflight = task
        return await task if final else True

    async def _write(self, state: ShardState, snap: Snapshot) -> bool:
        t0 = time.monotonic()
        loop = asyncio.get_running_loop()
        try:
            entries = await loop.run_in_executor(None, self._write_s3, snap)
        except LostLease as exc:
            m.CHECKPOINTS.labels(state.shard_id, "lost_lease").inc()
            log.error("%s; dropping the shard without writing its manifest", exc)
            if self.leases is not None and self.consumer is not None:
                self.leases.give_up(state.shard_id)
                self.consumer.stop_fetching(state.shard_id)
                self._drop_state(state)
                self.leases.inner._items.pop(state.shard_id, None)
                await self.leases.release(state.shard_id)
            return False
        except (ClientError, BotoCoreError, OSError) as exc:
            state.failed(snap)
            m.CHECKPOINTS.labels(state.shard_id, "failed").inc()
            log.error(
                "checkpoint of %s at %s not written to S3 (%s); DynamoDB left where it was, "
                "the next checkpoint retries",
                state.shard_id,
                snap.sequence,
                exc,
            )
            return False
        state.committed_ok(snap, entries)
        for device, entry in entries.items():
            m.MODEL_VERSION.labels(device_label(device)).set(entry.version)
        if snap.sequence is not None and self.leases is not None:
            try:
                await self.leases.commit(state.shard_id, snap.sequence)
            except Exception as exc:  # noqa: BLE001 - async-kinesis raises bare Exception on a lost lease
                m.CHECKPOINTS.labels(state.shard_id, "dynamodb_failed").inc()
                log.warning(
                    "S3 holds %s at %s but DynamoDB refused the checkpoint (%s); a restart "
                    "resumes from the S3 manifest",
                    state.shard_id,
                    snap.sequence,
                    exc,
                )
                return True
        elapsed = time.monotonic() - t0
        m.CHECKPOINT_SECONDS.observe(elapsed)
        m.CHECKPOINTS.labels(state.shard_id, "ok").inc()
        m.CHECKPOINT_AGE.labels(state.shard_id).set(0)
        self.stats["checkpoints"] += 1
        log.debug(
            "checkpoint %s @ %s: %d devices in %.3fs",
            state.shard_id,
            snap.sequence,
            len(entries),
            elapsed,
        )
        return True

    def _write_s3(self, snap: Snapshot) -> dict[str, DeviceEntry]:
        """On a worker thread: dead letters, artifacts, then (still the owner?) the manifest."""
        if snap.dead_letters:
            self.store.put_object(
                dead_letter_key(), b"".join(snap.dead_letters), "application/x-ndjson"
            )
        futures = [
            (
                device,
                self.pool.submit(
                    self.store.put_device,
                    device,
                    version,
                    payload,
                    samples,
                    metrics,
                    shard_id=snap.shard_id,
                    sequence=snap.sequence,
                ),
            )
            for device, version, payload, samples, metrics in snap.artifacts
        ]
        entries = {device: f.result() for device, f in futures}
        self._check_owner(snap.shard_id)
        self.store.put_shard_manifest(
            ShardManifest(
                snap.shard_id, snap.sequence, {**snap.committed, **entries}, finished=snap.finished
            )
        )
        return entries

    def _check_owner(self, shard_id: str) -> None:
        item = self.dynamodb.get_item(
            TableName=self.table, Key={"shard_id": {"S": shard_id}}, ConsistentRead=True
        ).get("Item", {})
        self._dynamodb_answered()
        ref = item.get("ref", {}).get("S")
        if ref is not None and self.leases is not None and ref != self.leases.get_ref():
            raise LostLease(f"shard {shard_id} is now leased by {ref}")

    async def _finish_shard(self, state: ShardState) -> None:
        """A closed shard's last record is handled: final manifest (finished), then release."""
        ok = await self._checkpoint(state, final=True, finished=True)
        if not ok:
            log.error(
                "final checkpoint of closed shard %s failed; it stays leased and is retried "
                "on restart",
                state.shard_id,
            )
            state.ending = False
            return
        self.finished.add(state.shard_id)
        self._drop_state(state)
        assert self.leases is not None
        await self.leases.release(state.shard_id)
        log.info("shard %s finished at %s; its children may start", state.shard_id, state.last_seq)

    def _drop_state(self, state: ShardState) -> None:
        if self.states.get(state.shard_id) is state:
            del self.states[state.shard_id]
            self.core.release(state)
        m.SHARD_OWNED.labels(state.shard_id).set(0)

    async def hand_over(self, shard_id: str) -> None:
        """Give a shard to another process: stop reading it, final checkpoint, release the lease."""
        assert self.leases is not None and self.consumer is not None
        state = self.states.get(shard_id)
        self.leases.give_up(shard_id)
        self.consumer.stop_fetching(shard_id)
        if state is not None:
            # No more records and no other checkpoint for it: the hot loop used to learn
            # queued records during the final write and snapshot them again, writing a
            # manifest after the lease was released (the demo's "DynamoDB refused" warning).
            state.ending = True
        try:
            if state is not None:
                if not await self._checkpoint(state, final=True):
                    log.error(
                        "hand-over of %s: final checkpoint failed; releasing anyway, the next "
                        "owner resumes from the last manifest",
                        shard_id,
                    )
                self._drop_state(state)
        finally:
            await self.leases.release(shard_id)
        self.stats["handovers"] += 1
        log.info("handed over %s at %s", shard_id, state.last_seq if state else None)

    # ================================================================ leases
    def _shard(self, shard_id: str) -> dict[str, Any] | None:
        for s in (self.consumer.shards if self.consumer else None) or ():
            if s["ShardId"] == shard_id:
                return s
        return None

    async def may_allocate(self, shard_id: str) -> bool:
        now = time.monotonic()
        if now - self._tried.get(shard_id, 0.0) < 1.0:
            return False
        self._tried[shard_id] = now
        shard = self._shard(shard_id) or {}
        parents = [p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p]
        for parent in parents:
            if parent in self.finished or self._shard(parent) is None:
                continue
            manifest = await asyncio.to_thread(self._manifest_or_none, parent)
            if manifest is None or not manifest.finished:
                return False
            self.finished.add(parent)
        return await asyncio.to_thread(self._lease_free, shard_id)

    def _manifest_or_none(self, shard_id: str) -> ShardManifest | None:
        try:
            return self.store.load_shard_manifest(shard_id)
        except TamperedCheckpoint as exc:
            log.error("manifest of %s refused: %s", shard_id, exc)
            return None

    def _dynamodb_answered(self) -> None:
        """Note an answer from DynamoDB; after a silence over a session timeout, start the grace."""
        now = time.monotonic()
        last = self._dynamodb_seen_at
        if last is not None and now - last > self.options.session_timeout:
            self._dynamodb_back_at = now
            log.warning(
                "DynamoDB did not answer for %.0fs; leases of other processes are left to them "
                "for %.0fs (they could not heartbeat either)",
                now - last,
                self.options.session_timeout,
            )
        self._dynamodb_seen_at = now

    def _in_grace(self) -> bool:
        back = self._dynamodb_back_at
        return back is not None and time.monotonic() - back < self.options.session_timeout

    def _lease_free(self, shard_id: str) -> bool:
        """False while another live process holds the lease (saves async-kinesis' 1 s back-off)."""
        try:
            item = self.dynamodb.get_item(
                TableName=self.table, Key={"shard_id": {"S": shard_id}}
            ).get("Item")
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                return True
            raise
        self._dynamodb_answered()
        if not item or "ref" not in item or "S" not in item["ref"]:
            return True
        if self._in_grace():
            return False  # overdue only because DynamoDB was unreachable: let its owner renew it
        ts = float(item.get("ts", {}).get("N", 0))
        return time.time() - ts >= self.options.session_timeout

    async def on_allocated(self, shard_id: str, sequence: str | None, epoch: int) -> str | None:
        assert self.leases is not None
        try:
            state, resume = await asyncio.to_thread(self._load_state, shard_id, sequence, epoch)
        except TamperedCheckpoint as exc:
            self.leases.refused.add(shard_id)
            m.CHECKPOINTS.labels(shard_id, "tampered").inc()
            log.error(
                "REFUSING shard %s: its checkpoint fails verification (%s: %s). Restore a good "
                "manifest or remove it (the shard's models then start afresh); this process "
                "leaves the shard alone until restarted",
                shard_id,
                exc.reason,
                exc,
            )
            return None
        self.states[shard_id] = state
        self.core.adopt(state)
        if self.control is not None:
            self.control.adopt(state)
        m.SHARD_OWNED.labels(shard_id).set(1)
        m.CHECKPOINT_AGE.labels(shard_id).set(0)
        log.info(
            "leased %s: %d devices, resuming after %s (DynamoDB had %s)",
            shard_id,
            len(state.devices),
            resume,
            sequence,
        )
        return resume

    def _load_state(
        self, shard_id: str, sequence: str | None, epoch: int
    ) -> tuple[ShardState, str | None]:
        manifest = self.store.load_shard_manifest(shard_id)
        devices: dict[str, DeviceSlot] = {}
        if manifest is not None:
            devices = self._load_devices(manifest.devices)
            resume = manifest.sequence
            if sequence is not None and resume is not None and int(sequence) > int(resume):
                log.warning(
                    "DynamoDB's checkpoint of %s (%s) is ahead of its S3 manifest (%s); "
                    "resuming from the manifest so nothing goes unlearned",
                    shard_id,
                    sequence,
                    resume,
                )
            elif resume != sequence:
                log.info(
                    "resuming %s from its S3 manifest at %s (DynamoDB: %s)",
                    shard_id,
                    resume,
                    sequence,
                )
        else:
            resume = sequence
            if sequence is not None:
                log.warning(
                    "shard %s has a DynamoDB checkpoint (%s) but no S3 manifest: its models "
                    "start afresh from there",
                    shard_id,
                    sequence,
                )
            shard = self._shard(shard_id) or {}
            inherited = self._inherit(shard)
            devices.update(inherited)
        state = ShardState(shard_id, epoch, manifest, devices)
        if manifest is None and devices:
            state.dirty.update(devices)  # the child's first manifest must list them
        return state, resume

    def _load_devices(self, entries: dict[str, DeviceEntry]) -> dict[str, DeviceSlot]:
        def load(item: tuple[str, DeviceEntry]) -> tuple[str, DeviceSlot]:
            device, entry = item
            return device, DeviceSlot(
                pickle.loads(self.store.load_device(device, entry)), entry.version
            )

        return dict(self.pool.map(load, entries.items()))

    def _inherit(self, shard: dict[str, Any]) -> dict[str, DeviceSlot]:
        """A child shard's devices: from its parents' final manifests, by partition-key hash."""
        parents = [p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p]
        if not parents:
            return {}
        lo = int(shard["HashKeyRange"]["StartingHashKey"])
        hi = int(shard["HashKeyRange"]["EndingHashKey"])
        devices: dict[str, DeviceSlot] = {}
        for parent in parents:
            manifest = self.store.load_shard_manifest(parent)
            if manifest is None:
                continue
            mine = {d: e for d, e in manifest.devices.items() if lo <= device_hash(d) <= hi}
            devices.update(self._load_devices(mine))
            log.info("child %s inherits %d devices from %s", shard["ShardId"], len(mine), parent)
        return devices

    async def on_shard_end(self, shard_id: str) -> None:
        assert self.consumer is not None
        await self.consumer.shard_closed_marker(shard_id)

    # ====================================================== periodic work
    async def _ticker(self) -> None:
        """Time-based checkpoints and checkpoint age, four times a second."""
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for state in list(self.states.values()):
                m.CHECKPOINT_AGE.labels(state.shard_id).set(now - state.last_checkpoint)
                if state.ending or (state.inflight is not None and not state.inflight.done()):
                    continue
                if now - state.last_checkpoint >= self.options.checkpoint_seconds and (
                    state.dirty or state.dead_letters or state.last_seq != state.committed_seq
                ):
                    self._spawn(self._checkpoint(state))

    async def _maintenance(self, stop: asyncio.Event) -> None:
        """Presence, fair share and hand-overs, finished parents; every heartbeat."""
        while not stop.is_set():
            await asyncio.sleep(self.options.heartbeat_seconds)
            try:
                await self._presence()
                await self._rebalance()
            except (ClientError, BotoCoreError) as exc:
                log.warning("presence/rebalance round failed (%s); retrying next heartbeat", exc)

    async def _presence(self) -> None:
        self.live_processes = await asyncio.to_thread(self._write_presence)

    def _write_presence(self) -> int:
        now = time.time()
        try:
            self.dynamodb.put_item(
                TableName=self.table,
                Item={
                    "shard_id": {"S": PRESENCE_PREFIX + self.ref_id},
                    "ts": {"N": str(int(now))},
                    "ttl": {"N": str(int(now + 86_400))},
                },
            )
            items = []
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
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
            self._dynamodb_answered()
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                return 1  # lease table not created yet (the first lease creates it)
            raise
        live = sum(1 for it in items if now - float(it["ts"]["N"]) < self.options.session_timeout)
        return max(live, 1)

    def _remove_presence(self) -> None:
        try:
            self.dynamodb.delete_item(
                TableName=self.table, Key={"shard_id": {"S": PRESENCE_PREFIX + self.ref_id}}
            )
        except ClientError as exc:
            log.warning(
                "could not remove this process's presence item (%s); it expires after "
                "the session timeout",
                exc,
            )

    async def _rebalance(self) -> None:
        assert self.consumer is not None and self.leases is not None
        shards = self.consumer.shards or []
        for s in shards:
            sid = s["ShardId"]
            closed = "EndingSequenceNumber" in s.get("SequenceNumberRange", {})
            if closed and sid not in self.finished and sid not in self.states:
                manifest = await asyncio.to_thread(self._manifest_or_none, sid)
                if manifest is not None and manifest.finished:
                    self.finished.add(sid)
            if sid in self.finished:
                self.consumer.mark_finished(sid)
        work = [s for s in shards if s["ShardId"] not in self.finished]
        if shards:  # an empty list means "not listed yet", not a stream without shards
            m.STREAM_SHARDS.set(len(self.consumer.open_shards()))
        if not work:
            return
        share = max(1, math.ceil(len(work) / self.live_processes))
        self.share = share
        self.consumer.max_shard_consumers = share
        owned = sorted(self.states)
        excess = len(owned) - share
        if excess > 0:
            log.info(
                "%d live processes, %d shards: my share is %d, handing over %d",
                self.live_processes,
                len(work),
                share,
                excess,
            )
            for shard_id in owned[-excess:]:
                await self.hand_over(shard_id)

    # ============================================================== stop
    async def _shutdown(self) -> None:
        """Graceful stop: final checkpoint of every shard, then release the leases."""
        for task in list(self._background):
            await asyncio.gather(task, return_exceptions=True)
        states = list(self.states.values())  # a lost lease drops its state during the gather
        results = await asyncio.gather(
            *(self._checkpoint(s, final=True) for s in states), return_exceptions=True
        )
        for state, result in zip(states, results, strict=True):
            if result is not True:
                log.error(
                    "final checkpoint of %s failed (%s); a restart resumes from the last manifest",
                    state.shard_id,
                    result,
                )
        self.core.refresh_figures(list(self.states.values()))
        log.info("final checkpoints written; releasing leases")
        if self.consumer is not None:
            await self.consumer.close()
        await asyncio.to_thread(self._remove_presence)
        if self.writer is not None:
            await asyncio.to_thread(self.writer.close)
        self.pool.shutdown(wait=True)
        log.info(
            "stopped: %d records handled, %d checkpoints, %d hand-overs",
            self.stats["records"],
            self.stats["checkpoints"],
            self.stats["handovers"],
        )

"""Checkpoints of the shards a processor holds (DESIGN.md, "Checkpoint protocol").

Per shard, every ``checkpoint_every`` readings (the batch loop asks, at the first
record boundary past them: a packed record holds many) or
``checkpoint_seconds`` seconds (:meth:`Checkpointer.ticker`) and on hand-over
or stop, the devices changed since the last checkpoint are pickled at a
record boundary (on the event loop: :meth:`~stream.state.ShardState.snapshot`),
then written on a worker thread: dead letters first, then the changed
devices' artifacts as one bundle (:meth:`~stream.checkpoint.CheckpointStore.put_bundle`,
compressed and hashed on ``pool``'s threads), then, while this process still
holds the lease, the shard manifest.  Only after S3 accepted the manifest is the sequence number
written in DynamoDB (:meth:`stream.consumer.Leases.write_sequence`).  A
shard has at most one checkpoint in flight: the next one waits.

>>> import asyncio
>>> from stream.state import ShardState
>>> writer = Checkpointer(store=None, pool=None, table=None, leases=None, on_lost_lease=None)
>>> asyncio.run(writer.checkpoint(ShardState("shardId-0", epoch=1)))  # nothing new: nothing written
True
>>> writer.written
0
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from monitoring import metrics as m
from stream.checkpoint import CheckpointStore, DeviceEntry, ShardManifest
from stream.events import events_key
from stream.lease_table import LeaseTable, LostLease
from stream.output import dead_letter_key
from stream.state import ShardSnapshot, ShardState

if TYPE_CHECKING:
    from stream.consumer import Leases

__all__ = ["Checkpointer"]

log = logging.getLogger(__name__)


class Checkpointer:
    """Snapshots shards at record boundaries and writes them: S3 first, then DynamoDB."""

    def __init__(
        self,
        store: CheckpointStore,
        pool: ThreadPoolExecutor,
        table: LeaseTable,
        leases: Leases,
        on_lost_lease: Callable[[ShardState], Awaitable[None]],
        watch: frozenset[str] = frozenset(),
    ) -> None:
        """Write through ``store`` (S3), compressing on ``pool``'s threads, and ``leases``
        (the sequence number in DynamoDB); ``table`` says whether this process still holds a
        shard, ``on_lost_lease`` drops a shard another process holds now."""
        self.store = store
        self.pool = pool
        self.table = table
        self.leases = leases
        self.on_lost_lease = on_lost_lease
        self.watch = watch  # devices whose checkpoint version is a series
        self.written = 0  # checkpoints written in full (S3 and DynamoDB)

    async def checkpoint(
        self, state: ShardState, *, final: bool = False, finished: bool = False
    ) -> bool:
        """Snapshot the shard at this record boundary and write it (S3, then DynamoDB).

        Not ``final``: returns at once (False when one is still in flight), the writing
        runs on its own.  ``final``: waits for the one in flight, then for this one."""
        writing = state.writing()
        if writing is not None:
            if not final:
                return False
            await asyncio.gather(writing, return_exceptions=True)
        if not state.pending() and not finished:
            return True
        snap = state.snapshot(finished=finished)
        task = asyncio.ensure_future(self._write(state, snap))
        state.write_started(task)
        return await task if final else True

    async def ticker(
        self,
        states: dict[str, ShardState],
        every: float,
        spawn: Callable[[Coroutine[object, None, bool]], object],
    ) -> None:
        """Time-based checkpoints (``spawn``-ed) and the checkpoint age, four times a second."""
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for state in list(states.values()):
                m.CHECKPOINT_AGE.labels(state.shard_id).set(now - state.last_checkpoint)
                if not state.reading or state.writing() is not None:
                    continue
                if now - state.last_checkpoint >= every and state.pending():
                    spawn(self.checkpoint(state))

    async def _write(self, state: ShardState, snap: ShardSnapshot) -> bool:
        t0 = time.monotonic()
        loop = asyncio.get_running_loop()
        try:
            entries = await loop.run_in_executor(None, self._write_s3, snap)
        except LostLease as exc:
            m.CHECKPOINTS.labels(state.shard_id, "lost_lease").inc()
            log.error("%s; dropping the shard without writing its manifest", exc)
            await self.on_lost_lease(state)
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
        for device in self.watch.intersection(entries):
            m.MODEL_VERSION.labels(device).set(entries[device].version)
        if snap.sequence is not None:
            try:
                await self.leases.write_sequence(state.shard_id, snap.sequence)
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
        self.written += 1
        log.debug(
            "checkpoint %s @ %s: %d devices in %.3fs",
            state.shard_id,
            snap.sequence,
            len(entries),
            elapsed,
        )
        return True

    def _write_s3(self, snap: ShardSnapshot) -> dict[str, DeviceEntry]:
        """On a worker thread: dead letters, events, the changed devices' bundle, then (still
        the owner?) the manifest: at most 4 PUTs, or 5 + one per 8 MiB part when the bundle
        is a multipart upload, however many devices changed."""
        if snap.dead_letters:
            self.store.put_object(
                dead_letter_key(), b"".join(snap.dead_letters), "application/x-ndjson"
            )
        if snap.events:
            self.store.put_object(
                events_key(self.store.app, snap.shard_id),
                b"".join(snap.events),
                "application/x-ndjson",
            )
        entries = self.store.put_bundle(
            snap.shard_id, snap.sequence, snap.artifacts, snap.committed, self.pool.map
        )
        self.table.check_owner(snap.shard_id, self.leases.get_ref())
        self.store.put_shard_manifest(
            ShardManifest(
                snap.shard_id, snap.sequence, {**snap.committed, **entries}, finished=snap.finished
            )
        )
        return entries

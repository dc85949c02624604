"""The life of a leased shard in a processor: lease, resume, hand over, finish, release.

:class:`ShardLifecycle` answers async-kinesis' lease calls
(:class:`~stream.consumer.LeaseHooks`) and holds the states of the shards
this process leases:

- before a lease is taken: a child shard waits until its parents' manifests
  say ``finished``; a lease another live process holds is left alone;
- on taking a lease: the shard's manifest is loaded and verified (sha256 and,
  with a key, the HMAC signature; a tampered checkpoint is refused and the
  shard left alone), the consumer resumes after the manifest's sequence
  number, and records at or below it are never learned again; a child
  without a manifest inherits its devices' models from its parents' final
  manifests (the devices whose partition-key hash falls in its range);
- hand-over (fair sharing, :mod:`stream.sharing`): stop reading the shard,
  final checkpoint, release the lease;
- a closed shard whose last record is handled: final manifest marked
  ``finished``, then release (its children may start);
- a lease lost to another process: the shard is dropped without a manifest.

>>> lifecycle = ShardLifecycle(None, None, None, None, None, {})
>>> lifecycle.states, lifecycle.finished
({}, set())
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from monitoring import metrics as m
from stream.checkpoint import CheckpointStore, DeviceEntry, ShardManifest, TamperedCheckpoint
from stream.checkpointing import Checkpointer
from stream.consumer import KinesisShard, LeaseCheckpointer, LeaseConsumer, LeaseHooks
from stream.control import ControlChannel
from stream.lease_table import LeaseTable
from stream.loop import StreamCore
from stream.state import DeviceSlot, ShardState, device_hash

__all__ = ["ShardLifecycle"]

log = logging.getLogger(__name__)


def _parents(shard: KinesisShard) -> list[str]:
    return [p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p]


@dataclass(eq=False)
class ShardLifecycle(LeaseHooks):
    """The shards a processor leases, from lease to release (see the module docstring).

    It reads and writes checkpoints through ``store`` (``pool``: threads that load
    devices), asks ``table`` whether a lease is free, hands records' states to
    ``core`` and writes final checkpoints with ``checkpoints``; the leases, the
    consumer and the control channel come with :meth:`attach`, once the processor runs.
    """

    store: CheckpointStore
    pool: ThreadPoolExecutor
    table: LeaseTable
    core: StreamCore
    checkpoints: Checkpointer
    stats: dict[str, int]
    states: dict[str, ShardState] = field(default_factory=dict, init=False)
    finished: set[str] = field(default_factory=set, init=False)  # final manifest says so
    leases: LeaseCheckpointer | None = field(default=None, init=False)
    consumer: LeaseConsumer | None = field(default=None, init=False)
    control: ControlChannel | None = field(default=None, init=False)
    _tried: dict[str, float] = field(default_factory=dict, init=False)

    def attach(
        self, leases: LeaseCheckpointer, consumer: LeaseConsumer, control: ControlChannel
    ) -> None:
        self.leases, self.consumer, self.control = leases, consumer, control

    def shard(self, shard_id: str) -> KinesisShard | None:
        """The shard's description from the consumer's last listing, if listed."""
        for s in (self.consumer.shards if self.consumer else None) or ():
            if s["ShardId"] == shard_id:
                return s
        return None

    def manifest_or_none(self, shard_id: str) -> ShardManifest | None:
        try:
            return self.store.load_shard_manifest(shard_id)
        except TamperedCheckpoint as exc:
            log.error("manifest of %s refused: %s", shard_id, exc)
            return None

    # ------------------------------------------------------------------ lease
    async def may_allocate(self, shard_id: str) -> bool:
        now = time.monotonic()
        if now - self._tried.get(shard_id, 0.0) < 1.0:
            return False
        self._tried[shard_id] = now
        for parent in _parents(self.shard(shard_id) or {}):
            if parent in self.finished or self.shard(parent) is None:
                continue
            manifest = await asyncio.to_thread(self.manifest_or_none, parent)
            if manifest is None or not manifest.finished:
                return False
            self.finished.add(parent)
        return await asyncio.to_thread(self.table.lease_free, shard_id)

    async def on_allocated(self, shard_id: str, sequence: str | None, epoch: int) -> str | None:
        try:
            state, resume = await asyncio.to_thread(self._load_state, shard_id, sequence, epoch)
        except TamperedCheckpoint as exc:
            assert self.leases is not None  # attached: async-kinesis calls this
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

    async def on_shard_end(self, shard_id: str) -> None:
        assert self.consumer is not None  # attached: async-kinesis calls this
        await self.consumer.shard_closed_marker(shard_id)

    # ----------------------------------------------------------------- resume
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
            devices.update(self._inherit(self.shard(shard_id) or {}))
        state = ShardState(shard_id, epoch, manifest, devices)
        if manifest is None and devices:
            state.dirty.update(devices)  # the child's first manifest must list them
        return state, resume

    def _load_devices(self, entries: dict[str, DeviceEntry]) -> dict[str, DeviceSlot]:
        def load(item: tuple[str, DeviceEntry]) -> tuple[str, DeviceSlot]:
            device, entry = item
            return device, DeviceSlot(self.store.load_models(device, entry), entry.version)

        return dict(self.pool.map(load, entries.items()))

    def _inherit(self, shard: KinesisShard) -> dict[str, DeviceSlot]:
        """A child shard's devices: from its parents' final manifests, by partition-key hash."""
        parents = _parents(shard)
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

    # ---------------------------------------------------------------- release
    async def hand_over(self, shard_id: str) -> None:
        """Give a shard to another process: stop reading it, final checkpoint, release the lease."""
        state = self.states.get(shard_id)
        assert self.leases is not None and self.consumer is not None  # attached: running
        self.leases.give_up(shard_id)
        self.consumer.stop_fetching(shard_id)
        if state is not None:
            # No more records and no other checkpoint for it: the hot loop used to learn
            # queued records during the final write and snapshot them again, writing a
            # manifest after the lease was released (the demo's "DynamoDB refused" warning).
            state.ending = True
        try:
            if state is not None:
                if not await self.checkpoints.checkpoint(state, final=True):
                    log.error(
                        "hand-over of %s: final checkpoint failed; releasing anyway, the next "
                        "owner resumes from the last manifest",
                        shard_id,
                    )
                self.drop(state)
        finally:
            await self.leases.release(shard_id)
        self.stats["handovers"] += 1
        log.info("handed over %s at %s", shard_id, state.last_seq if state else None)

    async def finish(self, state: ShardState) -> None:
        """A closed shard's last record is handled: final manifest (finished), then release."""
        ok = await self.checkpoints.checkpoint(state, final=True, finished=True)
        if not ok:
            log.error(
                "final checkpoint of closed shard %s failed; it stays leased and is retried "
                "on restart",
                state.shard_id,
            )
            state.ending = False
            return
        self.finished.add(state.shard_id)
        self.drop(state)
        assert self.leases is not None  # attached: running
        await self.leases.release(state.shard_id)
        log.info("shard %s finished at %s; its children may start", state.shard_id, state.last_seq)

    async def lost(self, state: ShardState) -> None:
        """Another process holds the shard's lease now: drop it without writing a manifest."""
        if self.leases is None or self.consumer is None:
            return
        self.leases.give_up(state.shard_id)
        self.consumer.stop_fetching(state.shard_id)
        self.drop(state)
        self.leases.inner._items.pop(state.shard_id, None)
        await self.leases.release(state.shard_id)

    def drop(self, state: ShardState) -> None:
        if self.states.get(state.shard_id) is state:
            del self.states[state.shard_id]
            self.core.release(state)
        m.SHARD_OWNED.labels(state.shard_id).set(0)

"""The life of a leased shard in a processor: lease, resume, hand over, finish, release.

:class:`ShardLifecycle` answers the lease hooks (:class:`~stream.consumer.LeaseHooks`)
and holds the states of the shards this process leases:

- before a lease is taken (:meth:`~ShardLifecycle.may_allocate`): a child
  shard waits until its parents' manifests say ``finished``; a lease another
  live process holds is left alone;
- on taking a lease (:meth:`~ShardLifecycle.on_allocated`): the shard's
  manifest is loaded and verified (sha256 and, with a key, the HMAC
  signature; a tampered checkpoint is refused and the shard left alone), the
  consumer resumes after the manifest's sequence number, and records at or
  below it are never learned again; a child without a manifest inherits its
  devices' models from its parents' final manifests (the devices whose
  partition-key hash falls in its range).

:class:`Handover` lets shards go, once the processor runs:

- hand-over (fair sharing, :mod:`stream.sharing`): stop reading the shard,
  final checkpoint, release the lease;
- a closed shard whose last record is handled: final manifest marked
  ``finished``, then release (its children may start);
- a lease lost to another process (:func:`lost_lease`, the checkpointer's
  callback): the shard is dropped without a manifest.

>>> lifecycle = ShardLifecycle(None, None, None, None, None, states={})
>>> lifecycle.states, lifecycle.finished
({}, set())
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from monitoring import metrics as m
from stream.checkpoint import CheckpointStore, DeviceEntry, ShardManifest, TamperedCheckpoint
from stream.checkpointing import Checkpointer
from stream.consumer import KinesisShard, LeaseConsumer, LeaseHooks, RefuseLease
from stream.control import ControlChannel
from stream.core import StreamCore
from stream.lease_table import LeaseTable
from stream.state import DeviceSlot, ShardState, device_hash

__all__ = ["Handover", "ShardLifecycle", "lost_lease"]

log = logging.getLogger(__name__)


def _parents(shard: KinesisShard) -> list[str]:
    return [p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p]


def _find(listed: Sequence[KinesisShard], shard_id: str) -> KinesisShard | None:
    for s in listed:
        if s["ShardId"] == shard_id:
            return s
    return None


@dataclass(eq=False)
class ShardLifecycle(LeaseHooks):
    """The shards a processor leases, from lease to release (see the module docstring).

    It reads checkpoints through ``store`` (``pool``: threads that load devices),
    asks ``table`` whether a lease is free, and hands a newly leased shard's state
    to ``core`` and ``control``.  ``states`` (shard id -> state, the processor's one
    dict, read by the batch loop and the control channel) is written here only.
    """

    store: CheckpointStore
    pool: ThreadPoolExecutor
    table: LeaseTable
    core: StreamCore
    control: ControlChannel
    states: dict[str, ShardState]
    finished: set[str] = field(default_factory=set, init=False)  # final manifest says so
    _tried: dict[str, float] = field(default_factory=dict, init=False)

    def manifest_or_none(self, shard_id: str) -> ShardManifest | None:
        try:
            return self.store.load_shard_manifest(shard_id)
        except TamperedCheckpoint as exc:
            log.error("manifest of %s refused: %s", shard_id, exc)
            return None

    # ------------------------------------------------------- lease hooks (Leases.allocate)
    async def may_allocate(self, shard_id: str, listed: Sequence[KinesisShard]) -> bool:
        now = time.monotonic()
        if now - self._tried.get(shard_id, 0.0) < 1.0:
            return False
        self._tried[shard_id] = now
        for parent in _parents(_find(listed, shard_id) or {}):
            if parent in self.finished or _find(listed, parent) is None:
                continue
            manifest = await asyncio.to_thread(self.manifest_or_none, parent)
            if manifest is None or not manifest.finished:
                return False
            self.finished.add(parent)
        return await asyncio.to_thread(self.table.lease_free, shard_id)

    async def on_allocated(
        self, shard_id: str, sequence: str | None, epoch: int, listed: Sequence[KinesisShard]
    ) -> str | None:
        shard = _find(listed, shard_id) or {}
        try:
            state, resume = await asyncio.to_thread(
                self._load_state, shard_id, sequence, epoch, shard
            )
        except TamperedCheckpoint as exc:
            m.CHECKPOINTS.labels(shard_id, "tampered").inc()
            log.error(
                "REFUSING shard %s: its checkpoint fails verification (%s: %s). Restore a good "
                "manifest or remove it (the shard's models then start afresh); this process "
                "leaves the shard alone until restarted",
                shard_id,
                exc.reason,
                exc,
            )
            raise RefuseLease(shard_id) from exc
        self.states[shard_id] = state
        self.core.adopt(state)
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

    # ----------------------------------------------------------------- resume
    def _load_state(
        self, shard_id: str, sequence: str | None, epoch: int, shard: KinesisShard
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
            inherited = self._inherit(shard)
            devices.update({d: slot for d, (slot, _) in inherited.items()})
            if inherited:  # their entries: the child's first versions continue their history
                entries = {d: entry for d, (_, entry) in inherited.items()}
                manifest = ShardManifest(shard_id, None, entries)
        state = ShardState(shard_id, epoch, manifest, devices)
        if manifest is None or manifest.sequence is None:
            for device in devices:
                state.changed(device)  # the child's first manifest must list them
        return state, resume

    def _load_devices(self, entries: dict[str, DeviceEntry]) -> dict[str, DeviceSlot]:
        """The devices' models: formats checked first, then their bytes read (a bundle's in
        runs of one ranged GET each), verified, and unpickled on the pool's threads."""
        for device, entry in entries.items():
            self.store.check_format(device, entry)
        payloads = self.store.load_devices(entries, self.pool.map)

        def load(item: tuple[str, bytes]) -> tuple[str, DeviceSlot]:
            device, payload = item
            entry = entries[device]
            return device, DeviceSlot(self.store.models_from(device, entry, payload), entry.version)

        return dict(self.pool.map(load, payloads.items()))

    def _inherit(self, shard: KinesisShard) -> dict[str, tuple[DeviceSlot, DeviceEntry]]:
        """A child shard's devices, with their parent's entries: from its parents' final
        manifests, by partition-key hash."""
        parents = _parents(shard)
        if not parents:
            return {}
        lo = int(shard["HashKeyRange"]["StartingHashKey"])
        hi = int(shard["HashKeyRange"]["EndingHashKey"])
        devices: dict[str, tuple[DeviceSlot, DeviceEntry]] = {}
        for parent in parents:
            manifest = self.store.load_shard_manifest(parent)
            if manifest is None:
                continue
            mine = {d: e for d, e in manifest.devices.items() if lo <= device_hash(d) <= hi}
            devices.update({d: (s, mine[d]) for d, s in self._load_devices(mine).items()})
            log.info("child %s inherits %d devices from %s", shard["ShardId"], len(mine), parent)
        return devices

    # ------------------------------------------------------------------- drop
    def drop(self, state: ShardState) -> None:
        """Forget the shard's state (released, handed over or lost)."""
        if self.states.get(state.shard_id) is state:
            del self.states[state.shard_id]
            self.core.release(state)
        m.SHARD_OWNED.labels(state.shard_id).set(0)


def lost_lease(
    lifecycle: ShardLifecycle, consumer: LeaseConsumer
) -> Callable[[ShardState], Awaitable[None]]:
    """What the checkpointer calls when another process holds a shard's lease now: drop the
    shard without writing a manifest, and let the lease go."""

    async def lost(state: ShardState) -> None:
        lifecycle.drop(state)
        await consumer.lose(state.shard_id)

    return lost


class Handover:
    """Lets shards go: hand-over to another process, a closed shard's finish (module docstring).

    ``lifecycle`` holds the states, ``consumer`` reads and leases the shards,
    ``checkpoints`` writes the final checkpoints; ``handovers`` counts hand-overs.
    """

    def __init__(
        self, lifecycle: ShardLifecycle, consumer: LeaseConsumer, checkpoints: Checkpointer
    ) -> None:
        self.lifecycle = lifecycle
        self.consumer = consumer
        self.checkpoints = checkpoints
        self.handovers = 0

    async def hand_over(self, shard_id: str) -> None:
        """Give a shard to another process: stop reading it, final checkpoint, release the lease."""
        state = self.lifecycle.states.get(shard_id)
        self.consumer.stop(shard_id)
        if state is not None:
            # No more records and no other checkpoint for it: the hot loop used to learn
            # queued records during the final write and snapshot them again, writing a
            # manifest after the lease was released (the demo's "DynamoDB refused" warning).
            state.stop_reading()
        try:
            if state is not None:
                if not await self.checkpoints.checkpoint(state, final=True):
                    log.error(
                        "hand-over of %s: final checkpoint failed; releasing anyway, the next "
                        "owner resumes from the last manifest",
                        shard_id,
                    )
                self.lifecycle.drop(state)
        finally:
            await self.consumer.leases.release(shard_id)
        self.handovers += 1
        log.info("handed over %s at %s", shard_id, state.last_seq if state else None)

    async def finish(self, state: ShardState) -> None:
        """A closed shard's last record is handled (it is ENDING): final manifest (finished),
        then release."""
        ok = await self.checkpoints.checkpoint(state, final=True, finished=True)
        if not ok:
            log.error(
                "final checkpoint of closed shard %s failed; it stays leased and is retried "
                "on restart",
                state.shard_id,
            )
            state.resume_reading()
            return
        self.lifecycle.finished.add(state.shard_id)
        self.lifecycle.drop(state)
        await self.consumer.leases.release(state.shard_id)
        log.info("shard %s finished at %s; its children may start", state.shard_id, state.last_seq)

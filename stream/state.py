"""What the processor holds for one shard: its devices' models and checkpoint bookkeeping.

A :class:`ShardState` is created when the process takes a shard's lease,
from the shard's manifest (its devices' models, verified) or, for a child
shard after a split or merge, from its parents' final manifests.  The hot
loop mutates its record bookkeeping one record at a time;
:meth:`ShardState.snapshot` freezes what a checkpoint must write (a
:class:`ShardSnapshot`: pickles of the devices changed since the last one, the
sequence number they cover, the dead letters and events to persist first).

Its life is a :class:`ShardStatus`, changed only through its methods::

    READING --stop_reading()--> ENDING --committed(finished snapshot)--> FINISHED
       ^                           |
       +------resume_reading()-----+   (a closed shard's final checkpoint failed)

>>> st = ShardState("shardId-0", epoch=1)
>>> st.status, st.skip_through, st.last_seq
(<ShardStatus.READING: 'reading'>, None, None)
>>> st.last_seq = "7"; snap = st.snapshot(); (snap.sequence, snap.artifacts)
('7', [])
>>> st.stop_reading(), st.stop_reading(), st.status.name
(True, False, 'ENDING')
>>> device_hash("b8:27:eb:bf:9d:51") < 2**128
True
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from online_models import checkpoint_format
from online_models.records import DeviceSummary, ModelAtHorizon
from stream.checkpoint import DeviceEntry, EntryMetrics, ShardManifest

if TYPE_CHECKING:
    from online_models.device import DeviceModels

__all__ = [
    "DeviceSlot",
    "ShardSnapshot",
    "ShardState",
    "ShardStatus",
    "device_hash",
    "entry_metrics",
]


def device_hash(device: str) -> int:
    """The 128-bit hash Kinesis maps a partition key (our device id) to a shard with."""
    return int(hashlib.md5(device.encode()).hexdigest(), 16)


def entry_metrics(summary: DeviceSummary) -> EntryMetrics:
    """The figures a manifest keeps for a device (from ``DeviceModels.summary()``)."""
    return {
        "champion": summary.get("champion", {}),
        "last_ts": summary.get("last_ts"),
        "models": {
            str(ModelAtHorizon(m["model"], m["horizon"])): {
                "n": m.get("n"),
                "mae": m.get("mae"),
                "rmse": m.get("rmse"),
                "rolling_mae": m.get("rolling_mae"),
            }
            for m in summary.get("models", [])
        },
    }


@dataclass
class DeviceSlot:
    """One device's models and the checkpoint version they were loaded from or last written as.

    >>> DeviceSlot(models=None, version=4).version
    4
    """

    models: DeviceModels
    version: int = 0
    last_arrival: float = 0.0


class ShardStatus(Enum):
    """Where a leased shard stands in this process (see the module docstring)."""

    READING = "reading"  # its records are handled; checkpoints every N records or T seconds
    ENDING = "ending"  # no more records (hand-over, or a closed shard's end): final checkpoint
    FINISHED = "finished"  # a closed shard's final manifest, marked finished, is in S3


@dataclass
class ShardSnapshot:
    """Everything one checkpoint of a shard writes, frozen at a record boundary.

    >>> ShardSnapshot("shardId-0", "12", [], {}, []).finished
    False
    """

    shard_id: str
    sequence: str | None
    artifacts: list[
        tuple[str, int, bytes, int, EntryMetrics]
    ]  # device, version, pickle, samples, metrics
    committed: dict[str, DeviceEntry]
    dead_letters: list[bytes]
    finished: bool = False
    events: list[bytes] = field(default_factory=list)  # event records (stream.events)
    taken: float = field(default_factory=time.monotonic)


class ShardState:
    """The models and checkpoint bookkeeping of one leased shard (see the module docstring).

    Constructed by the shard lifecycle (:mod:`stream.shards`) when a lease is
    taken.  ``skip_through`` is set here, once, and only read afterwards (by the
    hot loop's gate, :mod:`stream.gate`): records at or below the manifest's
    sequence number are already in the models (compare as integers).  The batch
    loop (:mod:`stream.batches`) reads :attr:`reading` and :meth:`writing`.

    Written directly by the hot loop (:class:`stream.core.StreamCore`), one record
    at a time: ``last_seq``, ``since_checkpoint``, ``replayed``, ``dirty``,
    ``dead_letters``, ``events`` and ``devices`` (its record bookkeeping; never the
    status).

    >>> from stream.checkpoint import ShardManifest
    >>> ShardState("shardId-0", 1, ShardManifest("shardId-0", "120", {})).skip_through
    120
    """

    def __init__(
        self,
        shard_id: str,
        epoch: int,
        manifest: ShardManifest | None = None,
        devices: dict[str, DeviceSlot] | None = None,
    ) -> None:
        self.shard_id = shard_id
        self.epoch = epoch
        # Records at or below this sequence number are already in the models (never relearn them).
        self.skip_through: int | None = manifest.sequence_int if manifest else None
        self.last_seq: str | None = manifest.sequence if manifest else None
        self.committed: dict[str, DeviceEntry] = dict(manifest.devices) if manifest else {}
        self.committed_seq: str | None = self.last_seq
        self.devices: dict[str, DeviceSlot] = devices or {}
        for device, slot in self.devices.items():
            entry = self.committed.get(device)
            if entry is not None:
                slot.version = entry.version
        self.dirty: set[str] = set()
        self.dead_letters: list[bytes] = []
        self.events: list[bytes] = []  # written to S3 with the next checkpoint
        self.since_checkpoint = 0  # readings (a record's parts) handled since the last snapshot
        self.last_checkpoint = time.monotonic()
        self.replayed = 0
        self._status = ShardStatus.READING
        self._writing: asyncio.Task[bool] | None = None  # the checkpoint in flight

    @property
    def status(self) -> ShardStatus:
        return self._status

    @property
    def reading(self) -> bool:
        """Are the shard's records handled (and periodic checkpoints taken)?"""
        return self._status is ShardStatus.READING

    # ------------------ the runner, the shard lifecycle and the control channel (status, changes)
    def stop_reading(self) -> bool:
        """READING -> ENDING: no more records, a final checkpoint is coming (a hand-over, or a
        closed shard's end: :mod:`stream.shards`, :mod:`stream.runner`).  Records still queued
        for it are dropped as stale by the batch loop; the checkpoint ticker skips it.  False
        when it was not reading (already ending or finished)."""
        if self._status is not ShardStatus.READING:
            return False
        self._status = ShardStatus.ENDING
        return True

    def resume_reading(self) -> None:
        """ENDING -> READING: a closed shard's final checkpoint failed (:mod:`stream.shards`);
        the shard stays leased and checkpointed as before."""
        if self._status is ShardStatus.ENDING:
            self._status = ShardStatus.READING

    def changed(self, device: str) -> None:
        """The device's models changed outside the hot loop (an operator command,
        :mod:`stream.control`; a child shard's inherited devices, :mod:`stream.shards`):
        its next checkpoint writes them."""
        self.dirty.add(device)

    # -------------------------------------------------------- the checkpointer (stream.checkpointing)
    def writing(self) -> asyncio.Task[bool] | None:
        """The checkpoint in flight (its task), if one is; a shard has at most one."""
        task = self._writing
        return task if task is not None and not task.done() else None

    def pending(self) -> bool:
        """Something a checkpoint would write: models, dead letters, events or a position."""
        return bool(
            self.dirty or self.dead_letters or self.events or self.last_seq != self.committed_seq
        )

    def snapshot(self, *, finished: bool = False) -> ShardSnapshot:
        """Freeze what the next checkpoint writes; the state carries on from here."""
        artifacts = []
        for device in sorted(self.dirty):
            slot = self.devices[device]
            slot.version += 1
            summary = slot.models.summary()
            artifacts.append(
                (
                    device,
                    slot.version,
                    checkpoint_format.dumps(slot.models),
                    # the manifest's samples: every reading the device took in order, learned
                    # or held back by its anomaly watch (each is decided once: exactly once)
                    int(summary.get("n_learned", 0)) + int(summary.get("n_held", 0)),
                    entry_metrics(summary),
                )
            )
        self.dirty.clear()
        dead, self.dead_letters = self.dead_letters, []
        events, self.events = self.events, []
        self.since_checkpoint = 0
        self.last_checkpoint = time.monotonic()
        return ShardSnapshot(
            self.shard_id, self.last_seq, artifacts, dict(self.committed), dead, finished, events
        )

    def write_started(self, task: asyncio.Task[bool]) -> None:
        """The checkpoint of the last snapshot is being written by ``task``."""
        self._writing = task

    def committed_ok(self, snap: ShardSnapshot, entries: dict[str, DeviceEntry]) -> None:
        """S3 accepted the snapshot's manifest: it is the shard's committed state now; a
        finished snapshot (a closed shard's last) makes the shard FINISHED."""
        self.committed.update(entries)
        self.committed_seq = snap.sequence
        if snap.finished:
            self._status = ShardStatus.FINISHED

    def failed(self, snap: ShardSnapshot) -> None:
        """A checkpoint did not reach S3: its devices, dead letters and events go into the next."""
        self.dirty.update(d for d, *_ in snap.artifacts if d in self.devices)
        self.dead_letters[:0] = snap.dead_letters
        self.events[:0] = snap.events

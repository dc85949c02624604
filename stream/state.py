"""What the processor holds for one shard: its devices' models and checkpoint bookkeeping.

A :class:`ShardState` is created when the process takes a shard's lease,
from the shard's manifest (its devices' models, verified) or, for a child
shard after a split or merge, from its parents' final manifests.  The hot
loop mutates it one record at a time; :meth:`ShardState.snapshot` freezes
what a checkpoint must write (pickles of the devices changed since the last
one, the sequence number they cover, the dead letters to persist first).

>>> st = ShardState("shardId-0", epoch=1)
>>> st.skip_through is None, st.last_seq
(True, None)
>>> st.last_seq = "7"; snap = st.snapshot(); (snap.sequence, snap.artifacts)
('7', [])
>>> device_hash("b8:27:eb:bf:9d:51") < 2**128
True
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from online_models import checkpoint_format
from online_models.records import DeviceSummary
from stream.checkpoint import DeviceEntry, EntryMetrics, ShardManifest

if TYPE_CHECKING:
    from online_models.device import DeviceModels

__all__ = ["DeviceSlot", "ShardState", "Snapshot", "device_hash", "entry_metrics"]


def device_hash(device: str) -> int:
    """The 128-bit hash Kinesis maps a partition key (our device id) to a shard with."""
    return int(hashlib.md5(device.encode()).hexdigest(), 16)


def entry_metrics(summary: DeviceSummary) -> EntryMetrics:
    """The figures a manifest keeps for a device (from ``DeviceModels.summary()``)."""
    return {
        "champion": summary.get("champion", {}),
        "last_ts": summary.get("last_ts"),
        "models": {
            f"{m['model']}@{m['horizon']}": {
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


@dataclass
class Snapshot:
    """Everything one checkpoint writes, frozen at a record boundary.

    >>> Snapshot("shardId-0", "12", [], {}, []).finished
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
        self.finished = bool(manifest and manifest.finished)
        self.devices: dict[str, DeviceSlot] = devices or {}
        for device, slot in self.devices.items():
            entry = self.committed.get(device)
            if entry is not None:
                slot.version = entry.version
        self.dirty: set[str] = set()
        self.dead_letters: list[bytes] = []
        self.events: list[bytes] = []  # written to S3 with the next checkpoint
        self.since_checkpoint = 0
        self.last_checkpoint = time.monotonic()
        self.inflight: asyncio.Task[bool] | None = None
        self.ending = False  # shard closed: finish it once its last records are handled
        self.replayed = 0

    def pending(self) -> bool:
        """Something a checkpoint would write: models, dead letters, events or a position."""
        return bool(
            self.dirty or self.dead_letters or self.events or self.last_seq != self.committed_seq
        )

    def snapshot(self, *, finished: bool = False) -> Snapshot:
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
                    int(summary.get("n_learned", 0)),
                    entry_metrics(summary),
                )
            )
        self.dirty.clear()
        dead, self.dead_letters = self.dead_letters, []
        events, self.events = self.events, []
        self.since_checkpoint = 0
        self.last_checkpoint = time.monotonic()
        return Snapshot(
            self.shard_id, self.last_seq, artifacts, dict(self.committed), dead, finished, events
        )

    def committed_ok(self, snap: Snapshot, entries: dict[str, DeviceEntry]) -> None:
        self.committed.update(entries)
        self.committed_seq = snap.sequence
        if snap.finished:
            self.finished = True

    def failed(self, snap: Snapshot) -> None:
        """A checkpoint did not reach S3: its devices, dead letters and events go into the next."""
        self.dirty.update(d for d, *_ in snap.artifacts if d in self.devices)
        self.dead_letters[:0] = snap.dead_letters
        self.events[:0] = snap.events

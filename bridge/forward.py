"""From readings to Kinesis records: packed per shard (or one per reading), and placed.

A lane's batch of readings becomes records here.  **Packed** (the default): the
readings bound for one shard (by their device's partition key, under the bridge's
:class:`~bridge.kinesis.ShardMap`) go into records of at most ``record_bytes``
(``telemetry.envelope``), each addressed to its shard (``ExplicitHashKey`` = the
shard's first hash key, the shard id written in the envelope); a device's readings
stay in order inside a record, and a call carries at most one record per shard
(:func:`calls`), so no partial refusal reorders them.  **Single**: one
record per reading, partition key = device id, as bridges before packing wrote.

After a reshard the map is stale: a record addressed to a shard that has closed
lands on one of its children.  :meth:`Forwarder.deliver` sees that in the answer
(each record's ``ShardId``), lists the shards again, and sends the readings of
that record again, packed for their shard now; the processor skips the stray copy
(its envelope names another shard).  So each reading reaches the shard that owns
its device, after its device's older readings, and nothing is acknowledged before.

>>> from bridge.buffer import Held
>>> from bridge.kinesis import Shard, ShardMap
>>> shards = ShardMap(None, "s", [Shard("shardId-0", 0, 2**127 - 1), Shard("shardId-1", 2**127, 2**128 - 1)])
>>> parts = [Part(Held(n, 1), d, b'{}') for n, d in enumerate(["a", "b", "a", "c"])]
>>> [(r.shard, [p.device for p in r.parts]) for r in pack_records(parts, shards, 25_000)]
[('shardId-0', ['a', 'a', 'c']), ('shardId-1', ['b'])]
>>> [r.entry.partition_key for r in single_records(parts)]
['a', 'b', 'a', 'c']
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from bridge.buffer import Held
from bridge.kinesis import Entry, KinesisSender, ShardMap
from bridge.retry import Attempts
from monitoring.metrics import BRIDGE_RETRIES
from telemetry.envelope import MESSAGE_OVERHEAD, header_size, pack

__all__ = ["Forwarder", "Outgoing", "Part", "pack_records", "single_records"]

log = logging.getLogger(__name__)
MAX_PUT_RECORDS = 500  # PutRecords: records per call
MAX_PUT_BYTES = 5 * 1024 * 1024  # PutRecords: bytes per call, keys included
WRONG_SHARD = "WrongShard"  # the code a re-sent misplaced record is counted under


@dataclass(eq=False, slots=True)
class Part:
    """One reading on its way: its message's :class:`~bridge.buffer.Held`, device, bytes."""

    held: Held
    device: str
    data: bytes


@dataclass(eq=False, slots=True)
class Outgoing:
    """One Kinesis record and the readings it carries; ``shard`` is the one addressed
    (``None``: a single-reading record, placed by its partition key)."""

    entry: Entry
    shard: str | None
    parts: list[Part]


def pack_records(
    parts: Sequence[Part], shards: ShardMap, record_bytes: int, *, compress: bool = False
) -> list[Outgoing]:
    """Pack ``parts`` into records of at most ``record_bytes`` (uncompressed), per shard,
    keeping the order of the parts within each shard."""
    by_shard: dict[str, list[Part]] = {}
    starts: dict[str, int] = {}
    for part in parts:
        shard = shards.shard_for(part.device)
        group = by_shard.get(shard.id)
        if group is None:
            group = by_shard[shard.id] = []
            starts[shard.id] = shard.start
        group.append(part)
    out: list[Outgoing] = []
    for sid, group in by_shard.items():
        budget = record_bytes - header_size(sid)
        chunk: list[Part] = []
        size = 0
        for part in group:
            n = len(part.data) + MESSAGE_OVERHEAD
            if chunk and size + n > budget:
                out.append(_packed(chunk, sid, starts[sid], compress))
                chunk, size = [], 0
            chunk.append(part)
            size += n
        if chunk:
            out.append(_packed(chunk, sid, starts[sid], compress))
    return out


def _packed(chunk: list[Part], sid: str, start: int, compress: bool) -> Outgoing:
    data = pack([p.data for p in chunk], sid, compress=compress)
    return Outgoing(Entry(chunk[0].device, data, str(start)), sid, chunk)


def single_records(parts: Sequence[Part]) -> list[Outgoing]:
    """One record per reading, partition key = device id (the format before packing)."""
    return [Outgoing(Entry(p.device, p.data), None, [p]) for p in parts]


def calls(records: list[Outgoing]) -> list[list[Outgoing]]:
    """``records`` cut, in order, into PutRecords calls within Kinesis' bounds, with at
    most one packed record per shard in a call.

    So a call's refusals never put a device's readings behind newer ones: a refused
    record is sent again before any later record of its shard (an ``InternalFailure``
    in the middle of a shard's run would otherwise land it after the accepted rest).
    """
    out: list[list[Outgoing]] = [[]]
    size = 0
    shards: set[str] = set()
    for r in records:
        n = len(r.entry.data) + len(r.entry.partition_key)
        if out[-1] and (
            len(out[-1]) >= MAX_PUT_RECORDS or size + n > MAX_PUT_BYTES or r.shard in shards
        ):
            out.append([])
            size = 0
            shards = set()
        out[-1].append(r)
        size += n
        if r.shard is not None:
            shards.add(r.shard)
    return out


@dataclass(eq=False)
class Forwarder:
    """Delivers batches of readings for one lane: packs them, puts them, places them.

    ``packed`` False writes one record per reading.  ``records`` counts the records
    Kinesis accepted; ``misplaced`` the records that landed on another shard than the
    one addressed (their readings were sent again).
    """

    sender: KinesisSender
    shards: ShardMap
    abort: threading.Event
    packed: bool = True
    record_bytes: int = 25_000
    compress: bool = False
    records: int = field(default=0, init=False)
    misplaced: int = field(default=0, init=False)

    def deliver(self, parts: Sequence[Part]) -> None:
        """Return once every reading of ``parts`` is on the shard that owns its device.

        Raises :class:`~bridge.retry.BridgeFailure` past the retry bound, or
        :class:`~bridge.retry.Aborted` when the bridge stops meanwhile.
        """
        attempts: Attempts | None = None
        pending = list(parts)
        while pending:
            if self.packed:
                records = pack_records(
                    pending, self.shards, self.record_bytes, compress=self.compress
                )
            else:
                records = single_records(pending)
            pending = []
            for call in calls(records):
                put = self.sender.put([r.entry for r in call])
                for record, landed in zip(call, put.shards, strict=True):
                    if record.shard is not None and landed and landed != record.shard:
                        pending.extend(record.parts)  # a reshard moved its shard: send again
                        self.misplaced += 1
                        BRIDGE_RETRIES.labels(WRONG_SHARD).inc()
                    else:
                        self.records += 1
            if pending:
                stale = len(self.shards.shards)
                self.shards.refresh()
                log.info(
                    "bridge: a record landed on another shard than addressed (reshard); "
                    "%d open shards now (were %d); sending its %d readings again",
                    len(self.shards.shards),
                    stale,
                    len(pending),
                )
                if attempts is None:
                    attempts = Attempts(
                        self.sender.policy,
                        f"placing records on the shards of Kinesis stream {self.sender.stream!r}",
                        self.abort,
                        hint="The stream's shards keep changing under the bridge; check for a "
                        "reshard loop.",
                    )
                else:
                    attempts.failed(WRONG_SHARD, "records keep landing on other shards")

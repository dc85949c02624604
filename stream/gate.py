"""The gate every Kinesis record passes: replays skipped, records unpacked, readings decoded.

:class:`Gate` knows nothing of models or metrics. For one record of a shard it says:

- :meth:`Gate.replayed`: whether the record is at or below the shard manifest's
  sequence number (already in the models: skipped whole; compared as integers);
- :meth:`Gate.open`: what the record holds (:class:`Opened`). The record is unpacked
  (:func:`telemetry.envelope.unpack`: a packed record of many messages, or, written by
  an older bridge or the AWS IoT rule, one message as is); a packed record whose
  header names another shard than the one read is a stray copy (a reshard moved it;
  the bridge sent its readings again to the right shard): ``misrouted``, nothing in
  it is read. Every message goes through :func:`telemetry.reading.decode_message`
  (one reading, or a device's batch: one part per reading), and each part becomes
  one item, in order: the :class:`~telemetry.reading.Reading`, to be judged on its
  own, or a :class:`DeadLetter` (reason, message, and the line the shard's next
  checkpoint writes to S3) for a part that is not a reading. A record that cannot be
  unpacked (``bad_envelope``, ``unknown_version``) is one dead letter, whole;
- :meth:`Gate.refuse`: a dead letter for a reading the processor will not take (the
  device limit), in the same format.

A dead letter of a part carries the part's own bytes and its index among the record's
parts (``"part"``, counted over every message of the record in order); a record that
is one message of one reading is dead-lettered as it is, without ``part`` (the format
before packing).

>>> import orjson
>>> from telemetry.envelope import pack
>>> from telemetry.reading import Reading, encode
>>> gate = Gate()
>>> r = Reading(1594512000.0, "d1", 0.005, 51.0, False, 0.007, False, 0.02, 22.5)
>>> [type(item).__name__ for item in gate.open(encode(r), "shardId-0", "1").items]
['Reading']
>>> (dead,) = gate.open(b"{", "shardId-0", "2").items
>>> dead.reason, orjson.loads(dead.line)["sequence"]
('invalid_json', '2')
>>> opened = gate.open(pack([encode(r), b"{", encode(r)], "shardId-0"), "shardId-0", "3")
>>> [getattr(i, "reason", "reading") for i in opened.items], orjson.loads(opened.items[1].line)["part"]
(['reading', 'invalid_json', 'reading'], 1)
>>> gate.open(pack([encode(r)], "shardId-7"), "shardId-0", "4").misrouted
'shardId-7'
>>> gate.open(b"\\x00IC\\x09\\x00\\x00", "shardId-0", "5").items[0].reason
'unknown_version'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stream.output import dead_letter_line
from telemetry.envelope import EnvelopeError, unpack
from telemetry.reading import Reading, decode_message

if TYPE_CHECKING:
    from stream.state import ShardState

__all__ = ["DeadLetter", "Gate", "Opened"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """What a record held that is not a reading: why, in a word and in words, and the
    dead-letter line (:func:`stream.output.dead_letter_line`) that goes to S3."""

    reason: str
    message: str
    line: bytes


@dataclass(frozen=True, slots=True)
class Opened:
    """What one record holds: ``items``, one per part (reading) in the record's order, a
    :class:`~telemetry.reading.Reading` or a :class:`DeadLetter`; ``misrouted``, the shard a
    stray packed record was addressed to (then ``items`` is empty: nothing is read from
    it); ``single``, True for a record that is one message of one reading (the format
    before packing: a dead letter of it carries the record whole)."""

    items: Sequence[Reading | DeadLetter]
    misrouted: str | None = None
    single: bool = False


class Gate:
    """Says what one record of a shard holds (see the module docstring)."""

    def replayed(self, state: ShardState, seq: str) -> bool:
        """Is the record already in the models (at or below the manifest's sequence number)?"""
        skip = state.skip_through
        return skip is not None and int(seq) <= skip

    def open(self, data: bytes, shard: str, seq: str) -> Opened:
        """The record's parts, readings and dead letters, in the order it holds them."""
        try:
            unpacked = unpack(data)
        except EnvelopeError as exc:
            return Opened((self.refuse(data, exc.reason, str(exc), shard, seq),))
        if unpacked.shard and unpacked.shard != shard:  # "" or None: not addressed to a shard
            return Opened((), unpacked.shard)
        items: list[Reading | DeadLetter] = []
        messages = unpacked.messages
        whole = unpacked.version == 0  # not packed: one message, the record itself
        batch = False
        for message in messages:
            decoded = decode_message(message)
            batch = decoded.batch
            for j, part in enumerate(decoded.parts):
                if isinstance(part, Reading):
                    items.append(part)
                elif whole and not batch:
                    items.append(self.refuse(data, part.reason, str(part), shard, seq))
                else:
                    payload = decoded.payload(j)
                    items.append(
                        self.refuse(payload, part.reason, str(part), shard, seq, part=len(items))
                    )
        return Opened(items, None, whole and not batch)

    @staticmethod
    def refuse(
        data: bytes, reason: str, message: str, shard: str, seq: str, *, part: int | None = None
    ) -> DeadLetter:
        """A dead letter of ``data`` (the record, or the part of it at index ``part``) for
        ``reason``."""
        line = dead_letter_line(data, reason, message, shard, seq, part=part)
        return DeadLetter(reason, message, line)

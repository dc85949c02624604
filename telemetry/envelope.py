"""The packed Kinesis record: many device messages in one record, versioned.

A Kinesis record costs the same for 204 bytes as for 25 KB (one PUT payload
unit), and a shard takes 1,000 records/s whatever their size, so the bridge packs
the messages bound for one shard into one record.  :func:`pack` builds it,
:func:`unpack` reads it back; a record that is not packed (a record of an older
bridge, or one written by an AWS IoT rule) is one message, so readers of the
stream take both during an upgrade.  ``docs/records.md`` is the reference.

Layout of version 1 (integers big-endian)::

    offset  size  field
    0       3     magic b"\\x00IC" (a JSON text never starts with NUL)
    3       1     version, 1
    4       1     flags: bit 0 = the body is zlib-compressed; other bits 0
    5       1     n, length of the shard id
    6       n     the shard id the packer addressed (ASCII), e.g. shardId-000000000003
    6+n     ...   body: count (u32), count lengths (u32 each), then the messages

A reader must refuse (:class:`EnvelopeError`) an unknown version, a flag it
does not know, and any inconsistency in the body; it must skip a record whose
shard id is not the shard it reads (the bridge sent the record again where it
belongs: see ``docs/records.md``, "Resharding").

>>> record = pack([b'{"a":1}', b'{"b":2}'], shard="shardId-000000000001")
>>> record[:4], len(record)
(b'\\x00IC\\x01', 52)
>>> u = unpack(record)
>>> u.messages, u.shard, u.version
([b'{"a":1}', b'{"b":2}'], 'shardId-000000000001', 1)
>>> unpack(b'{"data": {"temp": 21.5}, "device_id": "a1", "ts": 1594512094.0}').version
0
>>> list(unpack(pack([b"x" * 1000], compress=True)))[0] == b"x" * 1000
True
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

__all__ = [
    "MAGIC",
    "MAX_RECORD_BYTES",
    "MESSAGE_OVERHEAD",
    "VERSION",
    "EnvelopeError",
    "Unpacked",
    "header_size",
    "is_packed",
    "pack",
    "unpack",
]

MAGIC = b"\x00IC"
VERSION = 1
FLAG_ZLIB = 0x01
_KNOWN_FLAGS = FLAG_ZLIB
MESSAGE_OVERHEAD = 4  # the u32 length of each message
MAX_RECORD_BYTES = 1024 * 1024  # Kinesis' largest record (data and partition key)
_MAX_SHARD_ID = 255
_COUNT = struct.Struct(">I")


class EnvelopeError(ValueError):
    """A record that starts as a packed record but cannot be read as one.

    ``reason`` is ``bad_envelope`` (truncated, inconsistent) or ``unknown_version``
    (written by a newer bridge: upgrade the reader); ``str(exc)`` says which.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Unpacked:
    """The device messages of one record, in the order they were packed.

    ``shard`` is the shard id the packer addressed (``None`` for a record that is
    not packed: it went where its partition key sent it); ``version`` is 0 for such
    a record.  Iterating yields the messages.
    """

    messages: list[bytes]
    shard: str | None = None
    version: int = 0

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.messages)

    def __len__(self) -> int:
        return len(self.messages)


def header_size(shard: str = "") -> int:
    """Bytes a packed record spends before its first message's length: magic to count."""
    return 6 + len(shard) + _COUNT.size


def pack(
    messages: Sequence[bytes], shard: str = "", *, compress: bool = False, level: int = 1
) -> bytes:
    """One packed record holding ``messages`` (each any bytes), addressed to ``shard``.

    Uncompressed, its size is ``header_size(shard) + sum(4 + len(m))``; ``compress``
    deflates the body (zlib ``level``).  The caller bounds the size (Kinesis: 1 MiB).
    """
    sid = shard.encode("ascii")
    if len(sid) > _MAX_SHARD_ID:
        raise ValueError(f"shard id of {len(sid)} bytes; at most {_MAX_SHARD_ID}")
    n = len(messages)
    body = b"".join(
        (struct.pack(f">I{n}I", n, *map(len, messages)), *messages)  # count, lengths, data
    )
    flags = 0
    if compress:
        body = zlib.compress(body, level)
        flags |= FLAG_ZLIB
    return b"".join((MAGIC, bytes((VERSION, flags, len(sid))), sid, body))


def is_packed(data: bytes) -> bool:
    """True when ``data`` starts as a packed record (any version)."""
    return data[:3] == MAGIC


def unpack(data: bytes) -> Unpacked:
    """The device messages in record ``data``: a packed record's, or ``data`` itself.

    Raises :class:`EnvelopeError` for a packed record that cannot be read whole (never
    a part of one: a record is read all or nothing).
    """
    if data[:3] != MAGIC:
        return Unpacked([data])
    if len(data) < 6:
        raise EnvelopeError("bad_envelope", f"packed record of {len(data)} bytes: truncated header")
    version, flags, n = data[3], data[4], data[5]
    if version != VERSION:
        raise EnvelopeError(
            "unknown_version",
            f"packed record of version {version}; this reader knows {VERSION}: upgrade it",
        )
    if flags & ~_KNOWN_FLAGS:
        raise EnvelopeError("unknown_version", f"packed record with unknown flags {flags:#04x}")
    try:
        shard = data[6 : 6 + n].decode("ascii")
    except UnicodeDecodeError:
        raise EnvelopeError("bad_envelope", "packed record: shard id is not ASCII") from None
    body = memoryview(data)[6 + n :]
    if flags & FLAG_ZLIB:
        try:
            body = memoryview(zlib.decompress(body))
        except zlib.error as exc:
            raise EnvelopeError("bad_envelope", f"packed record: body not zlib: {exc}") from None
    return Unpacked(_messages(body), shard, version)


def _messages(body: memoryview) -> list[bytes]:
    if len(body) < 4:
        raise EnvelopeError("bad_envelope", "packed record: no message count")
    (count,) = _COUNT.unpack_from(body)
    start = 4 + 4 * count
    if count == 0 or start > len(body):
        raise EnvelopeError("bad_envelope", f"packed record: {count} messages do not fit")
    lengths = struct.unpack_from(f">{count}I", body, 4)
    if start + sum(lengths) != len(body):
        raise EnvelopeError(
            "bad_envelope",
            f"packed record: {count} messages of {sum(lengths)} bytes in a body of "
            f"{len(body) - start}",
        )
    out = []
    for n in lengths:
        out.append(bytes(body[start : start + n]))
        start += n
    return out

"""Packed telemetry records for the processor's tests, put as the bridge puts them.

:func:`packed_records` packs (data, device) items the way ``bridge/forward.py`` does:
per shard of the stream (the device's MD5 in the shard's hash range), in order, at most
``per_record`` messages a record, the shard id in the envelope; :func:`put_packed` puts
them with ``ExplicitHashKey`` = the shard's first hash key (``shards``: a map listed
before a reshard makes stray copies: records addressed to a closed parent land on a
child, their header naming the parent), and :func:`feed_packed_in_background` does it
on a thread.

>>> from telemetry.envelope import unpack
>>> shards = [("shardId-0", 0), ("shardId-1", 2**127)]
>>> [(sid, len(unpack(data))) for sid, _, data in packed_records([(b"{}", "a"), (b"{}", "b")] * 3, shards, 2)]
[('shardId-0', 2), ('shardId-1', 2), ('shardId-0', 1), ('shardId-1', 1)]
"""

from __future__ import annotations

import bisect
import threading
import time

from iotcast.settings import Settings
from stream.state import device_hash
from telemetry.envelope import pack

__all__ = ["feed_packed_in_background", "open_shards", "packed_records", "put_packed"]

Shards = list[tuple[str, int]]  # (shard id, first hash key), by hash key


def open_shards(settings: Settings) -> Shards:
    """The telemetry stream's open shards, as (id, first hash key) sorted by hash key."""
    listed = settings.client("kinesis").list_shards(StreamName=settings.stream)["Shards"]
    return sorted(
        (s["ShardId"], int(s["HashKeyRange"]["StartingHashKey"]))
        for s in listed
        if "EndingSequenceNumber" not in s["SequenceNumberRange"]
    )


def packed_records(
    items: list[tuple[bytes, str]], shards: Shards, per_record: int
) -> list[tuple[str, int, bytes]]:
    """(shard id, first hash key, packed record) of ``items``, each shard's in item order."""
    shards = sorted(shards, key=lambda s: s[1])
    starts = [start for _, start in shards]
    chunks: dict[int, list[bytes]] = {}
    out: list[tuple[str, int, bytes]] = []
    for data, device in items:
        i = max(0, bisect.bisect_right(starts, device_hash(device)) - 1)
        chunk = chunks.setdefault(i, [])
        chunk.append(data)
        if len(chunk) == per_record:
            out.append((shards[i][0], starts[i], pack(chunk, shards[i][0])))
            chunks[i] = []
    for i, chunk in sorted(chunks.items()):
        if chunk:
            out.append((shards[i][0], starts[i], pack(chunk, shards[i][0])))
    return out


def put_packed(
    settings: Settings,
    items: list[tuple[bytes, str]],
    *,
    per_record: int = 100,
    shards: Shards | None = None,
    pause: float = 0.0,
    calls_of: int = 50,
) -> int:
    """Put ``items`` packed (see the module docstring), ``calls_of`` records a call, in
    order; returns the records put."""
    kinesis = settings.client("kinesis")
    records = packed_records(items, shards or open_shards(settings), per_record)
    for i in range(0, len(records), calls_of):
        batch = [
            {"Data": data, "PartitionKey": sid, "ExplicitHashKey": str(start)}
            for sid, start, data in records[i : i + calls_of]
        ]
        for _ in range(20):
            resp = kinesis.put_records(StreamName=settings.stream, Records=batch)
            if not resp["FailedRecordCount"]:
                break
            first = next(j for j, r in enumerate(resp["Records"]) if "ErrorCode" in r)
            batch = batch[first:]  # keep the order: resend from the first refused record on
            time.sleep(0.2)
        else:
            raise RuntimeError("PutRecords kept refusing records")
        if pause:
            time.sleep(pause)
    return len(records)


def feed_packed_in_background(
    settings: Settings, items: list[tuple[bytes, str]], pause: float, per_record: int = 100
) -> threading.Thread:
    """:func:`put_packed` on a thread, ``per_record`` readings a record, a call of one record
    per shard at a time, ``pause`` seconds apart; errors in ``thread.errors``."""
    errors: list[BaseException] = []
    shards = open_shards(settings)

    def run() -> None:
        try:
            put_packed(
                settings, items, per_record=per_record, shards=shards, pause=pause,
                calls_of=len(shards),
            )  # fmt: skip
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test through .errors
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.errors = errors  # type: ignore[attr-defined]
    t.start()
    return t

"""The Kinesis side: PutRecords with partial-failure retries, and the stream check.

:meth:`KinesisSender.put` returns only when Kinesis accepted every record of
the batch.  A call may accept some records and refuse others
(``FailedRecordCount``, per record ``ErrorCode``
``ProvisionedThroughputExceededException`` or ``InternalFailure``): only the
refused ones are sent again, in their original order, after an exponential
backoff with jitter.  Whole-call errors (network, 5xx, throttling, expired
credentials) are retried under the same bound; errors that retrying cannot
fix (stream deleted, access denied) raise :class:`BridgeFailure` at once.

Order per device: a device's refused records are resent in order before any
later record of that device (its lane waits).  Kinesis refuses a shard's
records from the point its limit is hit, so refusals are a suffix per shard
and the order holds; a refusal in the middle of a device's run
(``InternalFailure``) puts the refused record after the accepted ones behind
it: PutRecords cannot undo an accepted record.  :attr:`reordered` counts the
records that landed behind a newer record of their key that way.

>>> class FakeKinesis:  # accepts every other record on the first call, then all
...     calls = []
...     def put_records(self, StreamName, Records):
...         self.calls.append([r["PartitionKey"] for r in Records])
...         if len(self.calls) == 1:
...             res = [{"SequenceNumber": "1"} if i % 2 else {"ErrorCode": "InternalFailure",
...                    "ErrorMessage": "x"} for i in range(len(Records))]
...             return {"FailedRecordCount": sum("ErrorCode" in r for r in res), "Records": res}
...         return {"FailedRecordCount": 0, "Records": [{"SequenceNumber": "2"}] * len(Records)}
>>> sender = KinesisSender(FakeKinesis(), "s", RetryPolicy(base=0.0), threading.Event())
>>> sender.put([Entry("a", b"1"), Entry("b", b"2"), Entry("c", b"3")])
Put(calls=2, shards=['', '', ''])
>>> sender.client.calls
[['a', 'b', 'c'], ['a', 'c']]
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import botocore.exceptions
from botocore.config import Config

from bridge.retry import Attempts, BridgeFailure, RetryPolicy
from monitoring.metrics import (
    BRIDGE_KINESIS_UP,
    BRIDGE_PUT_SECONDS,
    BRIDGE_REORDERED,
    BRIDGE_RETRIES,
)

__all__ = [
    "Entry",
    "KinesisSender",
    "PERMANENT_ERRORS",
    "Put",
    "Shard",
    "ShardMap",
    "READ_TIMEOUT",
    "client_config",
    "ensure_stream",
    "error_code",
    "open_shard_ranges",
    "shard_index",
]

log = logging.getLogger(__name__)

# Retrying cannot fix these: a person must (stream gone, no permission, bad request).
PERMANENT_ERRORS = frozenset(
    {
        "ResourceNotFoundException",
        "AccessDeniedException",
        "ValidationException",
        "InvalidArgumentException",
        "KMSAccessDeniedException",
        "KMSDisabledException",
        "KMSNotFoundException",
        "KMSInvalidStateException",
        "UnrecognizedClientException",
    }
)


# A PutRecords given up on a read timeout may still be applied by the server while its
# retry is: the two copies land interleaved.  On AWS that only duplicates records; on
# moto (whose per-shard put is not thread-safe) records of one copy are overwritten and
# readings land behind newer ones of their device, where they are never learned (the
# demo lost 746 that way after 10 ReadTimeoutError retries at 30 s).  So the read
# timeout is far above any answer a working endpoint gives; a dead peer is caught by
# the connect timeout and TCP keepalive.
READ_TIMEOUT = 300.0


def client_config(max_pool_connections: int = 10, read_timeout: float = READ_TIMEOUT) -> Config:
    """botocore settings for the bridge: our own bounded retries, no hidden ones.

    >>> client_config().read_timeout
    300.0
    """
    return Config(
        max_pool_connections=max_pool_connections,
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=5,
        read_timeout=read_timeout,
        tcp_keepalive=True,
    )


def error_code(exc: Exception) -> str:
    """A short code for an AWS error: the service's code, or the exception's class name."""
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(
            exc.response.get("Error", {}).get("Code")
            or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            or "ClientError"
        )
    return type(exc).__name__


class Entry(NamedTuple):
    """One record of a PutRecords call; ``hash_key`` (decimal) overrides the key's MD5."""

    partition_key: str
    data: bytes
    hash_key: str | None = None


@dataclass(frozen=True, slots=True)
class Put:
    """What a :meth:`KinesisSender.put` took: calls made, and the shard each record landed on."""

    calls: int
    shards: list[str]


@dataclass(eq=False)
class KinesisSender:
    """Sends batches of :class:`Entry` records to one stream, until all are accepted.

    ``reordered`` counts the records sent again after a later one of their batch was accepted;
    ``last_ok`` is when Kinesis last accepted a call (monotonic clock).
    """

    client: Any
    stream: str
    policy: RetryPolicy
    abort: threading.Event
    reordered: int = field(default=0, init=False)
    last_ok: float = field(default=0.0, init=False)

    def put(self, records: Sequence[Entry]) -> Put:
        """Send ``records`` until Kinesis accepted all; the calls made and where each landed."""
        pending = list(enumerate(records))
        landed = [""] * len(records)
        attempts = Attempts(
            self.policy,
            f"PutRecords to Kinesis stream {self.stream!r}",
            self.abort,
            hint="Check the stream's capacity (shards) and the AWS credentials and endpoint; "
            "unacknowledged messages stay queued in the MQTT broker.",
        )
        calls = 0
        out_of_order: set[int] = set()
        while pending:
            calls += 1
            started = time.perf_counter()
            try:
                resp = self.client.put_records(
                    StreamName=self.stream,
                    Records=[
                        {"PartitionKey": e.partition_key, "Data": e.data}
                        if e.hash_key is None
                        else {
                            "PartitionKey": e.partition_key,
                            "Data": e.data,
                            "ExplicitHashKey": e.hash_key,
                        }
                        for _, e in pending
                    ],
                )
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
                BRIDGE_KINESIS_UP.set(0)
                code = error_code(exc)
                if code in PERMANENT_ERRORS:
                    raise BridgeFailure(
                        f"PutRecords to Kinesis stream {self.stream!r} failed with {code}: {exc}. "
                        "Retrying cannot fix this: check that the stream exists and that the "
                        "credentials may write to it.",
                        code,
                    ) from exc
                BRIDGE_RETRIES.labels(code).inc()
                if isinstance(exc, botocore.exceptions.ReadTimeoutError):
                    log.warning(
                        "PutRecords got no answer within %.0fs; resending %d records (the "
                        "first call may still land: duplicates follow)",
                        self.client.meta.config.read_timeout,
                        len(pending),
                    )
                else:
                    log.debug("PutRecords failed (%s), retrying %d records", code, len(pending))
                attempts.failed(code, str(exc))
                continue
            BRIDGE_PUT_SECONDS.observe(time.perf_counter() - started)
            BRIDGE_KINESIS_UP.set(1)
            self.last_ok = time.monotonic()
            results = resp["Records"]
            if not resp.get("FailedRecordCount"):
                for (i, _), result in zip(pending, results, strict=True):
                    landed[i] = result.get("ShardId", "")
                self.reordered += len(out_of_order)
                BRIDGE_REORDERED.inc(len(out_of_order))
                return Put(calls, landed)
            refused: list[tuple[int, Entry]] = []
            codes: dict[str, int] = {}
            accepted_later: set[str] = set()  # keys with an accepted record behind this one
            for record, result in zip(reversed(pending), reversed(results), strict=True):
                code = result.get("ErrorCode")
                key = record[1].hash_key or record[1].partition_key
                if code:
                    refused.append(record)
                    codes[code] = codes.get(code, 0) + 1
                    if key in accepted_later and record[0] not in out_of_order:
                        out_of_order.add(record[0])  # it will land after a newer record
                else:
                    landed[record[0]] = result.get("ShardId", "")
                    accepted_later.add(key)
            refused.reverse()
            for code, n in codes.items():
                BRIDGE_RETRIES.labels(code).inc(n)
            pending = refused
            first = next(iter(codes))
            attempts.failed(first, f"{len(refused)} of {len(resp['Records'])} records refused")
        return Put(calls, landed)


def ensure_stream(client, stream: str, *, create: bool, shards: int, timeout: float = 60.0) -> int:
    """Check that ``stream`` exists (creating it with ``shards`` when ``create``); returns open shards.

    A missing stream without ``create`` raises :class:`BridgeFailure` saying how to fix it.
    """
    try:
        summary = client.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
    except client.exceptions.ResourceNotFoundException:
        if not create:
            raise BridgeFailure(
                f"Kinesis stream {stream!r} does not exist. Create it (e.g. `aws kinesis "
                f"create-stream --stream-name {stream} --shard-count 2`), point --stream at an "
                "existing one, or run `iotcast bridge --create-stream --shards N` (local stack).",
                "ResourceNotFoundException",
            ) from None
        log.info("creating Kinesis stream %s with %d shard(s)", stream, shards)
        try:
            client.create_stream(StreamName=stream, ShardCount=shards)
        except client.exceptions.ResourceInUseException:
            pass  # created meanwhile by someone else
        summary = {"StreamStatus": "CREATING"}
    deadline = time.monotonic() + timeout
    while summary.get("StreamStatus") not in ("ACTIVE", "UPDATING"):
        if time.monotonic() > deadline:
            raise BridgeFailure(
                f"Kinesis stream {stream!r} is {summary.get('StreamStatus')} and did not become "
                f"ACTIVE within {timeout:.0f}s; check it in the console or with describe-stream.",
                "StreamNotActive",
            )
        time.sleep(0.2)
        summary = client.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
    BRIDGE_KINESIS_UP.set(1)
    return int(summary.get("OpenShardCount", 0))


def open_shard_ranges(client, stream: str) -> list[tuple[int, int]]:
    """Hash-key ranges ``(start, end)`` of the stream's open shards, sorted."""
    ranges = []
    kwargs = {"StreamName": stream}
    while True:
        resp = client.list_shards(**kwargs)
        for shard in resp["Shards"]:
            if "EndingSequenceNumber" in shard.get("SequenceNumberRange", {}):
                continue  # closed (split or merged)
            r = shard["HashKeyRange"]
            ranges.append((int(r["StartingHashKey"]), int(r["EndingHashKey"])))
        if not resp.get("NextToken"):
            break
        kwargs = {"NextToken": resp["NextToken"]}
    return sorted(ranges) or [(0, 2**128 - 1)]


def shard_index(ranges: list[tuple[int, int]], partition_key: str) -> int:
    """Index in ``ranges`` of the shard Kinesis puts ``partition_key`` on (MD5 of the key).

    >>> shard_index([(0, 2**127 - 1), (2**127, 2**128 - 1)], "b8:27:eb:bf:9d:51")
    1
    """
    h = int.from_bytes(hashlib.md5(partition_key.encode()).digest(), "big")
    i = bisect.bisect_right(ranges, (h, 2**128)) - 1
    return max(0, min(i, len(ranges) - 1))


@dataclass(frozen=True, slots=True)
class Shard:
    """An open shard: its id and hash-key range (inclusive)."""

    id: str
    start: int
    end: int


class ShardMap:
    """The stream's open shards by hash range, as the bridge last listed them.

    :meth:`shard_for` says which shard a partition key's MD5 falls in (remembered per
    key); :meth:`refresh` lists the shards again, after a reshard made a record land
    on another shard than the one addressed.  Safe to call from several threads (a
    refresh replaces the whole map at once).
    """

    def __init__(self, client: Any, stream: str, shards: Sequence[Shard] = ()) -> None:
        self.client = client
        self.stream = stream
        self.refreshed = 0
        self._set(list(shards) or [Shard("", 0, 2**128 - 1)])

    def _set(self, shards: list[Shard]) -> None:
        shards.sort(key=lambda s: s.start)
        self._state: tuple[list[Shard], list[int], dict[str, Shard]] = (
            shards,
            [s.start for s in shards],
            {},
        )

    def refresh(self) -> None:
        """List the stream's open shards again (ListShards, all pages)."""
        shards = []
        kwargs: dict[str, Any] = {"StreamName": self.stream}
        while True:
            resp = self.client.list_shards(**kwargs)
            for s in resp["Shards"]:
                if "EndingSequenceNumber" in s.get("SequenceNumberRange", {}):
                    continue  # closed (split or merged)
                r = s["HashKeyRange"]
                shards.append(
                    Shard(s["ShardId"], int(r["StartingHashKey"]), int(r["EndingHashKey"]))
                )
            if not resp.get("NextToken"):
                break
            kwargs = {"NextToken": resp["NextToken"]}
        if shards:
            self._set(shards)
            self.refreshed += 1

    @property
    def shards(self) -> list[Shard]:
        return self._state[0]

    def shard_for(self, key: str) -> Shard:
        """The open shard Kinesis puts partition key ``key`` on.

        >>> m = ShardMap(None, "s", [Shard("a", 0, 2**127 - 1), Shard("b", 2**127, 2**128 - 1)])
        >>> m.shard_for("b8:27:eb:bf:9d:51").id
        'b'
        """
        shards, starts, known = self._state
        shard = known.get(key)
        if shard is None:
            h = int.from_bytes(hashlib.md5(key.encode()).digest(), "big")
            i = bisect.bisect_right(starts, h) - 1
            shard = known[key] = shards[max(0, min(i, len(shards) - 1))]
        return shard

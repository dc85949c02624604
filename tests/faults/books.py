"""The books of a fault test: what was sent, what the stream holds, what was learned.

:func:`audit` reads the whole telemetry stream, the processor's dead letters
and the shard manifests and balances the books against the :class:`Ledger`
of what the test sent:

- every replayed reading is in the stream, or (moto restart) was accepted by
  the moto that was lost (``lost`` counts the rest);
- per device, replaying the stream's records in shard order through the
  processor's rules (a reading not newer than the device's last learned one
  is a duplicate or late, a glitch is skipped, the rest is learned) gives the
  number of readings that must have been learned; the manifest's sample count
  must equal it (``learned_twice`` counts the excess, ``missed`` the shortfall);
- every record that is not a reading is in the processor's dead letter with a
  reason (``dead_lettered``).

Records are read as the processor reads them (:func:`parts_of`): a packed record's
messages (``telemetry.envelope``), a device batch's readings, and nothing of a packed
record whose header names another shard (a stray copy a reshard left; the bridge sent
its readings again to their shard).

>>> expected_outcomes([("d", 1.0, False), ("d", 1.0, False), ("d", 0.5, False), ("d", 2.0, True)])
{'d': {'learned': 1, 'duplicate': 1, 'late': 1, 'glitch': 1}}
"""

from __future__ import annotations

import base64
import functools
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import boto3
import orjson
from botocore.config import Config
from botocore.exceptions import ClientError

from iotcast.settings import Settings
from telemetry.envelope import EnvelopeError, unpack
from telemetry.reading import Reading, decode_message, is_glitch
from tests.support import manifests, wait_for

__all__ = [
    "Ledger",
    "StreamContents",
    "StreamReader",
    "audit",
    "expected_outcomes",
    "parts_of",
    "read_stream",
    "wait_drained",
    "wait_until",
]


# The fault suite polls every quarter second: a fault lands while the pipeline is mid-flow.
wait_until = functools.partial(wait_for, interval=0.25)


@dataclass
class Ledger:
    """What a fault test sent: readings published over MQTT, records put straight into the
    stream (poison), and what a moto that was lost had accepted (raw records)."""

    published: list[Reading] = field(default_factory=list)
    poison: list[bytes] = field(default_factory=list)
    accepted_before_loss: list[bytes] = field(default_factory=list)


def expected_outcomes(rows: Iterable[tuple[str, float, bool]]) -> dict[str, dict[str, int]]:
    """Per device, what the processor must do with (device, ts, glitch) rows in stream order."""
    last: dict[str, float] = {}
    out: dict[str, dict[str, int]] = {}
    for device, ts, glitch in rows:
        counts = out.setdefault(device, {"learned": 0, "duplicate": 0, "late": 0, "glitch": 0})
        prev = last.get(device)
        if prev is not None and ts <= prev:
            counts["duplicate" if ts == prev else "late"] += 1
        elif glitch:
            counts["glitch"] += 1
        else:
            counts["learned"] += 1
            last[device] = ts
    return out


def parts_of(shard: str, data: bytes) -> list[Reading | None]:
    """What the processor reads in record ``data`` of ``shard``: per part, the reading (None:
    a part that is not one); nothing of a stray copy (a packed record addressed to another
    shard); a record that cannot be unpacked is one part.

    >>> from telemetry.envelope import pack
    >>> r = b'{"data": {"temp": 21.5}, "device_id": "a1", "ts": 1594512094}'
    >>> [p and p.device for p in parts_of("s0", pack([r, b"{"], "s0"))], parts_of("s0", pack([r], "s1"))
    (['a1', None], [])
    """
    try:
        u = unpack(data)
    except EnvelopeError:
        return [None]
    if u.shard and u.shard != shard:
        return []
    return [p if isinstance(p, Reading) else None for m in u for p in decode_message(m).parts]


@dataclass
class StreamContents:
    """Every record of a stream, per shard in sequence order: (sequence, data)."""

    shards: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)
    parts: int = 0  # what the processor reads in them (parts_of), readings or not

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.shards.values())

    def last_sequence(self) -> dict[str, str]:
        return {s: recs[-1][0] for s, recs in self.shards.items() if recs}


class StreamReader:
    """Reads every shard of a stream from the start, incrementally (cheap to poll).

    moto answers GetRecords with HTTP 500 now and then under load ("OrderedDict
    mutated during iteration"): such a poll stops early with ``complete`` False
    and the next one carries on from the same iterator.
    """

    def __init__(self, settings: Settings) -> None:
        self.kinesis = boto3.client(
            "kinesis",
            config=Config(retries={"max_attempts": 10, "mode": "standard"}),
            **settings.boto_kwargs("kinesis"),
        )
        self.complete = False
        self.stream = settings.stream
        self.iterators: dict[str, str] = {}
        self.contents = StreamContents()
        self.keys: set[tuple[str, float]] = set()  # (device, ts) of every reading read

    def poll(self) -> int:
        """Read what is new; returns the parts (readings, or not) read so far: what the
        processor counts in ``iotcast_readings_processed_total``."""
        try:
            self._poll()
            self.complete = True
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) < 500:
                raise
            self.complete = False
        return self.contents.parts

    def _poll(self) -> None:
        for shard in self.kinesis.list_shards(StreamName=self.stream)["Shards"]:
            sid = shard["ShardId"]
            if sid not in self.iterators:
                self.iterators[sid] = self.kinesis.get_shard_iterator(
                    StreamName=self.stream, ShardId=sid, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
                self.contents.shards[sid] = []
            while True:
                resp = self.kinesis.get_records(ShardIterator=self.iterators[sid], Limit=10000)
                self.iterators[sid] = resp["NextShardIterator"]
                self.contents.shards[sid].extend(
                    (r["SequenceNumber"], r["Data"]) for r in resp["Records"]
                )
                for r in resp["Records"]:
                    parts = parts_of(sid, r["Data"])
                    self.contents.parts += len(parts)
                    self.keys.update(_key_of(p) for p in parts if p is not None)
                if not resp["Records"] or not resp.get("MillisBehindLatest"):
                    break


def read_stream(settings: Settings) -> StreamContents:
    reader = StreamReader(settings)
    wait_until(lambda: reader.poll() >= 0 and reader.complete, 60, "the whole stream read")
    return reader.contents


def dead_letters(settings: Settings) -> list[dict[str, Any]]:
    s3 = settings.client("s3")
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=settings.bucket, Prefix="dead-letter/"
    ):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=settings.bucket, Key=obj["Key"])["Body"].read()
            out.extend(orjson.loads(line) for line in body.splitlines() if line)
    return out


def wait_drained(settings: Settings, ledger: Ledger, timeout: float) -> StreamContents:
    """Every published reading in the stream (or accepted by a lost moto), the stream quiet
    for 1.5 s, and every shard's manifest at the shard's last sequence number."""
    want = {_key_of(r) for r in ledger.published}
    before = {k for d in ledger.accepted_before_loss for k in _keys_of_data(d)}
    reader = StreamReader(settings)
    deadline = time.monotonic() + timeout

    def forwarded() -> bool:
        reader.poll()
        return reader.complete and want <= reader.keys | before

    wait_until(
        forwarded,
        max(1.0, deadline - time.monotonic()),
        "every reading in the stream",
        interval=1.0,
    )
    # (poll() counts parts, the readings the processor counts: compare like with like)
    quiet_since, count = time.monotonic(), reader.contents.parts
    while time.monotonic() - quiet_since < 1.5:
        time.sleep(0.5)
        if reader.poll() != count or not reader.complete:
            quiet_since, count = time.monotonic(), reader.contents.parts

    def committed() -> bool:
        last = reader.contents.last_sequence()
        try:
            got = {s: m.sequence for s, m in manifests(settings).items()}
        except Exception:  # noqa: BLE001 - S3 may still be recovering: poll again
            return False
        return all(got.get(s) is not None and int(got[s]) >= int(seq) for s, seq in last.items())

    wait_until(
        committed,
        max(1.0, deadline - time.monotonic()),
        "manifests at the stream's end",
        interval=1.0,
    )
    return reader.contents


def audit(
    settings: Settings, ledger: Ledger, contents: StreamContents | None = None
) -> dict[str, Any]:
    """Balance the books (module docstring); returns the figures for the results table."""
    contents = contents or read_stream(settings)
    sent = Counter(_key_of(r) for r in ledger.published)
    rows: list[tuple[str, float, bool]] = []
    in_stream: Counter = Counter()
    for sid, recs in contents.shards.items():
        for _, data in recs:
            for r in parts_of(sid, data):
                if r is not None:
                    rows.append((r.device, r.ts, is_glitch(r)))
                    in_stream[(r.device, r.ts)] += 1
    before = Counter(k for d in ledger.accepted_before_loss for k in _keys_of_data(d))
    lost_upstream = sum(1 for k in sent if k not in in_stream and k not in before)
    expected = expected_outcomes(rows)
    samples: dict[str, int] = {}
    for m in manifests(settings).values():
        for device, entry in m.devices.items():
            samples[device] = max(samples.get(device, 0), entry.samples)
    learned_twice = sum(
        max(0, samples.get(d, 0) - c["learned"]) for d, c in expected.items()
    ) + sum(n for d, n in samples.items() if d not in expected)
    missed = sum(max(0, c["learned"] - samples.get(d, 0)) for d, c in expected.items())
    # The same readings in replay order, no fault: what reordering cost (late, not learned).
    reference = expected_outcomes(
        (r.device, r.ts, is_glitch(r))
        for r in ledger.published
        if not before or _key_of(r) in in_stream
    )
    letters = [d for d in dead_letters(settings) if d.get("source") == "processor"]
    lettered = Counter(base64.b64decode(d["payload_b64"]) for d in letters)
    poison_missing = sum(1 for p in ledger.poison if p not in lettered)
    totals: Counter = Counter()
    for c in expected.values():
        totals.update(c)
    return {
        "distinct_replayed": len(sent),
        "records_in_stream": contents.count,
        "readings_in_stream": len(rows),
        "redelivered": sum(max(0, n - sent[k]) for k, n in in_stream.items()),
        "accepted_by_lost_moto": sum(1 for k in sent if k in before and k not in in_stream),
        "lost": lost_upstream + missed + poison_missing,
        "lost_upstream": lost_upstream,
        "missed_by_processor": missed,
        "learned_twice": learned_twice,
        "learned": sum(samples.get(d, 0) for d in expected),
        "duplicates_dropped": totals["duplicate"],
        "late": totals["late"],
        "late_by_reordering": sum(c["learned"] for c in reference.values()) - totals["learned"],
        "glitches": totals["glitch"],
        "dead_lettered": len(letters),
        "poison_missing": poison_missing,
        "dead_letter_reasons": sorted({d["reason"] for d in letters}),
    }


def _key_of(r: Reading) -> tuple[str, float]:
    return (r.device, r.ts)


def _keys_of_data(data: bytes) -> list[tuple[str, float]]:
    """(device, ts) of each reading of a record accepted by a moto that was lost (its shard
    unknown: a stray copy's readings count too; the bridge sent them again)."""
    try:
        u = unpack(data)
    except EnvelopeError:
        return []
    return [_key_of(p) for m in u for p in decode_message(m).parts if isinstance(p, Reading)]

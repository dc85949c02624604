"""The readings archive: the telemetry stream's records, as Firehose writes them to S3.

**Format.** An archive object holds Kinesis records of the telemetry stream, each
record's data as it is (a packed envelope, :mod:`telemetry.envelope`, or one device
message: a JSON reading or a JSON array of readings) followed by ``b"\\n"``: what a
Kinesis Data Firehose delivery stream writes with its Lambda-free
``AppendDelimiterToRecord`` processor, gzipped. Keys:
``archive/<app>/readings/YYYY/MM/DD/HH/<name>.records.gz`` (UTC hour of delivery).
Every record is self-delimiting (an envelope by its lengths or its zlib stream's end, a
JSON text by its grammar), so :func:`split_records` reads an object with or without the
newlines and never mistakes a newline inside a packed record for a boundary.

Delivery is at least once (Firehose retries, :class:`Archiver` rewrites a buffer whose
position it could not save): a reader drops repeated (device, ts) readings.

**Writer.** :class:`Archiver` does locally what Firehose does on AWS: reads every shard
of the stream, buffers records up to ``max_bytes`` or ``max_seconds``, writes one object,
and only then saves each shard's last archived sequence number at
``archive/<app>/_archiver/positions.json`` in the same bucket; a restart resumes after
it. Clients are boto3's, passed in.

>>> from telemetry.envelope import pack
>>> one = b'{"data": {"temp": 21.5}, "device_id": "a1", "ts": 1594512094.0}'
>>> blob = join_records([pack([one, one.replace(b"21.5", b"21.7")], "shardId-0"), one])
>>> [len(r) for r in split_records(blob)]
[153, 63]
>>> got = readings_of(blob)
>>> [(r.device, r.temp) for r in got.readings], got.refused
([('a1', 21.5), ('a1', 21.7), ('a1', 21.5)], 0)
"""

from __future__ import annotations

import functools
import gzip
import json
import struct
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from telemetry.envelope import MAGIC, EnvelopeError, unpack
from telemetry.reading import Reading, decode_message

__all__ = [
    "ArchiveError",
    "ArchiveFormatError",
    "Archiver",
    "Batch",
    "is_records_key",
    "join_records",
    "object_key",
    "positions_key",
    "readings_of",
    "readings_prefix",
    "split_records",
]

DELIMITER = b"\n"
SUFFIX = ".records.gz"
_U32 = struct.Struct(">I")
_WS = " \t\r\n"


class ArchiveFormatError(ValueError):
    """An archive object that cannot be read to its end (a truncated or unknown envelope)."""


class ArchiveError(RuntimeError):
    """The archiver gave up: a call kept failing after its bounded retries."""


def readings_prefix(app: str) -> str:
    """``archive/<app>/readings/``: where Firehose and :class:`Archiver` write."""
    return f"archive/{app}/readings/"


def positions_key(app: str) -> str:
    """Where :class:`Archiver` keeps each shard's last archived sequence number."""
    return f"archive/{app}/_archiver/positions.json"


def object_key(app: str, when: float, tag: str = "") -> str:
    """An archive object's key for a buffer opened at ``when`` (UTC hour folders, the
    name Firehose gives: stream, time, a unique part).

    >>> object_key("a", 1594512094.0, "x")
    'archive/a/readings/2020/07/12/00/iotcast-archive-2020-07-12-00-01-34-x.records.gz'
    """
    t = datetime.fromtimestamp(when, UTC)
    tag = tag or uuid.uuid4().hex
    return (
        f"{readings_prefix(app)}{t:%Y/%m/%d/%H}/iotcast-archive-{t:%Y-%m-%d-%H-%M-%S}-{tag}{SUFFIX}"
    )


def is_records_key(key: str) -> bool:
    """True for an object of records (not the CSV form ``.csv``/``.csv.gz``): ours end in
    ``.records.gz``; Firehose without a file extension writes names without a dot."""
    name = key.rsplit("/", 1)[-1]
    if name.endswith((".csv", ".csv.gz")):
        return False
    return name.endswith((".records", ".records.gz", ".gz")) or "." not in name


def join_records(records: Iterable[bytes]) -> bytes:
    """Records as an (uncompressed) archive object: each followed by the delimiter."""
    return b"".join(r + DELIMITER for r in records)


def _envelope_end(data: memoryview, start: int) -> int:
    """Where the packed record starting at ``start`` ends."""
    if start + 6 > len(data):
        raise ArchiveFormatError(f"truncated packed record at byte {start}")
    version, flags, n = data[start + 3], data[start + 4], data[start + 5]
    if version != 1 or flags & ~0x01:
        raise ArchiveFormatError(
            f"packed record of version {version}, flags {flags:#04x} at byte {start}: upgrade iotcast"
        )
    body = start + 6 + n
    if flags & 0x01:  # zlib: the stream knows its own end
        d = zlib.decompressobj()
        pos = body
        while not d.eof:
            if pos >= len(data):
                raise ArchiveFormatError(f"truncated compressed record at byte {start}")
            chunk = data[pos : pos + 65_536]
            d.decompress(chunk, 0)
            pos += len(chunk)
        return pos - len(d.unused_data)
    if body + 4 > len(data):
        raise ArchiveFormatError(f"truncated packed record at byte {start}")
    count = int(_U32.unpack_from(data, body)[0])
    head = body + 4 + 4 * count
    if head > len(data):
        raise ArchiveFormatError(f"truncated packed record at byte {start}")
    lengths: tuple[int, ...] = struct.unpack_from(f">{count}I", data, body + 4)
    return head + sum(lengths)


def split_records(data: bytes) -> Iterator[bytes]:
    """The records of an (uncompressed) archive object, in order.

    Raises :class:`ArchiveFormatError` at a record that cannot be delimited."""
    view = memoryview(data)
    pos, end = 0, len(data)
    decoder = json.JSONDecoder()
    while pos < end:
        if data.startswith(MAGIC, pos):
            stop = _envelope_end(view, pos)
            if stop > end:
                raise ArchiveFormatError(f"truncated packed record at byte {pos}")
            yield bytes(view[pos:stop])
            pos = stop
            if data.startswith(DELIMITER, pos):
                pos += 1
            continue
        nxt = data.find(MAGIC, pos)  # JSON never holds a raw NUL: the texts end before it
        nxt = end if nxt < 0 else nxt
        text = data[pos:nxt].decode("utf-8", errors="surrogateescape")
        i = 0
        while True:
            while i < len(text) and text[i] in _WS:
                i += 1
            if i >= len(text):
                break
            try:
                _, j = decoder.raw_decode(text, i)
            except json.JSONDecodeError:  # not JSON: the rest of its line is one bad record
                j = text.find("\n", i)
                j = len(text) if j < 0 else j
            yield text[i:j].encode("utf-8", errors="surrogateescape")
            i = j
        pos = nxt


@dataclass
class Decoded:
    """An archive object's readings and how many of its readings were refused."""

    readings: list[Reading] = field(default_factory=list)
    refused: int = 0
    records: int = 0


def readings_of(data: bytes, *, now: float | None = None) -> Decoded:
    """The valid readings of an (uncompressed) archive object, in record order, each judged
    as the processor judges it (:func:`~telemetry.reading.decode_message`)."""
    out = Decoded()
    for record in split_records(data):
        out.records += 1
        try:
            messages = unpack(record).messages
        except EnvelopeError:
            out.refused += 1
            continue
        for message in messages:
            for part in decode_message(message, now=now).parts:
                if isinstance(part, Reading):
                    out.readings.append(part)
                else:
                    out.refused += 1
    return out


# ------------------------------------------------------------------------- the writer
@dataclass
class Batch:
    """The records buffered since the last write, and the positions they reach."""

    records: list[bytes] = field(default_factory=list)
    size: int = 0
    opened: float | None = None
    reached: dict[str, str] = field(default_factory=dict)  # shard -> last sequence number
    closed: set[str] = field(default_factory=set)  # shards read to their end


def _retrying(call: Callable[[], Any], what: str, attempts: int, pause: float) -> Any:
    """``call()``, retried ``attempts`` times on any error of the SDK or the network."""
    from botocore.exceptions import BotoCoreError, ClientError

    for i in range(attempts):
        try:
            return call()
        except (BotoCoreError, ClientError) as exc:
            if i == attempts - 1:
                raise ArchiveError(f"{what} failed {attempts} times; last: {exc}") from exc
            time.sleep(pause * 2**i)
    raise AssertionError("unreachable")


class Archiver:
    """Kinesis to S3, the way Firehose delivers (see the module docstring).

    Callers: :meth:`run` (the command), or :meth:`poll` and :meth:`flush` (tests,
    a caller's own loop). ``say`` gets one line per object written and per shard found.
    """

    def __init__(
        self,
        kinesis: Any,
        s3: Any,
        *,
        stream: str,
        bucket: str,
        app: str,
        max_bytes: int = 5 * 1024 * 1024,
        max_seconds: float = 300.0,
        attempts: int = 5,
        retry_pause: float = 0.5,
        say: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kinesis, self.s3 = kinesis, s3
        self.stream, self.bucket, self.app = stream, bucket, app
        self.max_bytes, self.max_seconds = max_bytes, max_seconds
        self.attempts, self.retry_pause = attempts, retry_pause
        self.say = say or (lambda _line: None)
        self.clock = clock
        self.positions: dict[str, dict[str, Any]] = self._load_positions()
        self.iterators: dict[str, str | None] = {}
        self.batch = Batch()
        self.written: list[str] = []
        self.records_written = 0

    # ---------------------------------------------------------------- positions (S3)
    def _call(self, call: Callable[[], Any], what: str) -> Any:
        return _retrying(call, what, self.attempts, self.retry_pause)

    def _load_positions(self) -> dict[str, dict[str, Any]]:
        from botocore.exceptions import BotoCoreError, ClientError

        key = positions_key(self.app)
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return {}
        except (BotoCoreError, ClientError) as exc:  # NoSuchBucket, no access: say so
            raise ArchiveError(f"cannot read s3://{self.bucket}/{key}: {exc}") from exc
        doc = json.loads(body)
        if doc.get("stream") != self.stream:
            raise ArchiveError(
                f"s3://{self.bucket}/{key} holds positions of stream {doc.get('stream')!r}, "
                f"not {self.stream!r}: use another --app or delete it"
            )
        return dict(doc["shards"])

    def _save_positions(self) -> None:
        body = json.dumps({"stream": self.stream, "shards": self.positions}, sort_keys=True)
        self._call(
            lambda: self.s3.put_object(
                Bucket=self.bucket, Key=positions_key(self.app), Body=body.encode()
            ),
            "saving the archive positions",
        )

    # ---------------------------------------------------------------- reading Kinesis
    def _shards(self) -> list[dict[str, Any]]:
        shards: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"StreamName": self.stream}
        while True:
            page = self._call(functools.partial(self.kinesis.list_shards, **kwargs), "ListShards")
            shards += page["Shards"]
            token = page.get("NextToken")
            if not token:
                return shards
            kwargs = {"NextToken": token}

    def _open(self, shard: str) -> str:
        seq = self.positions.get(shard, {}).get("seq")
        kw: dict[str, Any] = {"StreamName": self.stream, "ShardId": shard}
        if seq:
            kw.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=seq)
        else:
            kw.update(ShardIteratorType="TRIM_HORIZON")
        self.say(f"reading {shard} " + (f"after {seq}" if seq else "from its oldest record"))
        it: str = self._call(lambda: self.kinesis.get_shard_iterator(**kw), "GetShardIterator")[
            "ShardIterator"
        ]
        return it

    def poll(self) -> int:
        """One GetRecords on every shard not yet read to its end; returns records read.
        Flushes whenever the buffer is full."""
        if not self.iterators or any(it is None for it in self.iterators.values()):
            for s in self._shards():
                sid = s["ShardId"]
                if sid not in self.iterators and not self.positions.get(sid, {}).get("closed"):
                    self.iterators[sid] = self._open(sid)
        n = 0
        for sid, it in list(self.iterators.items()):
            if it is None:
                continue
            resp = self._call(
                functools.partial(self.kinesis.get_records, ShardIterator=it, Limit=10_000),
                f"GetRecords on {sid}",
            )
            for rec in resp["Records"]:
                self._add(sid, rec["SequenceNumber"], rec["Data"])
                n += 1
            nxt = resp.get("NextShardIterator")
            self.iterators[sid] = nxt
            if nxt is None:
                self.batch.closed.add(sid)
                self.say(f"{sid} is closed and read to its end")
        if self.batch.records and self.clock() - (self.batch.opened or 0.0) >= self.max_seconds:
            self.flush()
        return n

    def _add(self, shard: str, seq: str, data: bytes) -> None:
        b = self.batch
        if b.opened is None:
            b.opened = self.clock()
        b.records.append(data)
        b.size += len(data) + 1
        b.reached[shard] = seq
        if b.size >= self.max_bytes:
            self.flush()

    # ---------------------------------------------------------------- writing S3
    def flush(self) -> str | None:
        """Write the buffer as one object, then save the positions it reaches; returns
        the key (None: nothing buffered and no position to save)."""
        b = self.batch
        if not b.records and not b.closed:
            return None
        key = None
        if b.records:
            key = object_key(self.app, b.opened or self.clock())
            body = gzip.compress(join_records(b.records), 6)
            self._call(
                lambda: self.s3.put_object(Bucket=self.bucket, Key=key, Body=body),
                f"writing s3://{self.bucket}/{key}",
            )
            self.written.append(key)
            self.records_written += len(b.records)
            self.say(
                f"wrote {len(b.records):,} records ({len(body):,} bytes) to s3://{self.bucket}/{key}"
            )
        for sid, seq in b.reached.items():
            self.positions.setdefault(sid, {})["seq"] = seq
        for sid in b.closed:
            self.positions.setdefault(sid, {})["closed"] = True
            self.iterators.pop(sid, None)
        self._save_positions()
        self.batch = Batch()
        return key

    def run(
        self,
        *,
        poll_interval: float = 1.0,
        until_idle: float | None = None,
        stop: Callable[[], bool] = lambda: False,
    ) -> int:
        """Poll and flush until ``stop()`` or, with ``until_idle``, that many seconds
        without a record; flushes what is buffered before returning records written."""
        idle_since = self.clock()
        while not stop():
            if self.poll():
                idle_since = self.clock()
            elif until_idle is not None and self.clock() - idle_since >= until_idle:
                break
            time.sleep(poll_interval)
        self.flush()
        return self.records_written

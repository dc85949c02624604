"""What the processor writes besides checkpoints: packed output records and dead letters.

:class:`PredictionWriter` sends the output records (:mod:`stream.records`:
predictions, one per reading with every horizon, and events, told apart by
``"kind"``) to the output stream (``iot-predictions``) from a background thread,
so the hot loop only appends to a buffer.  It packs them as the bridge packs
telemetry (:func:`telemetry.envelope.pack`, ``docs/records.md``): the records
bound for one shard of the output stream (by their device's MD5, as a record with
the device as partition key would go) into Kinesis records of at most
``record_bytes``, sent once the oldest has waited ``linger`` seconds or enough
have gathered to fill records; so a device's records stay on one shard, in order.
Kinesis records PutRecords refuses are retried with a bound; what still fails is
logged and counted.  ``iotcast_predictions_emitted_total`` counts the prediction
records (readings), ``iotcast_output_records_total`` the Kinesis records.

:func:`dead_letter_line` formats a record that is not a reading (or a part of a
record: ``part``, its index among the record's readings) in the bridge's
dead-letter format (one JSON object a line), with ``"source": "processor"`` and
the shard and sequence number it came from; the lines are written to S3 with the
shard's next checkpoint, before the checkpoint commits the sequence number past
them.

>>> import orjson
>>> line = dead_letter_line(b"not json", "invalid_json", "payload is not valid JSON", "shardId-0", "12")
>>> d = orjson.loads(line); (d["source"], d["reason"], d["shard"], d["sequence"], d["payload_b64"])
('processor', 'invalid_json', 'shardId-0', '12', 'bm90IGpzb24=')
>>> "part" in d, orjson.loads(dead_letter_line(b"{", "invalid_json", "", "s", "1", part=3))["part"]
(False, 3)
>>> dead_letter_key("2026-11-26T20:00:00")[:24]
'dead-letter/2026-11-26/2'
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import logging
import queue
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import orjson

from monitoring.metrics import OUTPUT_RECORDS, PREDICTIONS_EMITTED
from stream.aws import KinesisClient, PutRecordsEntry
from stream.records import OutputRecord, encode
from telemetry.envelope import MAX_RECORD_BYTES, MESSAGE_OVERHEAD, pack

__all__ = [
    "PredictionWriter",
    "RecordSink",
    "dead_letter_key",
    "dead_letter_line",
]

log = logging.getLogger(__name__)

MAX_BATCH = 500  # PutRecords: records per call
MAX_CALL_BYTES = 5 * 1024 * 1024  # PutRecords: bytes per call, keys included
MAX_ATTEMPTS = 6
RECORD_BYTES = 25_000  # one PUT payload unit (docs/records.md, "Bounds")
LINGER_SECONDS = 0.25
FLUSH_RECORDS = 2_000  # output records buffered that wake the writer before the linger ends
SHARDS_REFRESH_SECONDS = 300.0


def dead_letter_line(
    raw: bytes,
    reason: str,
    message: str,
    shard_id: str,
    sequence: str,
    received_at: float | None = None,
    *,
    part: int | None = None,
) -> bytes:
    entry: dict[str, object] = {
        "received_at": datetime.fromtimestamp(received_at or time.time(), UTC).isoformat(),
        "topic": None,
        "reason": reason,
        "message": message,
        "payload_b64": base64.b64encode(raw).decode(),
        "source": "processor",
        "shard": shard_id,
        "sequence": sequence,
    }
    if part is not None:
        entry["part"] = part
    return orjson.dumps(entry) + b"\n"


def dead_letter_key(now_iso: str | None = None) -> str:
    now = now_iso or datetime.now(UTC).isoformat(timespec="seconds")
    return f"dead-letter/{now[:10]}/{now[11:19].replace(':', '')}-{uuid.uuid4().hex}.jsonl"


class RecordSink(Protocol):
    """Where the processor's output records go (:class:`PredictionWriter`, or a test's stand-in)."""

    def add(self, records: Sequence[OutputRecord]) -> None: ...


class _Placed(PutRecordsEntry, total=False):
    ExplicitHashKey: str  # the first hash key of the shard addressed


@dataclass(frozen=True, slots=True)
class _Lane:
    """One shard of the output stream as last listed: its id and first hash key (``""``, 0:
    the stream was not listed; records then go by partition key)."""

    shard: str
    start: int


@dataclass(slots=True)
class _Packed:
    """One Kinesis record of the writer: its entry, and what it holds (for the counts)."""

    entry: _Placed
    lane: _Lane
    records: int
    predictions: int


class PredictionWriter:
    """Packs output records into Kinesis records and sends them from a background thread.

    ``kinesis`` is a boto3 Kinesis client; ``add`` never blocks; ``close`` sends what
    is buffered and stops the thread.  ``record_bytes`` bounds a Kinesis record (its
    messages, before the header), ``linger`` the time the oldest output record waits
    for its Kinesis record to fill.  ``sent`` counts output records accepted,
    ``records_sent`` the Kinesis records holding them.  ``failed`` counts output
    records refused after every retry; ``dropped`` those never sent because the
    buffer was full or the stop's drain bound passed (said once, at the stop).

    >>> class Recorder:  # stands in for the Kinesis client in this example
    ...     def put_records(self, StreamName, Records):
    ...         self.data = [r["Data"] for r in Records]
    ...         return {"Records": [{"SequenceNumber": "1"} for _ in Records]}
    >>> from stream.records import Forecast, PredictionRecord, decode_records
    >>> kinesis = Recorder()
    >>> w = PredictionWriter(kinesis, "iot-predictions")
    >>> w.add([PredictionRecord("d1", 1.0, 22.0, [Forecast(0, "linear", 22.1, 1.0)])] * 3)
    >>> w.close()
    >>> w.sent, w.records_sent, w.pending, len(decode_records(kinesis.data[0]))
    (3, 1, 0, 3)
    """

    def __init__(
        self,
        kinesis: KinesisClient,
        stream: str,
        *,
        max_buffer: int = 200_000,
        record_bytes: int = RECORD_BYTES,
        linger: float = LINGER_SECONDS,
    ) -> None:
        if not 1024 <= record_bytes <= MAX_RECORD_BYTES - 1024:
            raise ValueError(f"record_bytes {record_bytes}: 1024 .. {MAX_RECORD_BYTES - 1024}")
        self.kinesis = kinesis
        self.stream = stream
        self.max_buffer = max_buffer
        self.record_bytes = record_bytes
        self.linger = linger
        self._buffer: list[OutputRecord] = []
        self._oldest: float | None = None  # when the oldest buffered record was added
        self._lock = threading.Lock()
        self._wake = queue.Queue[bool]()
        self._stopping = False
        self._deadline: float | None = None
        self._drain = 0.0
        self._lanes: list[_Lane] = []
        self._starts: list[int] = []
        self._listed = -1e9  # when the output stream's shards were last listed
        self.sent = 0
        self.records_sent = 0
        self.failed = 0
        self.dropped = 0
        self._cut = 0  # records in a send the drain bound cut short, not yet said
        self._thread = threading.Thread(target=self._run, name="predictions", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------- the hot loop's side
    def add(self, records: Sequence[OutputRecord]) -> None:
        with self._lock:
            if len(self._buffer) >= self.max_buffer:
                self.dropped += len(records)
                if self.dropped == len(records):
                    log.warning(
                        "prediction output is %d records behind; dropping new prediction records "
                        "(the output stream %s is too slow or down)",
                        len(self._buffer),
                        self.stream,
                    )
                return
            if self._oldest is None:
                self._oldest = time.monotonic()
            self._buffer.extend(records)
            if len(self._buffer) >= FLUSH_RECORDS:
                self._wake.put(True)

    # ------------------------------------------------------------ the writer thread
    def _take(self) -> list[OutputRecord]:
        with self._lock:
            batch, self._buffer = self._buffer, []
            self._oldest = None
        return batch

    def _wait(self) -> float:
        """Seconds until the oldest buffered record has lingered enough (the linger when
        nothing is buffered)."""
        with self._lock:
            oldest = self._oldest
        if oldest is None:
            return self.linger
        return max(0.0, oldest + self.linger - time.monotonic())

    def _run(self) -> None:
        while True:
            try:
                self._wake.get(timeout=self._wait())
            except queue.Empty:
                pass
            if self._wait() > 0 and not self._stopping and self.pending < FLUSH_RECORDS:
                continue  # woken early, and too few records to fill one: let them linger
            while not self._expired() and (batch := self._take()):
                self._send(self._pack(batch))
            if self._stopping:
                self._drop_unsent()
                return

    def _refresh(self) -> None:
        """List the output stream's open shards (every few minutes, and after a record landed
        on another shard than the one addressed); without them, one lane by partition key."""
        self._listed = time.monotonic()
        lanes: list[_Lane] = []
        kwargs: dict[str, str] = {"StreamName": self.stream}
        list_shards = getattr(self.kinesis, "list_shards", None)  # a test's stand-in may lack it
        try:
            while list_shards is not None:
                resp = list_shards(**kwargs)
                for s in resp.get("Shards", []):
                    if "EndingSequenceNumber" not in s.get("SequenceNumberRange", {}):
                        start = int(s["HashKeyRange"]["StartingHashKey"])
                        lanes.append(_Lane(s["ShardId"], start))
                if not resp.get("NextToken"):
                    break
                kwargs = {"NextToken": resp["NextToken"]}
        except Exception as exc:  # noqa: BLE001 - placement is an optimisation: go by partition key
            log.warning(
                "cannot list the shards of %s (%s): records go by partition key", self.stream, exc
            )
            lanes = []
        lanes.sort(key=lambda lane: lane.start)
        self._lanes = lanes or [_Lane("", 0)]
        self._starts = [lane.start for lane in self._lanes]

    def _lane(self, device: str) -> _Lane:
        h = int.from_bytes(hashlib.md5(device.encode()).digest(), "big")
        i = bisect.bisect_right(self._starts, h) - 1
        return self._lanes[max(0, i)]

    def _pack(self, batch: list[OutputRecord]) -> list[_Packed]:
        """The batch as packed Kinesis records: per lane, in order, each at most
        ``record_bytes`` of messages (a message larger than that alone in its record)."""
        if time.monotonic() - self._listed > SHARDS_REFRESH_SECONDS:
            self._refresh()
        by_lane: dict[_Lane, list[OutputRecord]] = {}
        for r in batch:
            lane = self._lane(r.device)
            group = by_lane.get(lane)
            if group is None:
                group = by_lane[lane] = []
            group.append(r)
        out: list[_Packed] = []
        limit = self.record_bytes
        for lane, group in by_lane.items():
            chunk: list[bytes] = []
            size = predictions = 0
            key = group[0].device
            for r in group:
                data = encode(r)
                n = len(data) + MESSAGE_OVERHEAD
                if chunk and size + n > limit:
                    out.append(self._record(chunk, lane, key, predictions))
                    chunk, size, predictions, key = [], 0, 0, r.device
                chunk.append(data)
                size += n
                predictions += r.kind == "prediction"
            out.append(self._record(chunk, lane, key, predictions))
        return out

    @staticmethod
    def _record(chunk: list[bytes], lane: _Lane, key: str, predictions: int) -> _Packed:
        entry: _Placed = {"Data": pack(chunk), "PartitionKey": key}
        if lane.shard:
            entry["ExplicitHashKey"] = str(lane.start)
        return _Packed(entry, lane, len(chunk), predictions)

    def _calls(self, records: list[_Packed]) -> list[list[_Packed]]:
        """PutRecords calls of at most MAX_BATCH records and MAX_CALL_BYTES."""
        calls: list[list[_Packed]] = [[]]
        size = 0
        for r in records:
            n = len(r.entry["Data"]) + len(r.entry["PartitionKey"])
            if calls[-1] and (len(calls[-1]) >= MAX_BATCH or size + n > MAX_CALL_BYTES):
                calls.append([])
                size = 0
            calls[-1].append(r)
            size += n
        return calls

    def _send(self, records: list[_Packed]) -> None:
        for call in self._calls(records):
            self._put(call)

    def _put(self, records: list[_Packed]) -> None:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                resp = self.kinesis.put_records(
                    StreamName=self.stream, Records=[r.entry for r in records]
                )
            except Exception as exc:  # noqa: BLE001 - any transport error: retried with a bound below
                if attempt == MAX_ATTEMPTS or self._expired():
                    self._give_up(records, f"PutRecords failed {attempt} times ({exc})")
                    return
                time.sleep(0.1 * 2**attempt)
                continue
            failed = []
            for r, res in zip(records, resp["Records"], strict=True):
                if "ErrorCode" in res:
                    failed.append(r)
                    continue
                self.sent += r.records
                self.records_sent += 1
                OUTPUT_RECORDS.inc()
                PREDICTIONS_EMITTED.inc(r.predictions)
                landed = res.get("ShardId")
                if r.lane.shard and landed and landed != r.lane.shard:
                    self._listed = -1e9  # a reshard: list the shards before the next batch
            if not failed:
                return
            records = failed
            if attempt == MAX_ATTEMPTS or self._expired():
                self._give_up(failed, f"still refused after {attempt} attempts")
                return
            time.sleep(0.1 * 2**attempt)

    def _give_up(self, records: list[_Packed], why: str) -> None:
        """Count (and say) output records no longer retried.  Past the stop's drain
        bound they join the buffer's in the one stop message (``_drop_unsent``)."""
        n = sum(r.records for r in records)
        if self._expired():
            self._cut += n
            return
        self.failed += n
        log.error("%d prediction records lost on %s: %s", n, self.stream, why)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._buffer)

    def _expired(self) -> bool:
        """Stopping and past the drain deadline: no more sends or retries."""
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _drop_unsent(self) -> None:
        """Drop what is still buffered, and say once how many records the stop cost:
        those buffered and those whose sending the drain bound cut short."""
        with self._lock:
            left, self._buffer = len(self._buffer), []
            self._oldest = None
        cut, self._cut = self._cut, 0
        if left or cut:
            self.dropped += left + cut
            log.error(
                "stopping: %d prediction records not sent to %s within the %gs drain bound "
                "(%d buffered, %d being retried; the stream is too slow or down); "
                "they are not written anywhere else",
                left + cut,
                self.stream,
                self._drain,
                left,
                cut,
            )

    def close(self, timeout: float = 5.0) -> None:
        """Send what is buffered for up to ``timeout`` seconds, then drop (and log) the rest.

        Bounded so that a slow or missing output stream cannot hold a stopping
        processor past its grace period (a backlog of 100k records takes minutes).
        """
        self._drain = timeout
        self._deadline = time.monotonic() + timeout
        self._stopping = True
        self._wake.put(True)
        self._thread.join(timeout + 5.0)  # one PutRecords in flight may finish after the bound
        if self._thread.is_alive():
            log.error("prediction writer still busy %.0fs after stop; abandoning it", timeout + 5)

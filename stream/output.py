"""What the processor writes besides checkpoints: prediction records and dead letters.

:class:`PredictionWriter` sends prediction records (``"kind": "prediction"``)
and event records (``"kind": "event"``, :mod:`stream.events`) to the output
stream (``iot-predictions``) in batched PutRecords from a background thread, so
the hot loop only appends to a buffer; ``iotcast_predictions_emitted_total``
counts the predictions.  Records PutRecords reports as failed are
retried with a bound; what still fails is logged and counted.

:func:`dead_letter_line` formats a record that is not a reading in the
bridge's dead-letter format (one JSON object a line), with
``"source": "processor"`` and the shard and sequence number it came from;
the lines are written to S3 with the shard's next checkpoint, before the
checkpoint commits the sequence number past them.

>>> import orjson
>>> line = dead_letter_line(b"not json", "invalid_json", "payload is not valid JSON", "shardId-0", "12")
>>> d = orjson.loads(line); (d["source"], d["reason"], d["shard"], d["sequence"], d["payload_b64"])
('processor', 'invalid_json', 'shardId-0', '12', 'bm90IGpzb24=')
>>> dead_letter_key("2026-11-26T20:00:00")[:24]
'dead-letter/2026-11-26/2'
"""

from __future__ import annotations

import base64
import logging
import queue
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal, Protocol, TypedDict

import orjson

from monitoring.metrics import PREDICTIONS_EMITTED
from stream.aws import KinesisClient, PutRecordsEntry
from stream.events import EventRecord

__all__ = [
    "OutputRecord",
    "PredictionRecord",
    "PredictionWriter",
    "RecordSink",
    "dead_letter_key",
    "dead_letter_line",
]

log = logging.getLogger(__name__)

MAX_BATCH = 500
MAX_ATTEMPTS = 6


def dead_letter_line(
    raw: bytes,
    reason: str,
    message: str,
    shard_id: str,
    sequence: str,
    received_at: float | None = None,
) -> bytes:
    return (
        orjson.dumps(
            {
                "received_at": datetime.fromtimestamp(received_at or time.time(), UTC).isoformat(),
                "topic": None,
                "reason": reason,
                "message": message,
                "payload_b64": base64.b64encode(raw).decode(),
                "source": "processor",
                "shard": shard_id,
                "sequence": sequence,
            }
        )
        + b"\n"
    )


def dead_letter_key(now_iso: str | None = None) -> str:
    now = now_iso or datetime.now(UTC).isoformat(timespec="seconds")
    return f"dead-letter/{now[:10]}/{now[11:19].replace(':', '')}-{uuid.uuid4().hex}.jsonl"


class PredictionRecord(TypedDict):
    """One prediction on the output stream (``actual``: the reading's value, for a nowcast)."""

    kind: Literal["prediction"]
    device: str
    ts: float
    model: str
    horizon: int
    prediction: float
    target_ts: float
    actual: float | None


# What goes to the output stream: predictions and events, told apart by "kind".
OutputRecord = PredictionRecord | EventRecord


class RecordSink(Protocol):
    """Where the processor's output records go (:class:`PredictionWriter`, or a test's stand-in)."""

    def add(self, records: Sequence[OutputRecord]) -> None: ...


class _Entry(PutRecordsEntry):
    _event: bool  # an event record (not counted as a prediction)


class PredictionWriter:
    """Batches prediction records into PutRecords on a background thread.

    ``kinesis`` is a boto3 Kinesis client; ``add`` never blocks; ``close``
    sends what is buffered and stops the thread.

    >>> class Recorder:  # stands in for the Kinesis client in this example
    ...     def put_records(self, StreamName, Records):
    ...         return {"Records": [{"SequenceNumber": "1"} for _ in Records]}
    >>> w = PredictionWriter(Recorder(), "iot-predictions")
    >>> w.add([{"device": "d1", "ts": 1.0, "model": "linear", "horizon": 0,
    ...         "prediction": 22.1, "target_ts": 1.0, "actual": 22.0}])
    >>> w.close()
    >>> w.sent, w.pending
    (1, 0)
    """

    def __init__(self, kinesis: KinesisClient, stream: str, *, max_buffer: int = 200_000) -> None:
        self.kinesis = kinesis
        self.stream = stream
        self.max_buffer = max_buffer
        self._buffer: list[OutputRecord] = []
        self._lock = threading.Lock()
        self._wake = queue.Queue[bool]()
        self._stopping = False
        self._deadline: float | None = None
        self._drain = 0.0
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="predictions", daemon=True)
        self._thread.start()

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
            self._buffer.extend(records)
            if len(self._buffer) >= MAX_BATCH:
                self._wake.put(True)

    def _take(self) -> list[OutputRecord]:
        with self._lock:
            batch, self._buffer = self._buffer[:MAX_BATCH], self._buffer[MAX_BATCH:]
        return batch

    def _run(self) -> None:
        while True:
            try:
                self._wake.get(timeout=0.5)
            except queue.Empty:
                pass
            while not self._expired() and (batch := self._take()):
                self._send(batch)
            if self._stopping:
                self._drop_unsent()
                return

    def _send(self, batch: list[OutputRecord]) -> None:
        entries: list[_Entry] = [
            {
                "Data": orjson.dumps(r),
                "PartitionKey": r["device"],
                "_event": r.get("kind") == "event",
            }
            for r in batch
        ]
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                resp = self.kinesis.put_records(
                    StreamName=self.stream,
                    Records=[
                        {"Data": e["Data"], "PartitionKey": e["PartitionKey"]} for e in entries
                    ],
                )
            except Exception as exc:  # noqa: BLE001 - any transport error: retried with a bound below
                if attempt == MAX_ATTEMPTS or self._expired():
                    self.failed += len(entries)
                    log.error(
                        "PutRecords to %s failed %d times (%s); %d prediction records lost",
                        self.stream,
                        attempt,
                        exc,
                        len(entries),
                    )
                    return
                time.sleep(0.1 * 2**attempt)
                continue
            failed = [e for e, r in zip(entries, resp["Records"], strict=True) if "ErrorCode" in r]
            ok = len(entries) - len(failed)
            self.sent += ok
            events = sum(e["_event"] for e in entries) - sum(e["_event"] for e in failed)
            PREDICTIONS_EMITTED.inc(ok - events)
            if not failed:
                return
            entries = failed
            if attempt == MAX_ATTEMPTS or self._expired():
                self.failed += len(failed)
                log.error(
                    "%d prediction records still refused by %s after %d attempts",
                    len(failed),
                    self.stream,
                    attempt,
                )
                return
            time.sleep(0.1 * 2**attempt)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._buffer)

    def _expired(self) -> bool:
        """Stopping and past the drain deadline: no more sends or retries."""
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _drop_unsent(self) -> None:
        with self._lock:
            left, self._buffer = len(self._buffer), []
        if left:
            self.dropped += left
            log.error(
                "stopping: %d prediction records not sent to %s within the %.0fs drain bound "
                "(the stream is too slow or down); they are not written anywhere else",
                left,
                self.stream,
                self._drain,
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

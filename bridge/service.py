"""The bridge: MQTT in, Kinesis out, dead letters to S3, nothing lost.

Wiring (each piece lives in its own module)::

    paho thread ──decode──> Lane[device's lane] ──> sender thread ──PutRecords──> ack
        │  (Buffer: a slot per unsettled message; full -> wait)
        └──invalid──> dead-letter Lane ──> writer thread ──S3 put_object──> ack

A reading goes on whatever its validation dropped or clipped (each value is
counted by field and reason): as its original payload when validation changed
anything (``Reading.notes``), so the telemetry stream keeps the raw values and the
processor, decoding the same bytes, finds the same; re-encoded compactly
otherwise.  Only a payload with nothing usable left is dead-lettered.

A message is acknowledged to the broker only after Kinesis accepted its
record or S3 holds its dead letter.  A crash therefore loses nothing (the
broker redelivers what was not acknowledged: duplicates are possible and
removed downstream by device and timestamp).

When a retry bound is exceeded the bridge does not drop and does not
acknowledge: it records the :class:`~bridge.retry.BridgeFailure`, reports
unhealthy, stops, and ``iotcast bridge`` exits with status 3 and the message;
the broker keeps the unacknowledged messages for the next run.

>>> from telemetry.broker import parse_mqtt_url
>>> aws = {"kinesis": {"region_name": "us-east-1", "endpoint_url": "http://127.0.0.1:4567"},
...        "s3": {"region_name": "us-east-1", "endpoint_url": "http://127.0.0.1:5000"}}
>>> target = BridgeTarget(parse_mqtt_url("mqtt://127.0.0.1:1883"), "iot-telemetry", "iotcast", aws)
>>> bridge = Bridge(target, BridgeOptions(client_id="iotcast-bridge-demo", lanes=2))
>>> bridge.health()["ok"], len(bridge.lanes)
(False, 2)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

from bridge.batcher import Lane
from bridge.buffer import Buffer
from bridge.deadletter import DeadLetterWriter, dead_letter_entry, ensure_bucket
from bridge.kinesis import (
    KinesisSender,
    client_config,
    ensure_stream,
    error_code,
    open_shard_ranges,
    shard_index,
)
from bridge.mqtt import TELEMETRY_TOPIC, Message, MqttSource
from bridge.retry import Aborted, BridgeFailure, RetryPolicy
from monitoring.metrics import (
    BRIDGE_FORWARDED,
    BRIDGE_KINESIS_UP,
    BRIDGE_RECEIVED,
    BRIDGE_VALUES_CLIPPED,
    BRIDGE_VALUES_DROPPED,
    FieldNotes,
)
from telemetry.broker import MqttTarget
from telemetry.reading import InvalidReading, decode_payload, encode

__all__ = ["Bridge", "BridgeOptions", "BridgeTarget"]

log = logging.getLogger(__name__)
MAX_PUT_RECORDS = 500
MAX_PUT_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True)
class BridgeTarget:
    """What the bridge talks to: the broker, the Kinesis stream, the dead-letter bucket, and
    AWS (``aws``: per service, ``kinesis`` and ``s3``, the keyword arguments of
    ``boto3.client``: region, endpoint, credentials; each may answer elsewhere)."""

    mqtt: MqttTarget
    stream: str
    bucket: str
    aws: Mapping[str, Mapping[str, Any]] = field(repr=False)

    def endpoint(self, service: str) -> str | None:
        return self.aws[service].get("endpoint_url")

    @property
    def region(self) -> str | None:
        return self.aws["kinesis"].get("region_name")


@dataclass(frozen=True)
class BridgeOptions:
    """How the bridge batches, buffers, retries and stops (defaults suit the local stack and AWS)."""

    client_id: str
    linger: float = 0.025
    buffer: int = 20_000
    lanes: int = 4
    max_records: int = MAX_PUT_RECORDS
    max_bytes: int = MAX_PUT_BYTES
    dead_letter_linger: float = 0.5
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    create_stream: bool = False
    shards: int = 1
    session_expiry: int = 86_400
    stop_timeout: float = 20.0
    topic: str = TELEMETRY_TOPIC


class Bridge:
    """One bridge process: :meth:`start`, then :meth:`stop` (or :meth:`run` for both with signals)."""

    def __init__(self, target: BridgeTarget, options: BridgeOptions) -> None:
        self.target = target
        self.options = options
        self.abort = threading.Event()
        self.stop_requested = threading.Event()
        self.failure: BridgeFailure | None = None
        self._stopping = False
        self._started = False
        session = boto3.session.Session()
        kinesis, s3 = target.aws["kinesis"], target.aws["s3"]
        self.kinesis = session.client("kinesis", config=client_config(options.lanes + 4), **kinesis)
        self.s3 = session.client("s3", config=client_config(4), **s3)
        self._probe = session.client(
            "kinesis",
            config=Config(connect_timeout=2, read_timeout=2, retries={"total_max_attempts": 1}),
            **kinesis,
        )
        self._probe_cache: tuple[float, bool] = (0.0, False)
        self.buffer = Buffer(options.buffer, ack=lambda m: self.source.ack(m))
        self.lanes = [
            Lane(options.max_records, options.max_bytes, options.linger)
            for _ in range(options.lanes)
        ]
        self.senders = [
            KinesisSender(self.kinesis, target.stream, options.retry, self.abort)
            for _ in self.lanes
        ]
        self.dead_lane = Lane(1000, 4 * 1024 * 1024, options.dead_letter_linger)
        self.dead_writer = DeadLetterWriter(self.s3, target.bucket, options.retry, self.abort)
        self._device_lane: dict[str, Lane] = {}
        self._shard_ranges: list[tuple[int, int]] = [(0, 2**128 - 1)]
        self._threads: list[threading.Thread] = []
        self.received = 0
        self._notes = FieldNotes(BRIDGE_VALUES_DROPPED, BRIDGE_VALUES_CLIPPED)
        self._forwarded = [0] * len(self.lanes)
        self.source = MqttSource(
            target.mqtt,
            options.client_id,
            self._on_message,
            receive_maximum=options.buffer,
            topic=options.topic,
            session_expiry=options.session_expiry,
        )

    # ------------------------------------------------------------ lifecycle
    def start(self, mqtt_timeout: float = 30.0) -> None:
        """Check (or create) the stream and bucket, start the senders, then subscribe."""
        try:
            self._check_resources()
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise BridgeFailure(
                f"cannot use Kinesis stream {self.target.stream!r} / S3 bucket "
                f"{self.target.bucket!r} (Kinesis at {self.target.endpoint('kinesis') or 'AWS'}, "
                f"S3 at {self.target.endpoint('s3') or 'AWS'}, region {self.target.region}): "
                f"{error_code(exc)}: {exc}. Check --endpoint-url or AWS_ENDPOINT_URL_KINESIS / "
                "AWS_ENDPOINT_URL_S3, --region and the credentials, and that the service answers.",
                error_code(exc),
            ) from exc
        for i in range(len(self.lanes)):
            self._spawn(f"bridge-lane-{i}", self._send_loop, i)
        self._spawn("bridge-dead-letter", self._dead_letter_loop)
        self._started = True
        self.source.start(mqtt_timeout)

    def _check_resources(self) -> None:
        shards = ensure_stream(
            self.kinesis,
            self.target.stream,
            create=self.options.create_stream,
            shards=self.options.shards,
        )
        self._shard_ranges = open_shard_ranges(self.kinesis, self.target.stream)
        ensure_bucket(self.s3, self.target.bucket, create=self.options.create_stream)
        log.info(
            "bridge: stream %s (%d open shards), dead letters in s3://%s/dead-letter/, "
            "%d lanes, linger %.0f ms, buffer %d",
            self.target.stream,
            shards,
            self.target.bucket,
            len(self.lanes),
            self.options.linger * 1000,
            self.options.buffer,
        )

    def stop(self, timeout: float | None = None) -> bool:
        """Stop taking messages, flush what is buffered, acknowledge it, disconnect.

        Returns True when everything buffered was settled within ``timeout``;
        otherwise the rest is released unacknowledged (the broker keeps it).
        """
        timeout = self.options.stop_timeout if timeout is None else timeout
        self._stopping = True
        self.stop_requested.set()
        for lane in [*self.lanes, self.dead_lane]:
            lane.close()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        drained = not any(t.is_alive() for t in self._threads)
        if not drained:
            log.warning("bridge: flush did not finish within %.0fs; stopping retries", timeout)
            self.abort.set()
            for t in self._threads:
                t.join(10)
        if self._started:
            self.source.stop()
        left = len(self.buffer)
        if left:
            log.warning(
                "bridge: %d message(s) left unacknowledged; the broker redelivers them", left
            )
        return drained and self.failure is None

    def run(self) -> int:
        """Start, serve until SIGTERM/SIGINT or a failure, stop; returns the exit status."""
        try:
            self.start()
        except BridgeFailure as exc:
            self.stop(timeout=5)
            self.failure = self.failure or exc
            log.error("bridge: %s", exc)
            return 2
        while not self.stop_requested.wait(1.0):
            pass
        started = time.monotonic()
        drained = self.stop()
        if self.failure is not None:
            log.error("bridge: stopped: %s", self.failure)
            return 3
        log.info(
            "bridge: stopped in %.1fs (received %d, forwarded %d, dead-lettered %d)",
            time.monotonic() - started,
            self.received,
            self.forwarded,
            self.dead_writer.written,
        )
        return 0 if drained else 1

    @property
    def forwarded(self) -> int:
        """Readings Kinesis accepted so far."""
        return sum(self._forwarded)

    def request_stop(self, *_: object) -> None:
        """Ask :meth:`run` to stop (signal handler)."""
        self.stop_requested.set()

    # -------------------------------------------------------------- health
    def health(self) -> dict:
        """Readiness: connected to the broker, Kinesis answering, no failure, not stopping."""
        kinesis = self.failure is None and self._kinesis_ok()
        state = {
            "ok": bool(
                self.source.connected and kinesis and self.failure is None and not self._stopping
            ),
            "mqtt": self.source.connected,
            "kinesis": kinesis,
            "stopping": self._stopping,
            "buffer": len(self.buffer),
            "capacity": self.buffer.capacity,
            "oldest_unacked_seconds": round(self.buffer.oldest_age(), 3),
            "failure": str(self.failure) if self.failure else None,
        }
        return state

    def _kinesis_ok(self) -> bool:
        now = time.monotonic()
        if any(now - s.last_ok < 10 for s in self.senders):
            return True
        checked, ok = self._probe_cache
        if now - checked < 5 and checked:
            return ok
        try:
            self._probe.describe_stream_summary(StreamName=self.target.stream)
            ok = True
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            log.warning("health: Kinesis stream %s not reachable: %s", self.target.stream, exc)
            ok = False
        BRIDGE_KINESIS_UP.set(1 if ok else 0)
        self._probe_cache = (now, ok)
        return ok

    # -------------------------------------------------------------- intake
    def _on_message(self, msg: Message) -> None:
        BRIDGE_RECEIVED.inc()
        self.received += 1
        while not self.buffer.admit(msg, timeout=0.5):
            if self._stopping:
                return  # not acknowledged: redelivered to the next session
        if self._stopping:
            self.buffer.settle([msg], ack=False)
            return
        try:
            reading = decode_payload(msg.payload, msg.topic)
        except InvalidReading as exc:
            if not self.dead_lane.put((msg, exc.reason, str(exc)), len(msg.payload) + 300):
                self.buffer.settle([msg], ack=False)
            return
        lane = self._device_lane.get(reading.device)
        if lane is None:  # sticky: a device's records stay in one lane, in order
            lane = self._device_lane[reading.device] = self._lane_for(reading.device)
        if reading.notes:  # a value dropped or clipped: the raw payload stays recoverable
            self._notes.count(reading.notes)
            data = msg.payload
        else:
            data = encode(reading)
        if not lane.put((msg, reading.device, data), len(data) + len(reading.device)):
            self.buffer.settle([msg], ack=False)

    def _lane_for(self, device: str) -> Lane:
        """The lane of the shard the device's records go to (one writer per shard)."""
        return self.lanes[shard_index(self._shard_ranges, device) % len(self.lanes)]

    # ------------------------------------------------------------- workers
    def _spawn(self, name: str, target, *args) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _fail(self, exc: BridgeFailure) -> None:
        if self.failure is None:
            self.failure = exc
            log.error("bridge: giving up: %s", exc)
        self.abort.set()
        self.stop_requested.set()

    def _send_loop(self, i: int) -> None:
        lane, sender = self.lanes[i], self.senders[i]
        broken = False
        while (batch := lane.take()) is not None:
            if broken:
                self.buffer.settle([m for m, _, _ in batch], ack=False)
                continue
            try:
                sender.put([(key, data) for _, key, data in batch])
            except BridgeFailure as exc:
                self._fail(exc)
                broken = True
            except Aborted:
                broken = True
            if broken:
                self.buffer.settle([m for m, _, _ in batch], ack=False)
                continue
            BRIDGE_FORWARDED.inc(len(batch))
            self._forwarded[i] += len(batch)
            self.buffer.settle([m for m, _, _ in batch], ack=True)

    def _dead_letter_loop(self) -> None:
        broken = False
        while (batch := self.dead_lane.take()) is not None:
            if not broken:
                entries = [
                    dead_letter_entry(m.topic, m.payload, reason, text, m.received_at)
                    for m, reason, text in batch
                ]
                try:
                    self.dead_writer.write(entries, batch[0][0].received_at)
                except BridgeFailure as exc:
                    self._fail(exc)
                    broken = True
                except Aborted:
                    broken = True
            self.buffer.settle([m for m, _, _ in batch], ack=not broken)

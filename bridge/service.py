"""The bridge: MQTT in, Kinesis out, dead letters to S3, nothing lost.

Wiring (each piece lives in its own module)::

    paho thread ──decode_message──> Lane[device's lane] ──> sender thread ──pack──PutRecords──> ack
        │  (Buffer: a slot per unsettled message; full -> wait)
        └──each refused reading──> dead-letter Lane ──> writer thread ──S3 put_object──> ack

A message is one reading or a batch of them (``telemetry.reading.decode_message``),
each judged on its own: good ones forwarded, bad ones dead-lettered one by one with
their reason.  The readings of a lane's batch are packed into one record per shard
(``bridge.forward``, ``docs/records.md``), or written one record per reading with
``record_format="single"`` (the format of bridges before packing).

A reading goes on whatever its validation dropped or clipped (each value is
counted by field and reason): as its original payload when validation changed
anything (``Reading.notes``), so the telemetry stream keeps the raw values and the
processor, decoding the same bytes, finds the same; re-encoded compactly
otherwise.  Only a payload with nothing usable left is dead-lettered.

A message is acknowledged to the broker only after Kinesis accepted the records
holding its readings (on the shard that owns its device) and S3 holds the dead
letters of its refused ones.  A crash therefore loses nothing (the
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
>>> bridge.source.topic
'$share/iotcast/iot/+/telemetry'
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
from bridge.buffer import Buffer, Held
from bridge.deadletter import DeadLetterWriter, dead_letter_entry, ensure_bucket
from bridge.forward import MAX_PUT_BYTES, MAX_PUT_RECORDS, Forwarder, Part
from bridge.kinesis import KinesisSender, ShardMap, client_config, ensure_stream, error_code
from bridge.mqtt import TELEMETRY_TOPIC, Message, MqttSource, subscription
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
from telemetry.envelope import MESSAGE_OVERHEAD
from telemetry.reading import InvalidReading, decode_message, encode

__all__ = ["RECORD_FORMATS", "Bridge", "BridgeOptions", "BridgeTarget"]

log = logging.getLogger(__name__)
RECORD_FORMATS = ("packed", "single")
PACKED_LANE_BYTES = 4 * 1024 * 1024  # a lane's batch: one PutRecords call's worth, with room


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
    """How the bridge batches, buffers, retries and stops (defaults suit the local stack and AWS).

    ``linger`` is the time bound of a record (the oldest reading waits at most that long),
    ``record_bytes`` its size bound; ``record_format`` ``"single"`` writes one record per
    reading (for readers not upgraded yet); ``share_group`` names the MQTT 5 shared
    subscription the bridges split the devices' messages by (empty: a plain one).
    """

    client_id: str
    linger: float = 0.25
    record_format: str = "packed"
    record_bytes: int = 25_000
    compress: bool = False
    share_group: str = "iotcast"
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
        packed = options.record_format == "packed"
        self.lanes = [
            Lane(1_000_000, PACKED_LANE_BYTES, options.linger)
            if packed
            else Lane(options.max_records, options.max_bytes, options.linger)
            for _ in range(options.lanes)
        ]
        self.senders = [
            KinesisSender(self.kinesis, target.stream, options.retry, self.abort)
            for _ in self.lanes
        ]
        self.shards = ShardMap(self.kinesis, target.stream)
        self.forwarders = [
            Forwarder(s, self.shards, self.abort, packed, options.record_bytes, options.compress)
            for s in self.senders
        ]
        self.dead_lane = Lane(1000, 4 * 1024 * 1024, options.dead_letter_linger)
        self.dead_writer = DeadLetterWriter(self.s3, target.bucket, options.retry, self.abort)
        self._device_lane: dict[str, Lane] = {}
        self._threads: list[threading.Thread] = []
        self.received = 0
        self._notes = FieldNotes(BRIDGE_VALUES_DROPPED, BRIDGE_VALUES_CLIPPED)
        self._forwarded = [0] * len(self.lanes)
        self.source = MqttSource(
            target.mqtt,
            options.client_id,
            self._on_message,
            receive_maximum=options.buffer,
            topic=subscription(options.topic, options.share_group),
            session_expiry=options.session_expiry,
            on_fatal=self._fail,
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
        self.shards.refresh()
        ensure_bucket(self.s3, self.target.bucket, create=self.options.create_stream)
        log.info(
            "bridge: stream %s (%d open shards), dead letters in s3://%s/dead-letter/, "
            "%d lanes, %s records (up to %d bytes), linger %.0f ms, buffer %d, as %s on %s",
            self.target.stream,
            shards,
            self.target.bucket,
            len(self.lanes),
            self.options.record_format,
            self.options.record_bytes,
            self.options.linger * 1000,
            self.options.buffer,
            self.options.client_id,
            self.source.topic,
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

    @property
    def records(self) -> int:
        """Records Kinesis accepted so far (packed: many readings each)."""
        return sum(f.records for f in self.forwarders)

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
        decoded = decode_message(msg.payload, msg.topic)
        held = Held(msg, len(decoded.parts))
        for i, part in enumerate(decoded.parts):
            if isinstance(part, InvalidReading):
                payload = decoded.payload(i)
                index = i if decoded.batch else None
                item = (held, payload, part.reason, str(part), index)
                if not self.dead_lane.put(item, len(payload) + 300):
                    self.buffer.settle_parts([held], ok=False)
                continue
            lane = self._device_lane.get(part.device)
            if lane is None:  # sticky: a device's records stay in one lane, in order
                lane = self._device_lane[part.device] = self._lane_for(part.device)
            if part.notes:  # a value dropped or clipped: the raw payload stays recoverable
                self._notes.count(part.notes)
                data = decoded.payload(i)
            else:
                data = encode(part)
            if not lane.put(Part(held, part.device, data), len(data) + MESSAGE_OVERHEAD):
                self.buffer.settle_parts([held], ok=False)

    def _lane_for(self, device: str) -> Lane:
        """The lane of the shard the device's records go to (one writer per shard)."""
        shard = self.shards.shard_for(device)
        return self.lanes[self.shards.shards.index(shard) % len(self.lanes)]

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
        lane, forwarder = self.lanes[i], self.forwarders[i]
        broken = False
        while (batch := lane.take()) is not None:
            if not broken:
                try:
                    forwarder.deliver(batch)
                except BridgeFailure as exc:
                    self._fail(exc)
                    broken = True
                except Aborted:
                    broken = True
            if not broken:
                BRIDGE_FORWARDED.inc(len(batch))
                self._forwarded[i] += len(batch)
            self.buffer.settle_parts([p.held for p in batch], ok=not broken)

    def _dead_letter_loop(self) -> None:
        broken = False
        while (batch := self.dead_lane.take()) is not None:
            if not broken:
                first = batch[0][0].message
                entries = [
                    dead_letter_entry(
                        h.message.topic, payload, reason, text, h.message.received_at, part=index
                    )
                    for h, payload, reason, text, index in batch
                ]
                try:
                    self.dead_writer.write(entries, first.received_at)
                except BridgeFailure as exc:
                    self._fail(exc)
                    broken = True
                except Aborted:
                    broken = True
            self.buffer.settle_parts([h for h, *_ in batch], ok=not broken)

"""The bridge against real mosquitto and a real moto server: nothing lost, ever.

Each test replays readings (plus malformed payloads) over MQTT QoS 1, runs
the bridge (in-process, or as ``iotcast bridge`` subprocesses where it is
killed), then reads the whole Kinesis stream and the dead letters back and
checks that every valid reading is in the stream exactly as sent and every
malformed one is in the dead letter with its reason.
"""

from __future__ import annotations

import base64
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest

from bridge.retry import RetryPolicy
from bridge.service import Bridge, BridgeOptions
from iotcast.cli import local_env
from telemetry.envelope import unpack
from telemetry.reading import Reading, decode_payload, encode, topic_for
from tests import support
from tests.faultproxy import FaultProxy

DEVICES = ("b8:27:eb:bf:9d:51", "00:0f:00:70:91:0a", "1c:bf:ce:15:ec:4d") + tuple(
    f"sensor-{i:02d}" for i in range(9)
)
SHARDS = 4  # moto's PutRecords slows as a shard fills: spread the records
START_TS = 1_594_512_094.0


# ------------------------------------------------------------------ traffic
def make_readings(n: int, devices=DEVICES, seed: int = 1) -> list[Reading]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        device = devices[i % len(devices)]
        out.append(
            Reading(
                ts=START_TS + i * 0.37 + rng.random() * 0.01,
                device=device,
                co=round(rng.uniform(0, 0.01), 6),
                humidity=round(rng.uniform(40, 80), 1),
                light=rng.random() < 0.3,
                lpg=round(rng.uniform(0, 0.01), 6),
                motion=rng.random() < 0.01,
                smoke=round(rng.uniform(0, 0.03), 6),
                temp=round(rng.uniform(18, 28), 1),
            )
        )
    return out


def malformed(n: int, seed: int = 2) -> list[tuple[str, bytes, str]]:
    """``n`` bad messages of every kind: (topic, payload, expected reason)."""
    rng = random.Random(seed)
    good = make_readings(1)[0].to_payload()
    kinds = [
        ("invalid_json", lambda i: b"{not json " + str(i).encode()),
        ("not_an_object", lambda i: orjson.dumps(i)),
        (
            "missing_field",
            lambda i: orjson.dumps({k: v for k, v in good.items() if k != "ts"} | {"n": i}),
        ),
        ("wrong_type", lambda i: orjson.dumps({**good, "ts": f"{i}"})),
        (  # every sensor value dropped (a bad one alone is dropped and the reading goes on)
            "no_sensor",
            lambda i: orjson.dumps({**good, "data": {"temp": 900.0 + i, "humidity": "wet"}}),
        ),
        ("bad_timestamp", lambda i: orjson.dumps({**good, "ts": 12.0 + i})),
        ("bad_device_id", lambda i: orjson.dumps({**good, "device_id": f"bad id {i}!"})),
        ("too_large", lambda i: orjson.dumps({**good, "pad": "x" * 5000, "n": i})),
        ("topic_mismatch", lambda i: orjson.dumps({**good, "device_id": f"other-{i}"})),
    ]
    out = []
    for i in range(n):
        reason, make = kinds[i % len(kinds)]
        payload = make(i)
        topic = topic_for(good["device_id"])
        out.append((topic, payload, reason))
    rng.shuffle(out)
    return out


def traffic(n_valid: int, n_bad: int, seed: int = 3):
    """Valid readings with bad messages spread among them, as (topic, payload) in publish order."""
    readings = make_readings(n_valid)
    bad = malformed(n_bad)
    messages = [(topic_for(r.device), encode(r)) for r in readings]
    rng = random.Random(seed)
    for topic, payload, _ in bad:
        messages.insert(rng.randrange(len(messages) + 1), (topic, payload))
    return readings, bad, messages


def publish(
    port: int,
    messages,
    *,
    rate: float | None = None,
    stop: threading.Event | None = None,
    client_id: str = "",
) -> int:
    """Publish at QoS 1 (all of them, or until ``stop``); returns how many were acknowledged."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.reconnect_delay_set(0.2, 1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = []
    started = time.monotonic()
    for i, (topic, payload) in enumerate(messages):
        if stop is not None and stop.is_set():
            break
        if rate and i % 100 == 0:
            ahead = i / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        infos.append(client.publish(topic, payload, qos=1))
    for info in infos:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()
    return sum(info.is_published() for info in infos)


# ------------------------------------------------------------- read it back
class StreamReader:
    """Reads every shard of a stream from the start, incrementally."""

    def __init__(self, kinesis, stream: str) -> None:
        self.kinesis = kinesis
        self.stream = stream
        self.iterators: dict[str, str | None] = {}  # None: a closed shard read to its end
        self.records: dict[str, list[bytes]] = {}

    def poll(self) -> int:
        shards = self.kinesis.list_shards(StreamName=self.stream)["Shards"]
        for shard in shards:
            sid = shard["ShardId"]
            if sid not in self.iterators:
                self.iterators[sid] = self.kinesis.get_shard_iterator(
                    StreamName=self.stream, ShardId=sid, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
                self.records[sid] = []
            while (it := self.iterators[sid]) is not None:
                resp = self.kinesis.get_records(ShardIterator=it, Limit=10000)
                # a closed shard read to its end has no next iterator (after a reshard)
                self.iterators[sid] = resp.get("NextShardIterator")
                self.records[sid].extend(r["Data"] for r in resp["Records"])
                if not resp["Records"] or not resp.get("MillisBehindLatest"):
                    break
        return len(self.messages())  # readings, however many records hold them

    def messages(self) -> list[bytes]:
        """The messages of every record, each shard in stream order, as the processor reads
        them: a packed record addressed to another shard (a reshard moved it; the bridge
        sent its readings again) is skipped."""
        out = []
        for sid, recs in self.records.items():
            for data in recs:
                u = unpack(data)
                if u.shard is None or u.shard == sid:
                    out.extend(u.messages)
        return out

    def readings(self) -> list[Reading]:
        """All readings decoded, each shard in stream order."""
        return [decode_payload(m) for m in self.messages()]


def dead_letters(s3, bucket: str) -> list[dict]:
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="dead-letter/"):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            out.extend(orjson.loads(line) for line in body.splitlines() if line)
    return out


def check_complete(reader: StreamReader, readings: list[Reading], timeout: float = 60.0) -> dict:
    """Wait until every reading is in the stream; return duplicate/extra figures. Values must match."""
    want = {(r.device, r.ts): r for r in readings}

    def all_there():
        reader.poll()
        got = {(r.device, r.ts) for r in reader.readings()}
        return want.keys() <= got

    try:
        support.wait_for(all_there, timeout, "every valid reading in the stream")
    finally:
        got = reader.readings()
    seen = Counter((r.device, r.ts) for r in got)
    missing = [k for k in want if k not in seen]
    assert not missing, f"{len(missing)} readings missing from the stream, e.g. {missing[:3]}"
    for r in got:
        assert want[(r.device, r.ts)] == r, f"stream holds {r}, sent {want[(r.device, r.ts)]}"
    return {"records": len(got), "unique": len(seen), "duplicates": len(got) - len(seen)}


def check_dead_letters(s3, bucket: str, bad, timeout: float = 30.0) -> None:
    want = Counter((base64.b64encode(p).decode(), reason) for _, p, reason in bad)
    entries = support.wait_for(
        lambda: (e := dead_letters(s3, bucket)) and len(e) >= len(bad) and e,
        timeout,
        f"{len(bad)} dead letters",
    )
    got = Counter((e["payload_b64"], e["reason"]) for e in entries)
    assert got.keys() == want.keys(), "dead letters differ from the malformed messages sent"
    for e in entries:
        assert e["source"] == "bridge" and e["topic"].startswith("iot/") and e["message"]
        assert e["received_at"].endswith("+00:00")


def in_order_per_device(readings: list[Reading]) -> int:
    """Number of records whose ts is older than one seen before for the same device (first copies)."""
    last: dict[str, float] = {}
    seen = set()
    disorder = 0
    for r in readings:
        if (r.device, r.ts) in seen:
            continue  # a duplicate of one already in the stream
        seen.add((r.device, r.ts))
        if r.ts < last.get(r.device, 0.0):
            disorder += 1
        last[r.device] = max(r.ts, last.get(r.device, 0.0))
    return disorder


# ------------------------------------------------------------------ bridges
def spawn_bridge(settings, tmp_path: Path, *extra: str, wait: bool = True) -> subprocess.Popen:
    """``iotcast bridge`` as a child; with ``wait``, returns once it has subscribed."""
    path = tmp_path / "bridge.log"
    before = support.subscriptions(path)
    log = open(path, "ab")  # noqa: SIM115 - the child owns it
    argv = support.iotcast_argv(settings, "bridge", *extra)
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=local_env(settings))
    log.close()
    if wait:
        support.wait_for(
            lambda: proc.poll() is not None or support.subscriptions(path) > before,
            60,
            "the bridge to subscribe",
            0.1,
        )
    return proc


def create_resources(boto, settings, shards: int = SHARDS) -> None:
    boto("kinesis").create_stream(StreamName=settings.stream, ShardCount=shards)
    boto("s3").create_bucket(Bucket=settings.bucket)
    support.wait_for(
        lambda: (
            boto("kinesis").describe_stream_summary(StreamName=settings.stream)[
                "StreamDescriptionSummary"
            ]["StreamStatus"]
            == "ACTIVE"
        ),
        10,
        "stream ACTIVE",
        0.1,
    )


# -------------------------------------------------------------------- tests
@pytest.mark.slow
def test_bridge_forwards_every_reading_and_dead_letters_every_bad_one(
    settings_mqtt, boto, mosquitto
):
    settings = settings_mqtt
    readings, bad, messages = traffic(19_700, 300)
    bridge = Bridge(
        settings.bridge_target(),
        BridgeOptions(client_id=f"bridge-{settings.app}", create_stream=True, shards=2 * SHARDS),
    )
    bridge.start()
    try:
        assert publish(mosquitto.port, messages) == len(messages)
        reader = StreamReader(boto("kinesis"), settings.stream)
        figures = check_complete(reader, readings)
        check_dead_letters(boto("s3"), settings.bucket, bad)
        support.wait_for(lambda: len(bridge.buffer) == 0, 10, "buffer to empty")
    finally:
        assert bridge.stop(10)
    assert figures["duplicates"] == 0, figures  # no crash, no reconnect: exactly once
    assert in_order_per_device(reader.readings()) == 0
    assert bridge.buffer.acked == len(messages)
    print(f"\nforwarding: {figures}, dead letters {len(bad)}")


@pytest.mark.slow
def test_bridge_killed_twice_loses_nothing(settings_mqtt, boto, mosquitto, tmp_path):
    settings = settings_mqtt
    create_resources(boto, settings)
    readings, bad, messages = traffic(8_000, 100)
    bridge = spawn_bridge(settings, tmp_path)
    gates = [threading.Event(), threading.Event()]

    def replay() -> None:  # a third, then the next third once the bridge was killed, ...
        third = len(messages) // 3
        publish(mosquitto.port, messages[:third], rate=1500)
        gates[0].wait(120)
        publish(mosquitto.port, messages[third : 2 * third], rate=1500)
        gates[1].wait(120)
        publish(mosquitto.port, messages[2 * third :], rate=1500)

    publisher = threading.Thread(target=replay)
    reader = StreamReader(boto("kinesis"), settings.stream)
    during_replay = []
    try:
        publisher.start()
        threshold = 1500
        for gate in gates:
            support.wait_for(
                lambda t=threshold: reader.poll() > t, 60, "the bridge to forward", 0.2
            )
            during_replay.append(publisher.is_alive())
            bridge.send_signal(signal.SIGKILL)
            bridge.wait(10)
            bridge = spawn_bridge(settings, tmp_path, wait=False)
            gate.set()
            threshold = reader.poll() + 300  # kill the next one once it has forwarded some
        publisher.join(60)
        figures = check_complete(reader, readings)
        check_dead_letters(boto("s3"), settings.bucket, bad)
    finally:
        bridge.send_signal(signal.SIGTERM)
        code = bridge.wait(30)
    assert code == 0, (tmp_path / "bridge.log").read_text()[-3000:]
    assert during_replay == [True, True]
    print(
        f"\ncrash x2 (SIGKILL while the replay ran: {during_replay}): {figures} "
        "(duplicates after SIGKILL are expected and removed downstream)"
    )


@pytest.mark.slow
def test_bridge_survives_broker_restart(settings_mqtt, boto, mosquitto, tmp_path):
    settings = settings_mqtt
    create_resources(boto, settings)
    readings, bad, messages = traffic(6_000, 100)
    half = len(messages) // 2
    bridge = Bridge(settings.bridge_target(), BridgeOptions(client_id=f"bridge-{settings.app}"))
    bridge.start()
    reader = StreamReader(boto("kinesis"), settings.stream)
    try:
        # First half while the bridge is up, then the broker goes down mid-flow.
        publisher = threading.Thread(target=publish, args=(mosquitto.port, messages[:half]))
        publisher.start()
        support.wait_for(lambda: bridge.received > 1000, 30, "the bridge to receive", 0.05)
        publisher.join(60)
        mosquitto.stop()
        assert not bridge.source.connected or support.wait_for(
            lambda: not bridge.source.connected, 10, "the bridge to notice", 0.1
        )
        assert bridge.health()["ok"] is False and bridge.health()["mqtt"] is False
        mosquitto.start()
        support.wait_for(lambda: bridge.source.connected, 30, "the bridge to reconnect", 0.2)
        assert publish(mosquitto.port, messages[half:]) == len(messages) - half
        figures = check_complete(reader, readings)
        check_dead_letters(boto("s3"), settings.bucket, bad)
    finally:
        assert bridge.stop(10)
    assert bridge.source.generation >= 2
    print(f"\nbroker restart: {figures}")


def forward_through(
    proxy: FaultProxy, settings, boto, broker, n: int, record_format: str = "packed"
) -> tuple:
    """A bridge whose AWS calls pass ``proxy`` (its faults) forwards ``n`` readings published
    to ``broker``; returns the bridge, the stream's reader and :func:`check_complete`'s figures."""
    create_resources(boto, settings)
    readings, _, messages = traffic(n, 0)
    bridge = Bridge(
        proxy.route(settings).bridge_target(),
        BridgeOptions(
            client_id=f"bridge-{settings.app}",
            retry=RetryPolicy(base=0.01, cap=0.2, give_up_after=60),
            record_format=record_format,
            linger=0.025 if record_format == "single" else 0.25,
        ),
    )
    bridge.start()
    try:
        assert publish(broker.port, messages) == len(messages)
        reader = StreamReader(boto("kinesis"), settings.stream)
        figures = check_complete(reader, readings)
    finally:
        assert bridge.stop(10)
        proxy.close()
    return bridge, reader, figures


@pytest.mark.slow
@pytest.mark.parametrize(("record_format", "refusals"), [("packed", 5), ("single", 100)])
def test_bridge_delivers_all_in_order_through_throttling(
    settings_mqtt, boto, mosquitto, record_format, refusals
):
    proxy = FaultProxy.before(settings_mqtt, throttle_share=0.3, call_error_share=0.1)
    _, reader, figures = forward_through(
        proxy, settings_mqtt, boto, mosquitto, 8_000, record_format
    )
    assert proxy.refused.get("ProvisionedThroughputExceededException", 0) > refusals
    assert proxy.call_errors > 0
    assert figures["duplicates"] == 0
    assert in_order_per_device(reader.readings()) == 0
    print(f"\nthrottling: refused {proxy.refused}, call errors {proxy.call_errors}, {figures}")


@pytest.mark.slow
def test_bridge_random_record_failures_deliver_all_and_count_reordering(
    settings_mqtt, boto, mosquitto
):
    proxy = FaultProxy.before(settings_mqtt, internal_share=0.05)
    bridge, reader, figures = forward_through(
        proxy, settings_mqtt, boto, mosquitto, 4_000, "single"
    )
    assert proxy.refused.get("InternalFailure", 0) > 50
    disorder = in_order_per_device(reader.readings())
    assert disorder == sum(s.reordered for s in bridge.senders)  # the bridge knows and reports it
    print(f"\nInternalFailure mid-run: refused {proxy.refused}, {figures}, reordered {disorder}")


@pytest.mark.slow
def test_packed_records_are_never_reordered_by_record_failures(settings_mqtt, boto, mosquitto):
    # at most one packed record per shard in a call: a refused one goes again before the
    # next record of its shard, so no device's reading lands behind a newer one
    proxy = FaultProxy.before(settings_mqtt, internal_share=0.2)
    bridge, reader, figures = forward_through(proxy, settings_mqtt, boto, mosquitto, 4_000)
    assert proxy.refused.get("InternalFailure", 0) > 3, proxy.refused
    assert in_order_per_device(reader.readings()) == 0
    assert sum(s.reordered for s in bridge.senders) == 0
    assert bridge.records < 4_000 / 10, bridge.records  # packed: many readings a record
    print(
        f"\npacked, InternalFailure: refused {proxy.refused}, {figures}, {bridge.records} records"
    )


def scrape(port: int, path: str) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.slow
def test_bridge_sigterm_flushes_acks_and_exits_zero(settings_mqtt, boto, mosquitto, tmp_path):
    from iotcast.stack import free_port

    settings = settings_mqtt
    create_resources(boto, settings)
    readings, bad, messages = traffic(4_000, 60)
    port = free_port()
    bridge = spawn_bridge(settings, tmp_path, "--metrics-port", str(port), "--stop-timeout", "10")
    publisher = threading.Thread(
        target=publish, args=(mosquitto.port, messages), kwargs={"rate": 2000}
    )
    reader = StreamReader(boto("kinesis"), settings.stream)
    try:
        publisher.start()
        support.wait_for(lambda: reader.poll() > 1000, 30, "the bridge to forward", 0.2)
        status, body = scrape(port, "/healthz")
        assert status == 200 and orjson.loads(body)["mqtt"] is True, body
        assert b"iotcast_bridge_readings_forwarded_total" in scrape(port, "/metrics")[1]
        started = time.monotonic()
        bridge.send_signal(signal.SIGTERM)
        code = bridge.wait(30)
        took = time.monotonic() - started
        log = (tmp_path / "bridge.log").read_text()
        assert code == 0, log[-3000:]
        assert took < 15, f"SIGTERM took {took:.1f}s"
        assert "stopped in" in log
        # The rest waits in the broker for the same session; the next run forwards it.
        bridge = spawn_bridge(settings, tmp_path)
        publisher.join(60)
        figures = check_complete(reader, readings)
        check_dead_letters(boto("s3"), settings.bucket, bad)
    finally:
        bridge.send_signal(signal.SIGTERM)
        assert bridge.wait(30) == 0
    # A graceful stop acknowledges exactly what it forwarded: no duplicates.
    assert figures["duplicates"] == 0, figures
    print(f"\nSIGTERM: exit 0 in {took:.2f}s, {figures}")


@pytest.mark.slow
def test_bridge_backpressure_while_kinesis_is_down(settings_mqtt, boto, mosquitto):
    proxy = FaultProxy.before(settings_mqtt)
    settings = settings_mqtt
    create_resources(boto, settings)
    readings, _, messages = traffic(3_000, 0)
    bridge = Bridge(
        proxy.route(settings).bridge_target(),
        BridgeOptions(
            client_id=f"bridge-{settings.app}",
            buffer=400,
            retry=RetryPolicy(base=0.05, cap=0.3, give_up_after=120),
        ),
    )
    bridge.start()
    try:
        proxy.down = True
        assert publish(mosquitto.port, messages) == len(messages)  # the broker queues them
        time.sleep(2)
        held = len(bridge.buffer)
        assert 0 < held <= 400 and bridge.received <= 400, (held, bridge.received)
        assert bridge.buffer.acked == 0 and bridge.forwarded == 0
        assert bridge.health()["ok"] is False and bridge.health()["kinesis"] is False
        proxy.down = False
        reader = StreamReader(boto("kinesis"), settings.stream)
        figures = check_complete(reader, readings)
    finally:
        assert bridge.stop(10)
        proxy.close()
    assert figures["duplicates"] == 0 and in_order_per_device(reader.readings()) == 0
    print(f"\nbackpressure: held at most {held} of 3000 while down, then {figures}")


@pytest.mark.slow
def test_bridge_past_retry_bound_exits_3_without_acking(settings_mqtt, boto, mosquitto, tmp_path):
    proxy = FaultProxy.before(settings_mqtt)
    settings = settings_mqtt
    create_resources(boto, settings)
    readings, _, messages = traffic(1_000, 0)
    bridge = spawn_bridge(proxy.route(settings), tmp_path, "--retry-seconds", "2")
    try:
        proxy.down = True  # Kinesis answers 503 to every call from now on
        assert publish(mosquitto.port, messages) == len(messages)
        assert bridge.wait(60) == 3
        log = (tmp_path / "bridge.log").read_text()
        assert "kept failing" in log and "stay queued in the MQTT broker" in log, log[-2000:]
        assert "ServiceUnavailable" in log
    finally:
        bridge.kill()
        proxy.close()
    # Nothing was acknowledged without delivery: the next healthy run forwards everything.
    bridge = Bridge(
        settings.bridge_target(), BridgeOptions(client_id=f"iotcast-bridge-{settings.app}")
    )
    bridge.start()
    try:
        figures = check_complete(StreamReader(boto("kinesis"), settings.stream), readings)
    finally:
        assert bridge.stop(10)
    assert figures["unique"] == len(readings)

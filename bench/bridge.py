"""Is the bridge ever the bottleneck?  One run, fresh servers, fresh streams.

Starts its own moto server and mosquitto (iotcast.stack), then measures,
with the same N readings:

(a) raw MQTT QoS 1 receive throughput: the readings are queued in the broker
    for a persistent session, then a bare paho subscriber drains them;
(b) raw PutRecords throughput: bare boto3, batches of 500, one after
    another, into a fresh stream;
(c) the bridge: the readings are queued in the broker for the bridge's
    session, then the bridge (in this process) drains them into another
    fresh stream with the same shard count; readings/s from its start until
    Kinesis accepted the last one, and the CPU seconds the process spent
    per 1,000 readings in that window (the bench itself only sleeps).

moto's PutRecords slows as a shard fills (DESIGN.md), so (b) and (c) use
fresh streams of equal size.  Prints the figures and c / min(a, b).

    .venv/bin/python bench/bridge.py --readings 30000 --devices 12 --shards 4
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.kinesis import open_shard_ranges, shard_index  # noqa: E402
from bridge.service import Bridge, BridgeOptions  # noqa: E402
from iotcast.settings import Settings  # noqa: E402
from iotcast.stack import start_mosquitto, start_moto  # noqa: E402
from telemetry.reading import Reading, encode, topic_for  # noqa: E402


def readings(n: int, devices: int, seed: int = 1) -> list[Reading]:
    rng = random.Random(seed)
    names = [f"b8:27:eb:00:00:{i:02x}" for i in range(devices)]
    return [
        Reading(
            1_594_512_094.0 + i * 0.3,
            names[i % devices],
            rng.uniform(0, 0.01),
            rng.uniform(40, 80),
            rng.random() < 0.3,
            rng.uniform(0, 0.01),
            False,
            rng.uniform(0, 0.03),
            round(rng.uniform(18, 28), 1),
        )
        for i in range(n)
    ]


def queue_for_session(port: int, client_id: str, messages: list[tuple[str, bytes]]) -> None:
    """Create the persistent session (subscribe, leave), then publish everything to it at QoS 1."""
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    sub.connect("127.0.0.1", port, clean_start=False, properties=props)
    sub.loop_start()
    sub.subscribe("iot/+/telemetry", qos=1)[1]
    time.sleep(0.5)
    sub.disconnect()
    sub.loop_stop()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.max_inflight_messages_set(1000)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    infos = [pub.publish(t, p, qos=1) for t, p in messages]
    for info in infos:
        info.wait_for_publish(120)
    pub.disconnect()
    pub.loop_stop()


def raw_mqtt(port: int, messages: list[tuple[str, bytes]]) -> tuple[float, float]:
    """(a) readings/s a bare paho QoS 1 subscriber drains from the broker, and CPU ms per 1,000."""
    queue_for_session(port, "bench-raw", messages)
    n = len(messages)
    done = threading.Event()
    count = [0]

    def on_message(client, userdata, msg) -> None:
        count[0] += 1
        if count[0] == n:
            done.set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-raw", protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    cpu0, started = time.process_time(), time.perf_counter()
    sub.connect("127.0.0.1", port, clean_start=False, properties=props)
    sub.loop_start()
    if not done.wait(300):
        raise SystemExit(f"raw subscriber got {count[0]} of {n}")
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu0
    sub.disconnect()
    sub.loop_stop()
    return n / elapsed, cpu / n * 1e6


def make_stream(kinesis, name: str, shards: int) -> None:
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    while (
        kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
        != "ACTIVE"
    ):
        time.sleep(0.1)


def raw_put_records(
    kinesis, stream: str, data: list[Reading], threads: int = 1
) -> tuple[float, float]:
    """(b) readings/s with bare boto3 PutRecords batches of 500, and CPU ms per 1,000.

    ``threads`` > 1: one thread per group of shards (records routed by shard, as the bridge does).
    """
    ranges = open_shard_ranges(kinesis, stream)
    groups: list[list[dict]] = [[] for _ in range(threads)]
    for r in data:
        group = groups[shard_index(ranges, r.device) % threads]
        group.append({"PartitionKey": r.device, "Data": encode(r)})

    def send(records: list[dict]) -> None:
        for i in range(0, len(records), 500):
            resp = kinesis.put_records(StreamName=stream, Records=records[i : i + 500])
            assert resp["FailedRecordCount"] == 0

    cpu0, started = time.process_time(), time.perf_counter()
    workers = [threading.Thread(target=send, args=(g,)) for g in groups]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu0
    return len(data) / elapsed, cpu / len(data) * 1e6


def raw_put_records_aioboto3(settings: Settings, stream: str, data: list[Reading], tasks: int):
    """(b'') the same as (b') with aioboto3 (one task per shard group): the alternative client."""
    import asyncio

    import aioboto3

    async def go() -> tuple[float, float]:
        async with aioboto3.Session().client(
            "kinesis", **settings.boto_kwargs("kinesis")
        ) as kinesis:
            ranges = (await kinesis.list_shards(StreamName=stream))["Shards"]
            bounds = sorted(
                (int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]))
                for s in ranges
            )
            groups: list[list[dict]] = [[] for _ in range(tasks)]
            for r in data:
                group = groups[shard_index(bounds, r.device) % tasks]
                group.append({"PartitionKey": r.device, "Data": encode(r)})

            async def send(records: list[dict]) -> None:
                for i in range(0, len(records), 500):
                    resp = await kinesis.put_records(
                        StreamName=stream, Records=records[i : i + 500]
                    )
                    assert resp["FailedRecordCount"] == 0

            cpu0, started = time.process_time(), time.perf_counter()
            await asyncio.gather(*(send(g) for g in groups))
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu0
            return len(data) / elapsed, cpu / len(data) * 1e6

    return asyncio.run(go())


def bridge_run(settings: Settings, messages, lanes: int, linger: float) -> tuple[float, float]:
    """(c) readings/s of the bridge draining the broker into the stream, and CPU ms per 1,000."""
    client_id = "bench-bridge"
    queue_for_session(settings.mqtt.port, client_id, messages)
    n = len(messages)
    bridge = Bridge(
        settings.bridge_target(), BridgeOptions(client_id=client_id, lanes=lanes, linger=linger)
    )
    cpu0, t0 = time.process_time(), time.perf_counter()
    bridge.start()
    while bridge.forwarded < n:
        time.sleep(0.02)
        if time.perf_counter() - t0 > 600:
            raise SystemExit(f"bridge forwarded {bridge.forwarded} of {n} in 600 s")
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    bridge.stop(10)
    return n / elapsed, cpu / n * 1e6


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--readings", type=int, default=30_000)
    p.add_argument("--devices", type=int, default=12)
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--lanes", type=int, default=4)
    p.add_argument("--linger-ms", type=float, default=25.0)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    data = readings(args.readings, args.devices)
    messages = [(topic_for(r.device), encode(r)) for r in data]
    with tempfile.TemporaryDirectory() as tmp:
        moto = start_moto(Path(tmp))
        broker = start_mosquitto(Path(tmp) / "broker", persistence=False)
        try:
            mqtt_url = f"mqtt://127.0.0.1:{broker.port}"
            settings = Settings.of(
                endpoint_url=moto.url, mqtt_url=mqtt_url, stream="bench-bridge", bucket="bench"
            )
            kinesis = settings.client("kinesis")
            settings.client("s3").create_bucket(Bucket="bench")
            for name in ("bench-raw", "bench-raw-parallel", "bench-raw-aio", "bench-bridge"):
                make_stream(kinesis, name, args.shards)
            a, a_cpu = raw_mqtt(broker.port, messages)
            b, b_cpu = raw_put_records(kinesis, "bench-raw", data)
            bp, bp_cpu = raw_put_records(kinesis, "bench-raw-parallel", data, threads=args.lanes)
            ba, ba_cpu = raw_put_records_aioboto3(settings, "bench-raw-aio", data, args.lanes)
            c, c_cpu = bridge_run(settings, messages, args.lanes, args.linger_ms / 1000)
        finally:
            broker.stop()
            moto.stop()
    print(
        f"readings {args.readings}, devices {args.devices}, shards {args.shards}, "
        f"bridge lanes {args.lanes}, linger {args.linger_ms:g} ms"
    )
    rows = [
        ("(a)  raw MQTT QoS 1 receive, bare paho", a, a_cpu),
        ("(b)  raw PutRecords, bare boto3, 500/call", b, b_cpu),
        (f"(b') same, {args.lanes} threads by shard", bp, bp_cpu),
        (f"(b'') same with aioboto3, {args.lanes} tasks", ba, ba_cpu),
        ("(c)  bridge, mosquitto -> Kinesis", c, c_cpu),
    ]
    for name, rate, cpu in rows:
        print(f"{name:44s} {rate:9.0f} readings/s   CPU {cpu:6.1f} ms per 1,000")
    print(f"c / min(a, b)  = {c / min(a, b):.0%}   (target >= 80 %)")
    print(
        f"c / min(a, b') = {c / min(a, bp):.0%}   (against raw calls as parallel as the bridge's)"
    )


if __name__ == "__main__":
    main()

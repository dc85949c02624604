"""Is the bridge ever the bottleneck, and what does a reading cost it?  One run, fresh
servers, fresh streams.

Starts its own Kinesis (kinesalite by default, or the moto server: --kinesis), a moto
server for S3 and mosquitto (iotcast.stack), then measures, with the same N readings:

(a) raw MQTT QoS 1 receive throughput: the readings are queued in the broker
    for a persistent session, then a bare paho subscriber drains them;
(b) raw PutRecords throughput: bare boto3, batches of 500, one after
    another, into a fresh stream;
(c) the bridge: the readings are queued in the broker for the bridge's
    session, then the bridge (in this process) drains them into another
    fresh stream with the same shard count; readings/s from its start until
    Kinesis accepted the last one, and the CPU seconds the process spent
    per 1,000 readings in that window (the bench itself only sleeps), packed
    records (today's default) and then one record per reading (--record-format
    single, the bridge before packing), each into a fresh stream;
(d) a paced fleet (--fleet-devices devices, one reading each per
    --fleet-interval seconds, for --fleet-seconds): the bridge runs while the
    readings are published live, once packed and once single; Kinesis records
    per reading in the telemetry stream, and CPU per reading.

moto's PutRecords slows as a shard fills (DESIGN.md), so (b) and (c) use
fresh streams of equal size.  Prints the figures, c / min(a, b), the records
per reading and the load average beside each CPU figure (a loaded machine
halves them: compare figures of one run).

    .venv/bin/python bench/bridge.py --readings 30000 --devices 12 --shards 4
    .venv/bin/python bench/bridge.py --readings 20000 --fleet-devices 1000 --fleet-seconds 30
"""

from __future__ import annotations

import argparse
import logging
import os
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
from iotcast.stack import start_kinesalite, start_mosquitto, start_moto  # noqa: E402
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


def bridge_run(
    settings: Settings, messages, lanes: int, linger: float, record_format: str
) -> tuple[float, float, float]:
    """(c) readings/s of the bridge draining the broker into the stream, CPU ms per 1,000,
    and Kinesis records per reading."""
    client_id = f"bench-bridge-{record_format}"
    queue_for_session(settings.mqtt.port, client_id, messages)
    n = len(messages)
    options = BridgeOptions(
        client_id=client_id,
        lanes=lanes,
        linger=linger,
        record_format=record_format,
        share_group="",
    )
    bridge = Bridge(settings.bridge_target(), options)
    cpu0, t0 = time.process_time(), time.perf_counter()
    bridge.start()
    while bridge.forwarded < n:
        time.sleep(0.02)
        if time.perf_counter() - t0 > 600:
            raise SystemExit(f"bridge forwarded {bridge.forwarded} of {n} in 600 s")
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    bridge.stop(10)
    return n / elapsed, cpu / n * 1e6, bridge.records / n


def fleet_run(
    settings: Settings, devices: int, interval: float, seconds: float, record_format: str, linger
) -> tuple[int, float, float]:
    """(d) a paced fleet through a running bridge: readings, CPU ms per 1,000, records per reading.

    The publisher runs in another process (mosquitto_pub would be too slow; a paho client
    in a thread would bill its CPU to the bridge), so the CPU is the bridge's alone.
    """
    import subprocess

    client_id = f"bench-fleet-{record_format}"
    options = BridgeOptions(
        client_id=client_id, linger=linger, record_format=record_format, share_group=""
    )
    bridge = Bridge(settings.bridge_target(), options)
    bridge.start()
    n = int(devices * seconds / interval)
    cpu0 = time.process_time()
    subprocess.run(
        [sys.executable, __file__, "--publish-fleet", str(settings.mqtt.port), str(devices),
         str(interval), str(seconds)],
        check=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while bridge.forwarded < n and time.monotonic() < deadline:
        time.sleep(0.05)
    cpu = time.process_time() - cpu0
    forwarded, records = bridge.forwarded, bridge.records
    bridge.stop(10)
    if forwarded < n:
        raise SystemExit(f"fleet: bridge forwarded {forwarded} of {n}")
    return n, cpu / n * 1e6, records / n


def publish_fleet(port: int, devices: int, interval: float, seconds: float) -> None:
    """Publish ``devices`` devices, one reading each per ``interval`` s, for ``seconds``."""
    names = [f"fleet-{i:05d}" for i in range(devices)]
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.max_inflight_messages_set(1000)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    rate = devices / interval
    n = int(devices * seconds / interval)
    start, infos = time.perf_counter(), []
    base = time.time() - 3600
    for i in range(n):
        ahead = i / rate - (time.perf_counter() - start)
        if ahead > 0:
            time.sleep(ahead)
        r = Reading(
            base + i / rate, names[i % devices], 0.005, 50.0, False, 0.007, False, 0.02, 22.5
        )
        infos.append(pub.publish(topic_for(r.device), encode(r), qos=1))
    for info in infos:
        info.wait_for_publish(120)
    pub.disconnect()
    pub.loop_stop()


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--publish-fleet":
        port, devices, interval, seconds = sys.argv[2:6]
        publish_fleet(int(port), int(devices), float(interval), float(seconds))
        return
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--readings", type=int, default=30_000)
    p.add_argument("--devices", type=int, default=12)
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--lanes", type=int, default=4)
    p.add_argument("--linger-ms", type=float, default=250.0, help="packed records (default 250)")
    p.add_argument(
        "--single-linger-ms", type=float, default=25.0, help="one record per reading (default 25)"
    )
    p.add_argument("--kinesis", choices=("kinesalite", "moto"), default="kinesalite")
    p.add_argument("--fleet-devices", type=int, default=1000, help="(d): 0 skips it")
    p.add_argument("--fleet-interval", type=float, default=5.0)
    p.add_argument("--fleet-seconds", type=float, default=30.0)
    p.add_argument(
        "--fleet-shards",
        type=int,
        default=1,
        help="(d)'s stream (default 1: 200 readings/s of 200 B is far below one shard's "
        "1,000 records/s and 1 MiB/s; packed, each shard gets ~1/linger records/s)",
    )
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    data = readings(args.readings, args.devices)
    messages = [(topic_for(r.device), encode(r)) for r in data]
    rows: list[tuple[str, float, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        moto = start_moto(Path(tmp))
        kinesalite = (
            start_kinesalite(Path(tmp) / "kinesalite", shard_limit=10_000)
            if args.kinesis == "kinesalite"
            else None
        )
        broker = start_mosquitto(Path(tmp) / "broker", persistence=False)
        try:
            mqtt_url = f"mqtt://127.0.0.1:{broker.port}"
            settings = Settings.of(
                endpoint_url=moto.url,
                endpoints={"kinesis": kinesalite.url} if kinesalite else None,
                mqtt_url=mqtt_url,
                stream="bench-bridge",
                bucket="bench",
            )
            kinesis = settings.client("kinesis")
            settings.client("s3").create_bucket(Bucket="bench")
            names = ("bench-raw", "bench-raw-parallel", "bench-raw-aio", "bench-bridge")
            for name in (*names, "bench-bridge-single"):
                make_stream(kinesis, name, args.shards)
            a, a_cpu = raw_mqtt(broker.port, messages)
            rows.append(("(a)  raw MQTT QoS 1 receive, bare paho", a, a_cpu, load()))
            b, b_cpu = raw_put_records(kinesis, "bench-raw", data)
            rows.append(("(b)  raw PutRecords, bare boto3, 500/call", b, b_cpu, load()))
            bp, bp_cpu = raw_put_records(kinesis, "bench-raw-parallel", data, threads=args.lanes)
            rows.append((f"(b') same, {args.lanes} threads by shard", bp, bp_cpu, load()))
            ba, ba_cpu = raw_put_records_aioboto3(settings, "bench-raw-aio", data, args.lanes)
            rows.append((f"(b'') same with aioboto3, {args.lanes} tasks", ba, ba_cpu, load()))
            c, c_cpu, c_rec = bridge_run(
                settings, messages, args.lanes, args.linger_ms / 1000, "packed"
            )
            rows.append(("(c)  bridge, packed records", c, c_cpu, load()))
            single = settings.replace(stream="bench-bridge-single")
            cs, cs_cpu, cs_rec = bridge_run(
                single, messages, args.lanes, args.single_linger_ms / 1000, "single"
            )
            rows.append(("(c') bridge, one record per reading", cs, cs_cpu, load()))
            fleet = []
            if args.fleet_devices:
                for fmt, linger in (("packed", args.linger_ms), ("single", args.single_linger_ms)):
                    stream = f"bench-fleet-{fmt}"
                    make_stream(kinesis, stream, args.fleet_shards)
                    fleet.append(
                        (fmt, *fleet_run(settings.replace(stream=stream), args.fleet_devices,
                                         args.fleet_interval, args.fleet_seconds, fmt,
                                         linger / 1000), load())
                    )  # fmt: skip
        finally:
            broker.stop()
            if kinesalite:
                kinesalite.stop()
            moto.stop()
    print(
        f"readings {args.readings}, devices {args.devices}, shards {args.shards}, "
        f"bridge lanes {args.lanes}, linger {args.linger_ms:g} ms packed / "
        f"{args.single_linger_ms:g} ms single, Kinesis: {args.kinesis}"
    )
    for name, rate, cpu, at in rows:
        print(f"{name:44s} {rate:9.0f} readings/s   CPU {cpu:6.1f} ms per 1,000   ({at})")
    print(f"c / min(a, b)  = {c / min(a, b):.0%}   (target >= 80 %)")
    print(
        f"c / min(a, b') = {c / min(a, bp):.0%}   (against raw calls as parallel as the bridge's)"
    )
    print(f"(c)  records per reading: telemetry {c_rec:.4f}  (packed, draining a backlog)")
    print(f"(c') records per reading: telemetry {cs_rec:.4f}  (single)")
    for fmt, n, cpu, rec, at in fleet:
        print(
            f"(d)  fleet {args.fleet_devices} devices x 1 per {args.fleet_interval:g} s, {fmt:6s}: "
            f"{n} readings, CPU {cpu:6.1f} µs per reading (idle included), "
            f"records per reading: telemetry {rec:.4f}   ({at})"
        )


if __name__ == "__main__":
    main()

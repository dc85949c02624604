"""Packed records, device batches, reshards and two bridges: mosquitto, kinesalite, moto.

Each test publishes over MQTT QoS 1, lets the bridge(s) forward, then reads the whole
stream back as the processor does (``StreamReader.messages``: a packed record addressed
to another shard is skipped) and checks every valid reading is there, on the shard that
owns its device, in order, and every bad one is in the dead letter with its reason.
"""

from __future__ import annotations

import base64
import hashlib
import signal
import threading
import time
from collections import Counter

import orjson
import pytest

from bridge.service import Bridge, BridgeOptions
from telemetry.envelope import unpack
from telemetry.reading import Reading, decode_payload, encode, topic_for
from tests import support
from tests.test_bridge_e2e import (
    StreamReader,
    check_complete,
    create_resources,
    dead_letters,
    in_order_per_device,
    make_readings,
    publish,
    spawn_bridge,
)


def batches(readings: list[Reading], size: int) -> list[tuple[str, bytes]]:
    """Each device's readings in arrays of ``size``, as (topic, payload) in time order."""
    by_device: dict[str, list[Reading]] = {}
    for r in readings:
        by_device.setdefault(r.device, []).append(r)
    out = []
    for device, rs in by_device.items():
        for i in range(0, len(rs), size):
            chunk = [r.to_payload() for r in rs[i : i + size]]
            out.append((topic_for(device), orjson.dumps(chunk)))
    return out


def test_a_batch_is_judged_reading_by_reading_and_acked_once_all_are_settled(
    settings_mqtt, boto, mosquitto
):
    settings = settings_mqtt
    create_resources(boto, settings, shards=2)
    readings = make_readings(3_000)
    messages = batches(readings, 12)  # a minute of readings every 5 s
    bad_parts = []
    for n in range(0, len(messages), 10):  # spoil one reading in every tenth batch
        topic, payload = messages[n]
        items = orjson.loads(payload)
        items.insert(3, {**items[0], "data": {"temp": 900.0}, "ts": items[0]["ts"] + 0.001})
        bad_parts.append((orjson.dumps(items[3]), "no_sensor", 3))
        messages[n] = (topic, orjson.dumps(items))
    messages.append((topic_for("a1"), b"[]"))  # refused whole
    bridge = Bridge(settings.bridge_target(), BridgeOptions(client_id=f"bridge-{settings.app}"))
    bridge.start()
    try:
        assert publish(mosquitto.port, messages) == len(messages)
        reader = StreamReader(boto("kinesis"), settings.stream)
        figures = check_complete(reader, readings)
        letters = support.wait_for(
            lambda: (
                (e := dead_letters(boto("s3"), settings.bucket)) and len(e) > len(bad_parts) and e
            ),
            30,
            "the dead letters",
        )
        support.wait_for(lambda: len(bridge.buffer) == 0, 10, "every message settled")
    finally:
        assert bridge.stop(10)
    assert figures["duplicates"] == 0 and in_order_per_device(reader.readings()) == 0
    assert bridge.buffer.acked == len(messages) and bridge.forwarded == len(readings)
    got = Counter((base64.b64decode(e["payload_b64"]), e["reason"], e.get("part")) for e in letters)
    assert got == Counter([*bad_parts, (b"[]", "bad_batch", None)])
    records = sum(len(r) for r in reader.records.values())
    assert records / len(readings) <= 0.05, records
    print(f"\nbatches: {len(messages)} messages, {records} records for {len(readings)} readings")


def owner(shards: list[dict], device: str) -> str:
    h = int.from_bytes(hashlib.md5(device.encode()).digest(), "big")
    (sid,) = [
        s["ShardId"]
        for s in shards
        if "EndingSequenceNumber" not in s["SequenceNumberRange"]
        and int(s["HashKeyRange"]["StartingHashKey"])
        <= h
        <= int(s["HashKeyRange"]["EndingHashKey"])
    ]
    return sid


@pytest.mark.slow
def test_a_reshard_under_load_keeps_each_reading_on_its_devices_shard_in_order(
    settings_mqtt, boto, mosquitto
):
    settings = settings_mqtt
    create_resources(boto, settings, shards=2)
    kinesis = boto("kinesis")
    devices = tuple(f"sensor-{i:03d}" for i in range(60))
    readings = make_readings(9_000, devices=devices)
    messages = [(topic_for(r.device), encode(r)) for r in readings]
    bridge = Bridge(
        settings.bridge_target(), BridgeOptions(client_id=f"bridge-{settings.app}", linger=0.1)
    )
    bridge.start()
    reader = StreamReader(kinesis, settings.stream)
    try:
        publisher = threading.Thread(
            target=publish, args=(mosquitto.port, messages), kwargs={"rate": 1500}
        )
        publisher.start()
        support.wait_for(lambda: reader.poll() > 2_000, 60, "some readings forwarded", 0.2)
        parents = kinesis.list_shards(StreamName=settings.stream)["Shards"]
        for shard in parents:  # split both while the bridge sends
            lo = int(shard["HashKeyRange"]["StartingHashKey"])
            hi = int(shard["HashKeyRange"]["EndingHashKey"])
            kinesis.split_shard(
                StreamName=settings.stream,
                ShardToSplit=shard["ShardId"],
                NewStartingHashKey=str((lo + hi) // 2),
            )
            kinesis.get_waiter("stream_exists").wait(
                StreamName=settings.stream, WaiterConfig={"Delay": 0.2}
            )
        publisher.join(60)
        figures = check_complete(reader, readings)
    finally:
        assert bridge.stop(10)
    shards = kinesis.list_shards(StreamName=settings.stream)["Shards"]
    parent_ids = {s["ShardId"] for s in parents}
    misplaced = 0
    for sid, records in reader.records.items():
        for data in records:
            u = unpack(data)
            if u.shard != sid:
                misplaced += 1  # skipped by readers; its readings were sent again
                continue
            if sid not in parent_ids:  # a child holds only the devices it owns
                assert {owner(shards, decode_payload(m).device) for m in u} == {sid}
    assert misplaced == sum(f.misplaced for f in bridge.forwarders) > 0
    # parents first, then children (as the processor reads them): each device in order
    assert in_order_per_device(reader.readings()) == 0 and figures["duplicates"] == 0
    print(f"\nreshard 2 -> 4: {figures}, {misplaced} records landed on a child and were re-sent")


@pytest.mark.slow
def test_two_bridges_share_the_devices_and_a_killed_one_loses_nothing(
    settings_mqtt, boto, mosquitto, tmp_path
):
    settings = settings_mqtt
    create_resources(boto, settings, shards=2)
    readings = make_readings(9_000)
    messages = [(topic_for(r.device), encode(r)) for r in readings]
    dirs = [tmp_path / "b1", tmp_path / "b2"]
    for d in dirs:
        d.mkdir()
    bridges = [spawn_bridge(settings, d, "--bridge-id", d.name) for d in dirs]
    reader = StreamReader(boto("kinesis"), settings.stream)
    done = threading.Event()
    publisher = threading.Thread(
        target=lambda: (publish(mosquitto.port, messages, rate=500), done.set())
    )
    try:
        publisher.start()
        support.wait_for(lambda: reader.poll() > 1_500, 60, "both bridges forwarding", 0.2)
        bridges[0].send_signal(signal.SIGKILL)  # under load: its in-flight share is unacked
        bridges[0].wait(10)
        time.sleep(2)  # messages keep coming for its session while it is down
        assert not done.is_set()
        bridges[0] = spawn_bridge(settings, dirs[0], "--bridge-id", dirs[0].name)
        publisher.join(60)
        figures = check_complete(reader, readings, timeout=90)
    finally:
        for b in bridges:
            if b.poll() is None:
                b.send_signal(signal.SIGTERM)
                assert b.wait(30) == 0
    logs = [(d / "bridge.log").read_text() for d in dirs]
    assert "MQTT: resumed session iotcast-bridge-" in logs[0]  # the restart reclaimed it
    assert all("$share/" in log for log in logs)
    assert in_order_per_device(reader.readings()) == 0
    print(f"\ntwo bridges, one SIGKILLed at 500/s: lost 0, {figures}")

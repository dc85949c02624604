"""Replay publishes readings to a real mosquitto; a subscriber receives every one, in order,
whatever sensors each reading carries."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from iotcast.cli import main
from iotcast.settings import Settings
from iotcast.stack import ManagedProcess, free_port
from telemetry.csvfile import HEADER, write_csv
from telemetry.generate import Faults, generate
from telemetry.reading import SENSORS, Reading, decode_payload
from telemetry.replay import ReplayError, replay
from tests.mqtt_support import start_secure_broker


class Subscriber:
    """A paho subscriber on ``iot/+/telemetry`` (QoS 1) that keeps what it receives."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"test-sub-{uuid.uuid4().hex[:6]}"
        )
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("iot/+/telemetry", qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.ready.set()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(10), "subscriber did not get its SUBACK"

    def wait_for(self, n: int, timeout: float = 60.0) -> list[tuple[str, bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # anything beyond n would show up now
        return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(mosquitto: ManagedProcess) -> Settings:
    return Settings.resolve(
        env={}, toml={}, flags={"mqtt_url": f"mqtt://127.0.0.1:{mosquitto.port}"}
    )


@pytest.fixture
def subscriber(mosquitto: ManagedProcess):
    sub = Subscriber(mosquitto.port)
    yield sub
    sub.close()


@pytest.fixture(scope="module")
def readings() -> list[Reading]:
    # generated data holds duplicates and out-of-order rows: replay must keep them, in order
    return list(generate(days=0.25, seed=9))[:10_000]


def received_readings(messages: list[tuple[str, bytes]]) -> list[Reading]:
    return [decode_payload(payload, topic) for topic, payload in messages]


def test_replay_of_10000_readings_is_received_complete_and_in_order(
    broker: Settings, subscriber: Subscriber, readings: list[Reading]
) -> None:
    assert len(readings) == 10_000
    n = replay(broker.mqtt, readings, speed=0, qos=1)
    assert n == 10_000
    got = subscriber.wait_for(10_000)
    assert len(got) == 10_000
    assert received_readings(got) == readings  # same content, same (file) order
    assert {topic for topic, _ in got} == {f"iot/{r.device}/telemetry" for r in readings}


def test_limit_and_device_filter(
    broker: Settings, subscriber: Subscriber, readings: list[Reading]
) -> None:
    device = readings[0].device
    n = replay(broker.mqtt, readings, limit=500, devices=[device], window=7)
    assert n == 500
    expected = [r for r in readings if r.device == device][:500]
    assert received_readings(subscriber.wait_for(500)) == expected


def test_paced_replay_follows_event_time_and_sends_late_rows_at_once(
    broker: Settings, subscriber: Subscriber
) -> None:
    base = 1_594_512_000.0
    rows = [
        Reading(base + dt, "dev-1", 0.005, 50.0, False, 0.007, False, 0.02, 21.0 + dt / 10)
        for dt in (0.0, 1.0, 2.0, 0.5, 3.0)  # 0.5 is out of order: it goes right after 2.0
    ]
    started = time.monotonic()
    assert replay(broker.mqtt, rows, speed=4.0) == 5  # 3 s of event time at 4x: at least 0.75 s
    assert time.monotonic() - started >= 0.75
    assert received_readings(subscriber.wait_for(5)) == rows


def test_replay_of_subset_readings_sends_only_the_fields_each_has(
    broker: Settings, subscriber: Subscriber
) -> None:
    base = 1_594_512_000.0
    mixed = list(
        generate(days=0.02, seed=3, faults=Faults.none(),
                 sensors=[SENSORS, ("humidity", "temp"), ("temp",)],
                 dies=[(0, "humidity", 0.01 * 86_400)])
    )  # fmt: skip
    rows = [
        *mixed,
        Reading(base, "bme280-1", humidity=40.0, temp=21.5, extra=(("pressure", 1013.25),)),
        Reading(base + 1, "bmp180-1", extra=(("pressure", 1001.5),)),  # an extra field alone
        Reading(base + 2, "sht31-1", humidity=100.0, temp=12.0, notes=(("humidity", "clipped"),)),
        Reading(base + 3, "dht22-1", temp=19.0, notes=(("humidity", "out_of_range"),)),
    ]
    assert replay(broker.mqtt, rows) == len(rows)
    got = subscriber.wait_for(len(rows))
    assert len(got) == len(rows)
    for (topic, payload), sent in zip(got, rows, strict=True):
        data = json.loads(payload)["data"]
        assert set(data) == set(sent.sensors())  # absent sensors are not in the payload
        assert decode_payload(payload, topic) == dataclasses.replace(sent, notes=())
    assert {r.sensors() for r in mixed} >= {SENSORS, ("humidity", "temp"), ("temp",)}


def test_replay_command_publishes_a_temperature_only_file(
    tmp_path: Path, mosquitto: ManagedProcess, subscriber: Subscriber, capsys
) -> None:
    # as the real temperature-only file holds it: every cell but ts, device and temp empty
    path = tmp_path / "ambient.csv"
    lines = [HEADER] + [
        f'"{1372896000.0 + 3600 * k}","4e:41:42:00:00:01","","","","","","","{21.0 + k / 10}"'
        for k in range(50)
    ]
    lines.append('"1372896000.0","4e:41:42:00:00:01","","","","","","",""')  # nothing usable
    path.write_text("\n".join(lines) + "\n")
    code = main(
        ["replay", "--csv", str(path), "--speed", "0", "--quiet",
         "--mqtt-url", f"mqtt://127.0.0.1:{mosquitto.port}"]
    )  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    assert "published 50 readings" in err and "skipped 1 bad rows" in err
    got = subscriber.wait_for(50)
    assert [json.loads(p)["data"] for _, p in got] == [{"temp": 21.0 + k / 10} for k in range(50)]


def test_qos0_replay_publishes_too(broker: Settings, subscriber: Subscriber, readings) -> None:
    assert replay(broker.mqtt, readings[:300], qos=0) == 300
    assert len(subscriber.wait_for(300)) == 300


def test_unreachable_broker_is_an_error_that_says_where(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings.resolve(env={}, toml={}, flags={"mqtt_url": f"mqtt://127.0.0.1:{port}"})
    with pytest.raises(ReplayError, match=f"cannot reach the MQTT broker at 127.0.0.1:{port}"):
        replay(settings.mqtt, [])


def test_replay_command_publishes_a_csv_file(
    tmp_path: Path, mosquitto: ManagedProcess, subscriber: Subscriber, capsys
) -> None:
    path = tmp_path / "week.csv"
    rows = list(generate(days=0.02, seed=1, faults=Faults.none()))
    write_csv(path, rows)
    with path.open("a") as f:  # a bad cell: that field is left out; a bad row: skipped, reported
        f.write(
            '"1.5945121E9","b8:27:eb:bf:9d:51","x","51.0","false","0.007","false","0.02","22.7"\n'
            '"1.5945121E9","b8:27:eb:bf:9d:51","x","","","","","",""\n'
        )
    rows.append(Reading(1594512100.0, "b8:27:eb:bf:9d:51", None, 51.0, False, 0.007, False,
                        0.02, 22.7))  # fmt: skip
    code = main(
        ["replay", "--csv", str(path), "--speed", "0", "--quiet",
         "--mqtt-url", f"mqtt://127.0.0.1:{mosquitto.port}"]
    )  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    assert f"published {len(rows):,} readings" in err and "acknowledged by the broker" in err
    assert "skipped 1 bad rows" in err
    assert received_readings(subscriber.wait_for(len(rows))) == rows


def test_replay_command_fails_cleanly_without_a_broker(tmp_path: Path, capsys) -> None:
    path = tmp_path / "w.csv"
    write_csv(path, generate(days=0.001, seed=1))
    port = free_port()
    code = main(["replay", "--csv", str(path), "--quiet", "--mqtt-url", f"mqtt://127.0.0.1:{port}"])
    assert code == 1
    assert "cannot reach the MQTT broker" in capsys.readouterr().err


def test_replay_over_mqtts_with_a_password_and_a_ca_file(tmp_path: Path, readings) -> None:
    broker = start_secure_broker(tmp_path / "secure", {"replayer": "s3cret"})
    ca = broker.ca_file
    try:
        url = broker.url("replayer")
        good = Settings.resolve(env={}, toml={}, flags={"mqtt_url": url, "mqtt_ca_file": str(ca)})
        assert replay(good.mqtt, readings[:200]) == 200  # every one acknowledged over TLS
        wrong = good.replace(mqtt_url=url.replace("s3cret", "wrong"))
        with pytest.raises(ReplayError, match="refused the connection"):
            replay(wrong.mqtt, readings[:1])
        untrusted = good.replace(mqtt_ca_file=None)  # the system CAs do not know our test CA
        with pytest.raises(ReplayError, match="TLS with the MQTT broker .* failed.*--mqtt-ca-file"):
            replay(untrusted.mqtt, readings[:1])
    finally:
        broker.stop()


def test_replay_survives_a_broker_restart_and_gets_every_message_acknowledged(
    broker: Settings, mosquitto: ManagedProcess, readings: list[Reading], caplog
) -> None:
    caplog.set_level("WARNING", logger="telemetry.replay")
    paused, resume = threading.Event(), threading.Event()
    result: dict[str, object] = {}

    def feed():
        for i, r in enumerate(readings[:6000]):
            if i == 3000:  # halfway: let the test kill and restart the broker
                paused.set()
                resume.wait(60)
            yield r

    def run() -> None:
        try:
            result["n"] = replay(broker.mqtt, feed(), window=100, stall_timeout=30)
        except ReplayError as exc:  # reported by the assertion below
            result["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    assert paused.wait(60)
    mosquitto.kill()
    mosquitto.proc.wait(10)
    mosquitto.start()  # same port, fresh process
    resume.set()
    worker.join(120)
    assert not worker.is_alive()
    assert result.get("n") == 6000, result
    assert "connection to" in caplog.text and "reconnecting" in caplog.text  # it did reconnect


def test_a_broker_that_stays_away_fails_the_replay_with_a_message(
    broker: Settings, mosquitto: ManagedProcess, readings: list[Reading]
) -> None:
    def feed():
        for i, r in enumerate(readings[:2000]):
            if i == 1000:
                mosquitto.kill()
                mosquitto.proc.wait(10)
            yield r

    with pytest.raises(ReplayError, match="could not reconnect within 2 s"):
        replay(broker.mqtt, feed(), stall_timeout=2)  # bounded retries, then a message

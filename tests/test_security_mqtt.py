"""The bridge over MQTT with TLS and a password, against a real mosquitto that wants both.

The broker (tests/mqtt_support.py) has a certificate from a CA made in the
test, a password file and no anonymous access.  Readings published by one
user (the replay) arrive in Kinesis through the bridge logged in as another;
anonymous clients, a wrong password and an unknown CA are refused with a
message saying what to fix, and the password never shows in it.
"""

from __future__ import annotations

import ssl
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bridge.retry import BridgeFailure
from bridge.service import Bridge, BridgeOptions
from iotcast.cli import main
from iotcast.settings import Settings
from telemetry.envelope import unpack
from telemetry.generate import Faults, generate
from telemetry.reading import decode_payload
from telemetry.replay import replay
from tests.mqtt_support import SecureBroker, start_secure_broker

BRIDGE_PASSWORD = "br1dge-Pa55:w@rd/#"  # special characters: percent-encoded in the URL
DEVICE_PASSWORD = "dev1ce-pass"


@pytest.fixture
def secure_broker(tmp_path: Path):
    broker = start_secure_broker(
        tmp_path / "secure", {"bridge": BRIDGE_PASSWORD, "device": DEVICE_PASSWORD}
    )
    yield broker
    broker.stop()


def _stream_records(settings: Settings) -> list[bytes]:
    kinesis = settings.client("kinesis")
    out = []
    for shard in kinesis.list_shards(StreamName=settings.stream)["Shards"]:
        it = kinesis.get_shard_iterator(
            StreamName=settings.stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while it:
            page = kinesis.get_records(ShardIterator=it, Limit=10_000)
            out += [m for r in page["Records"] for m in unpack(r["Data"])]  # packed records
            if not page["Records"]:
                break
            it = page.get("NextShardIterator")
    return out


def test_bridge_forwards_readings_over_mqtts_with_a_password(
    settings: Settings, secure_broker: SecureBroker
) -> None:
    ca = str(secure_broker.ca_file)
    bridge_settings = settings.replace(mqtt_url=secure_broker.url("bridge"), mqtt_ca_file=ca)
    bridge = Bridge(
        bridge_settings.bridge_target(),
        BridgeOptions(client_id="secure-bridge", create_stream=True),
    )
    bridge.start(mqtt_timeout=15)
    try:
        readings = list(generate(days=0.01, seed=5, faults=Faults.none()))[:300]
        device = settings.replace(mqtt_url=secure_broker.url("device"), mqtt_ca_file=ca)
        assert replay(device.mqtt, readings) == len(readings)
        deadline = time.monotonic() + 30
        while bridge.forwarded < len(readings) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert bridge.forwarded == len(readings)
    finally:
        assert bridge.stop(10)
    got = sorted((decode_payload(d) for d in _stream_records(settings)), key=lambda r: r.ts)
    assert got == sorted(readings, key=lambda r: r.ts)  # every reading, with its values


def _anonymous_tls_connect(broker: SecureBroker) -> str:
    """The CONNACK an anonymous client gets over TLS (the CA trusted, so TLS itself works)."""
    result: dict[str, str] = {}
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.tls_set(ca_certs=str(broker.ca_file), cert_reqs=ssl.CERT_REQUIRED)
    client.on_connect = lambda c, u, f, rc, p: result.setdefault("rc", str(rc))
    client.connect("127.0.0.1", broker.port)
    deadline = time.monotonic() + 10
    while "rc" not in result and time.monotonic() < deadline:
        client.loop(0.1)
    client.disconnect()
    return result.get("rc", "no answer")


def test_anonymous_and_wrong_passwords_are_refused_with_a_clear_message(
    settings: Settings, secure_broker: SecureBroker
) -> None:
    assert _anonymous_tls_connect(secure_broker) == "Not authorized"
    ca = str(secure_broker.ca_file)
    for url, what in [
        (f"mqtts://127.0.0.1:{secure_broker.port}", "anonymous"),
        (secure_broker.url("bridge", "wr0ng-secret"), "wrong password"),
        (f"mqtts://nobody:wr0ng-secret@127.0.0.1:{secure_broker.port}", "unknown user"),
    ]:  # fmt: skip
        bridge = Bridge(
            settings.replace(mqtt_url=url, mqtt_ca_file=ca).bridge_target(),
            BridgeOptions(client_id=f"refused-{what.replace(' ', '-')}", create_stream=True),
        )
        started = time.monotonic()
        with pytest.raises(BridgeFailure) as exc:
            bridge.start(mqtt_timeout=30)
        bridge.stop(5)
        assert time.monotonic() - started < 10, what  # refused at once, not after the timeout
        message = str(exc.value)
        assert exc.value.code == "mqtt_refused", (what, message)
        assert (
            f"the MQTT broker at 127.0.0.1:{secure_broker.port} refused the connection" in message
        )
        assert "Not authorized" in message or "Bad user name or password" in message, message
        assert "check the user and password in --mqtt-url" in message
        assert "wr0ng-secret" not in message and BRIDGE_PASSWORD not in message


def test_an_untrusted_certificate_is_named_and_the_command_exits_2(
    settings: Settings, secure_broker: SecureBroker, capsys
) -> None:
    url = secure_broker.url("bridge")
    bridge = Bridge(
        settings.replace(
            mqtt_url=url, mqtt_ca_file=None
        ).bridge_target(),  # the system CAs do not know ours
        BridgeOptions(client_id="untrusted", create_stream=True),
    )
    with pytest.raises(BridgeFailure, match="TLS with the MQTT broker .* --mqtt-ca-file") as exc:
        bridge.start(mqtt_timeout=30)
    bridge.stop(5)
    assert exc.value.code == "mqtt_tls" and "CERTIFICATE_VERIFY_FAILED" in str(exc.value)
    # The command line says the same and exits 2 (wrong password here), password not shown.
    code = main(
        ["bridge", "--create-stream", "--endpoint-url", str(settings.endpoint_url),
         "--stream", settings.stream, "--bucket", settings.bucket,
         "--mqtt-url", secure_broker.url("bridge", "wr0ng-secret"),
         "--mqtt-ca-file", str(secure_broker.ca_file)]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert "refused the connection" in err and "check the user and password" in err
    assert "wr0ng-secret" not in err


def test_special_characters_in_the_password_reach_the_broker_intact(
    secure_broker: SecureBroker,
) -> None:
    target = Settings(mqtt_url=secure_broker.url("bridge")).mqtt
    assert (target.username, target.password) == ("bridge", BRIDGE_PASSWORD)
    settings = Settings(mqtt_url=secure_broker.url("bridge"))
    for shown in (repr(target), repr(settings), str(settings)):
        assert BRIDGE_PASSWORD not in shown and "Pa55" not in shown

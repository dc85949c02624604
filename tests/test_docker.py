"""The docker stack's files: compose file, Dockerfile, mosquitto config.

There is no Docker engine here: the compose file is validated by Debian's
``docker-compose`` v1 (``config`` needs no daemon) and by reading it; the
broker's config, password file and ACL are exercised with the real Debian
mosquitto on 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import tomllib
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml

from iotcast.stack import ManagedProcess, free_port, require

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "docker-compose.yml"
STACK = {"mosquitto", "moto", "bridge", "processor-1", "processor-2", "prometheus", "grafana"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _bind_mounts(service: dict) -> list[tuple[str, str]]:
    out = []
    for volume in service.get("volumes", []):
        host, container = volume.split(":")[:2]
        if host.startswith((".", "/")):
            out.append((host, container))
    return out


def test_docker_compose_validates_the_file() -> None:
    binary = shutil.which("docker-compose")
    assert binary, (
        "docker-compose (Debian package) is not installed: apt-get install docker-compose"
    )
    result = subprocess.run(
        [binary, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_compose_has_the_whole_stack(compose: dict) -> None:
    services = compose["services"]
    assert set(services) >= STACK
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        if name in STACK:
            assert service.get("ports"), f"{name} publishes no port"
    for name in ("bridge", "processor-1", "processor-2"):
        assert services[name]["build"]["dockerfile"] == "docker/Dockerfile"
        assert services[name]["environment"]["AWS_ENDPOINT_URL"] == "http://moto:5000"
    assert (
        services["processor-1"]["command"][0] == services["processor-2"]["command"][0] == "process"
    )
    assert services["bridge"]["command"][0] == "bridge"


def test_every_mounted_file_exists_in_the_repository(compose: dict) -> None:
    mounts = [(n, h, c) for n, s in compose["services"].items() for h, c in _bind_mounts(s)]
    assert len(mounts) >= 10
    for name, host, _ in mounts:
        assert (DOCKER / host).resolve().exists(), f"{name}: {host} does not exist"


def test_prometheus_in_compose_scrapes_the_compose_services(compose: dict) -> None:
    services = compose["services"]
    mounts = dict((c, h) for h, c in _bind_mounts(services["prometheus"]))
    targets_dir = DOCKER / mounts["/etc/prometheus/targets"]
    assert (
        DOCKER / mounts["/etc/prometheus/rules"]
    ).resolve() == ROOT / "monitoring/prometheus/rules"
    metrics_port = {
        name: s["command"][s["command"].index("--metrics-port") + 1]
        for name, s in services.items()
        if "--metrics-port" in s.get("command", [])
    }
    found = set()
    for f in targets_dir.glob("*.yml"):
        for group in yaml.safe_load(f.read_text()):
            for target in group["targets"]:
                host, port = target.split(":")
                assert metrics_port.get(host) == port, f"{f.name}: {target} is no compose service"
                found.add(host)
    assert found == {"bridge", "processor-1", "processor-2"}


def test_grafana_in_compose_gets_the_provisioning_and_dashboards(compose: dict) -> None:
    mounts = {c: (DOCKER / h).resolve() for h, c in _bind_mounts(compose["services"]["grafana"])}
    grafana = ROOT / "monitoring" / "grafana"
    for kind in ("datasources", "dashboards", "alerting"):
        assert mounts[f"/etc/grafana/provisioning/{kind}"] == grafana / "provisioning" / kind
    provider = yaml.safe_load((grafana / "provisioning/dashboards/iotcast.yml").read_text())
    assert mounts[provider["providers"][0]["options"]["path"]] == grafana / "dashboards"


def test_dockerfile_is_multi_stage_and_runs_as_a_non_root_user() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\w+)", text, re.MULTILINE | re.IGNORECASE)
    assert len(stages) >= 2
    final = text[text.rindex("\nFROM ") :]
    assert "COPY --from=build" in final
    users = re.findall(r"^USER\s+(\S+)", final, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert final.index("USER") < final.index("ENTRYPOINT")
    assert re.search(r'^ENTRYPOINT \["iotcast"\]', final, re.MULTILINE)
    # every package pyproject.toml installs is copied into the image
    find = tomllib.loads((DOCKER.parent / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = [p.rstrip("*") for p in find["packages"]["find"]["include"]]
    assert "iotcast" in packages
    for package in packages:
        assert f"COPY {package} ./{package}" in text


# ------------------------------------------------------ the broker's config
@pytest.fixture
def docker_broker(tmp_path: Path) -> ManagedProcess:
    """Debian mosquitto running docker/mosquitto/mosquitto.conf (paths and port made local)."""
    port = free_port()
    for name in ("passwd", "acl"):
        shutil.copy(DOCKER / "mosquitto" / name, tmp_path / name)
        (tmp_path / name).chmod(0o644)
    (tmp_path / "data").mkdir()
    conf = (DOCKER / "mosquitto" / "mosquitto.conf").read_text()
    conf = conf.replace("listener 1883 0.0.0.0", f"listener {port} 127.0.0.1")
    conf = conf.replace("/mosquitto/config/", f"{tmp_path}/").replace(
        "/mosquitto/data/", f"{tmp_path}/data/"
    )
    if os.geteuid() == 0:  # as root mosquitto would drop to the "mosquitto" user
        conf += "\nuser root\n"
    (tmp_path / "mosquitto.conf").write_text(conf)
    proc = ManagedProcess(
        "mosquitto",
        [require("mosquitto"), "-c", str(tmp_path / "mosquitto.conf")],
        port,
        tmp_path / "mosquitto.log",
    ).start()
    yield proc
    proc.stop()


def _connect(port: int, user: str | None = None, password: str | None = None):
    """(reason code of CONNACK, client); the client runs its loop until stopped."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}")
    if user:
        client.username_pw_set(user, password)
    done = threading.Event()
    result: dict = {}

    def on_connect(c, userdata, flags, reason_code, properties):
        result["rc"] = reason_code
        done.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert done.wait(10), "no CONNACK"
    return result["rc"], client


def _close(client) -> None:
    client.disconnect()
    client.loop_stop()


def _credentials() -> dict[str, str]:
    compose = yaml.safe_load(COMPOSE.read_text())
    out = {}
    for service in compose["services"].values():
        url = service.get("environment", {}).get("IOTCAST_MQTT_URL")
        if url:
            m = re.fullmatch(r"mqtt://([^:]+):([^@]+)@mosquitto:1883", url)
            assert m, url
            out[m[1]] = m[2]
    return out


def test_docker_broker_refuses_anonymous_and_wrong_passwords(docker_broker: ManagedProcess) -> None:
    rc, client = _connect(docker_broker.port)
    _close(client)
    assert rc.is_failure and rc.value in (5, 135), rc  # not authorized
    rc, client = _connect(docker_broker.port, "iotcast-bridge", "wrong")
    _close(client)
    assert rc.is_failure, rc


def test_docker_broker_lets_devices_publish_to_the_bridge_only(
    docker_broker: ManagedProcess,
) -> None:
    creds = _credentials()
    assert set(creds) == {"iotcast-bridge", "devices"}
    got: dict[str, list[bytes]] = {"iotcast-bridge": [], "devices": []}
    subscribed = threading.Barrier(3, timeout=10)
    clients = []
    for user in ("iotcast-bridge", "devices"):
        rc, client = _connect(docker_broker.port, user, creds[user])
        assert not rc.is_failure, (user, rc)
        client.on_message = lambda c, u, msg, user=user: got[user].append(msg.payload)
        client.on_subscribe = lambda *a: subscribed.wait()
        client.subscribe("iot/+/telemetry", qos=1)
        clients.append(client)
    subscribed.wait()
    info = clients[1].publish("iot/dev1/telemetry", b'{"x": 1}', qos=1)
    info.wait_for_publish(10)
    deadline = threading.Event()
    for _ in range(50):
        if got["iotcast-bridge"]:
            break
        deadline.wait(0.1)
    deadline.wait(0.3)  # time for a (wrong) delivery to the devices' subscription
    for c in clients:
        _close(c)
    assert got["iotcast-bridge"] == [b'{"x": 1}']
    assert got["devices"] == [], "devices must not read telemetry (ACL)"

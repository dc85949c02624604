"""Fixtures that start the real components on 127.0.0.1: mosquitto, the moto
server (Kinesis, S3, DynamoDB) and Prometheus, each on a free port."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from iotcast.settings import Settings
from iotcast.stack import ManagedProcess, start_mosquitto, start_moto

# Nothing in the suite may reach real AWS, whatever the developer's shell holds.
for _var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
    os.environ.pop(_var, None)
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    """One moto server for the session; tests use unique stream/bucket names."""
    proc = start_moto(tmp_path_factory.mktemp("moto"))
    yield proc
    proc.stop()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[ManagedProcess]:
    """A fresh mosquitto (persistence on) for one test."""
    proc = start_mosquitto(tmp_path / "broker")
    yield proc
    proc.stop()


@pytest.fixture
def unique() -> str:
    """A short unique suffix for stream, bucket and app names."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def settings(moto_server: ManagedProcess, unique: str) -> Settings:
    """Settings pointing at the session's moto server, with names unique to this test."""
    return Settings.resolve(
        env={},
        toml={},
        flags={
            "endpoint_url": moto_server.url,
            "region": "us-east-1",
            "stream": f"telemetry-{unique}",
            "predictions_stream": f"predictions-{unique}",
            "bucket": f"iotcast-{unique}",
            "app": f"app-{unique}",
        },
    )


@pytest.fixture
def settings_mqtt(settings: Settings, mosquitto: ManagedProcess) -> Settings:
    """:func:`settings` plus the test's own mosquitto."""
    return settings.replace(mqtt_url=f"mqtt://127.0.0.1:{mosquitto.port}")


@pytest.fixture
def boto(settings: Settings):
    """``boto('kinesis')`` -> a boto3 client for the test's moto server."""

    def make(service: str):
        return boto3.client(service, **settings.boto_kwargs())

    return make


def _kinesalite_module() -> str:
    """The kinesalite package in the repository's (gitignored) node_modules (``./dev setup`` installs it)."""
    from iotcast.stack import ComponentMissing, require

    require("node")
    local = Path(__file__).resolve().parent.parent / "node_modules" / "kinesalite"
    if not local.exists():
        raise ComponentMissing(
            "kinesalite is not installed; get it with: npm install --no-save kinesalite@3.3.3 "
            "(in the repository root; ./dev setup does it)"
        )
    return str(local)


@pytest.fixture
def kinesalite(tmp_path: Path) -> Iterator[ManagedProcess]:
    """A fresh kinesalite (Kinesis only, in memory; reshards correctly, unlike moto) on a free port."""
    from iotcast.stack import free_port

    port = free_port()
    # Started through node so that it listens on 127.0.0.1 only (its CLI binds every interface).
    script = (
        "require(process.argv[1])({createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0,"
        " shardLimit: 100}).listen(+process.argv[2], '127.0.0.1')"
    )
    argv = ["node", "-e", script, _kinesalite_module(), str(port)]
    proc = ManagedProcess("kinesalite", argv, port, tmp_path / "kinesalite.log").start(timeout=60)
    yield proc
    proc.stop()

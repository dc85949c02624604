"""Fixtures that start the real components on 127.0.0.1, each on a free port: the
local stack (kinesalite for Kinesis, the moto server for S3 and DynamoDB) and
mosquitto.  ``settings_moto_only`` puts Kinesis on the moto server too, as users
who run moto alone do (the one end-to-end run there is tests/test_security_iam.py)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from iotcast.settings import Settings
from iotcast.stack import ManagedProcess, start_kinesalite, start_mosquitto, start_moto
from tests.support import settings_on

# Nothing in the suite may reach real AWS, whatever the developer's shell holds.
for _var in [v for v in os.environ if v.startswith("AWS_ENDPOINT_URL")] + [
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
]:
    os.environ.pop(_var, None)
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    """One moto server for the session; tests use unique stream/bucket names."""
    proc = start_moto(tmp_path_factory.mktemp("moto"))
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def kinesalite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    """One kinesalite for the session (Kinesis only, in memory; reshards correctly, unlike
    moto); tests use unique stream names."""
    proc = start_kinesalite(tmp_path_factory.mktemp("kinesalite"), shard_limit=100_000)
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
def settings(moto_server: ManagedProcess, kinesalite: ManagedProcess, unique: str) -> Settings:
    """Settings pointing at the session's local stack (Kinesis: kinesalite; S3, DynamoDB:
    moto), with names unique to this test."""
    return settings_on(moto_server.url, kinesis_url=kinesalite.url, unique=unique)


@pytest.fixture
def settings_moto_only(moto_server: ManagedProcess, unique: str) -> Settings:
    """Settings with every service on the session's moto server (moto alone)."""
    return settings_on(moto_server.url, unique=unique)


@pytest.fixture
def settings_mqtt(settings: Settings, mosquitto: ManagedProcess) -> Settings:
    """:func:`settings` plus the test's own mosquitto."""
    return settings.replace(mqtt_url=f"mqtt://127.0.0.1:{mosquitto.port}")


@pytest.fixture
def boto(settings: Settings):
    """``boto('kinesis')`` -> a boto3 client of that service on the test's stack."""

    def make(service: str):
        return settings.client(service)

    return make

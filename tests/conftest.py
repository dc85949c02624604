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
from iotcast.stack import ManagedProcess, start_kinesalite, start_mosquitto, start_moto
from tests.support import settings_on

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
    return settings_on(moto_server.url, unique=unique)


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


@pytest.fixture
def kinesalite(tmp_path: Path) -> Iterator[ManagedProcess]:
    """A fresh kinesalite (Kinesis only, in memory; reshards correctly, unlike moto) on a free port."""
    proc = start_kinesalite(tmp_path)
    yield proc
    proc.stop()

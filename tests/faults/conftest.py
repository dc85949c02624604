"""Fixtures of the fault suite: its size, the pipeline, and the results file.

The size comes from the environment, read here at the tests' edge:

- ``IOTCAST_FAULT_READINGS``: readings replayed per fault (default 2,000, so the
  suite stays within CI's budget; the issue's figure is 100,000);
- ``IOTCAST_FAULT_OUTAGE_SECONDS``: how long S3 or DynamoDB is refused, and
  how long the consumer is slowed (default 10; the issue's figure is 30);
- ``IOTCAST_FAULT_KINESIS_OUTAGE_SECONDS``: how long every Kinesis request of the
  processors is refused (default 90, the issue's figure);
- ``IOTCAST_FAULT_SHARDS``: shards of the telemetry stream (default 2; more
  keep moto fast at large sizes: its PutRecords and GetRecords walk the whole
  shard, so their cost grows with the records a shard holds);
- ``IOTCAST_FAULT_KILLS``: how many times a process is killed in the crash
  tests (default 2; the full-size run uses 3);
- ``IOTCAST_FAULT_RESULTS``: a JSON file the results of every fault are
  written to (``python -m tests.faults.report`` turns it into the table of
  docs/reliability.md).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from iotcast.settings import Settings
from tests.faultproxy import FaultProxy
from tests.faults.pipeline import Pipeline

RESULTS = os.environ.get("IOTCAST_FAULT_RESULTS")


@dataclass(frozen=True)
class Size:
    """The fault suite's size (the module docstring says which variable sets what)."""

    readings: int = int(os.environ.get("IOTCAST_FAULT_READINGS", "2000"))
    outage_seconds: float = float(os.environ.get("IOTCAST_FAULT_OUTAGE_SECONDS", "10"))
    kinesis_outage_seconds: float = float(
        os.environ.get("IOTCAST_FAULT_KINESIS_OUTAGE_SECONDS", "90")
    )
    kills: int = int(os.environ.get("IOTCAST_FAULT_KILLS", "2"))
    shards: int = int(os.environ.get("IOTCAST_FAULT_SHARDS", "2"))


SIZE = Size()


@pytest.fixture(scope="session")
def size() -> Size:
    return SIZE


class Results(list):
    """The session's fault results; each one also written at once to ``IOTCAST_FAULT_RESULTS``
    (a long full-size run keeps what it measured even if stopped half-way)."""

    def append(self, result: dict) -> None:
        super().append(result)
        if not RESULTS:
            return
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        path = Path(RESULTS)
        old = orjson.loads(path.read_bytes()) if path.exists() else {"faults": {}}
        old["faults"][result["fault"]] = {
            **result,
            "readings": SIZE.readings,
            "kills": SIZE.kills,
            "commit": commit,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        old.update(
            readings=SIZE.readings,
            outage_seconds=SIZE.outage_seconds,
            kinesis_outage_seconds=SIZE.kinesis_outage_seconds,
            kills=SIZE.kills,
            shards=SIZE.shards,
            commit=commit,
        )
        old["date"] = old["faults"][result["fault"]]["date"]
        path.write_bytes(orjson.dumps(old, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))


@pytest.fixture(scope="session")
def fault_results() -> Results:
    return Results()


@pytest.fixture
def pipeline(settings_mqtt: Settings, tmp_path: Path) -> Iterator[Pipeline]:
    """A pipeline on the test's mosquitto and the session's kinesalite and moto; everything
    stopped after."""
    p = Pipeline(settings_mqtt, tmp_path, shards=SIZE.shards)
    p.started = time.monotonic()
    yield p
    p.close()


@pytest.fixture
def processors_behind_proxy(
    settings_mqtt: Settings, tmp_path: Path
) -> Iterator[tuple[Pipeline, FaultProxy]]:
    """A pipeline whose processors reach S3 and DynamoDB through a fault proxy (Kinesis
    reads go straight to kinesalite); everything stopped after."""
    proxy = FaultProxy.before(settings_mqtt)
    p = Pipeline(settings_mqtt, tmp_path, shards=SIZE.shards, processor_via=proxy)
    yield p, proxy
    p.close()
    proxy.close()


@pytest.fixture
def processors_all_behind_proxy(
    settings_mqtt: Settings, tmp_path: Path
) -> Iterator[tuple[Pipeline, FaultProxy]]:
    """A pipeline whose processors reach every service (Kinesis too) through a fault proxy;
    the bridge writes straight to kinesalite."""
    proxy = FaultProxy.before(settings_mqtt)
    p = Pipeline(
        settings_mqtt, tmp_path, shards=SIZE.shards, processor_via=proxy, processor_kinesis_via=True
    )
    yield p, proxy
    p.close()
    proxy.close()

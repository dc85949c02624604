"""Fixtures of the fault suite: its size, the pipeline, and the results file.

The size comes from the environment, read here at the tests' edge:

- ``IOTCAST_FAULT_READINGS``: readings replayed per fault (default 2,000, so the
  suite stays within CI's budget; the issue's figure is 100,000);
- ``IOTCAST_FAULT_OUTAGE_SECONDS``: how long S3 or DynamoDB is refused, and
  how long the consumer is slowed (default 10; the issue's figure is 30);
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
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from iotcast.settings import Settings
from tests.faults.pipeline import Pipeline

READINGS = int(os.environ.get("IOTCAST_FAULT_READINGS", "2000"))
OUTAGE_SECONDS = float(os.environ.get("IOTCAST_FAULT_OUTAGE_SECONDS", "10"))
KILLS = int(os.environ.get("IOTCAST_FAULT_KILLS", "2"))
SHARDS = int(os.environ.get("IOTCAST_FAULT_SHARDS", "2"))
RESULTS = os.environ.get("IOTCAST_FAULT_RESULTS")


@pytest.fixture(scope="session")
def fault_readings() -> int:
    return READINGS


@pytest.fixture(scope="session")
def outage_seconds() -> float:
    return OUTAGE_SECONDS


@pytest.fixture(scope="session")
def kills() -> int:
    return KILLS


@pytest.fixture(scope="session")
def shards() -> int:
    return SHARDS


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
            "readings": READINGS,
            "kills": KILLS,
            "commit": commit,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        old.update(
            readings=READINGS,
            outage_seconds=OUTAGE_SECONDS,
            kills=KILLS,
            shards=SHARDS,
            commit=commit,
        )
        old["date"] = old["faults"][result["fault"]]["date"]
        path.write_bytes(orjson.dumps(old, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))


@pytest.fixture(scope="session")
def fault_results() -> Results:
    return Results()


@pytest.fixture
def pipeline(settings_mqtt: Settings, tmp_path: Path) -> Iterator[Pipeline]:
    """A pipeline on the test's mosquitto and the session's moto; everything stopped after."""
    p = Pipeline(settings_mqtt, tmp_path, shards=SHARDS)
    p.started = time.monotonic()
    yield p
    p.close()

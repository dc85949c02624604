"""Helpers for the processor's tests: run ``iotcast process``, feed Kinesis, read checkpoints.

>>> metric_values('a_total{shard="s0"} 3.0\\na_total{shard="s1"} 4.0\\n', "a_total")
{'shard="s0"': 3.0, 'shard="s1"': 4.0}
"""

from __future__ import annotations

import copy
import os
import pickle
import re
import sys
import threading
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import boto3

from iotcast.settings import Settings
from iotcast.stack import ManagedProcess, free_port, port_in_use
from stream.checkpoint import CheckpointStore, ShardManifest

IOTCAST = str(Path(sys.executable).parent / "iotcast")


def create_stream(settings: Settings, shards: int, name: str | None = None) -> None:
    kinesis = boto3.client("kinesis", **settings.kinesis_kwargs())
    kinesis.create_stream(StreamName=name or settings.stream, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(
        StreamName=name or settings.stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100}
    )


def create_bucket(settings: Settings) -> None:
    boto3.client("s3", **settings.boto_kwargs()).create_bucket(Bucket=settings.bucket)


def put_records(settings: Settings, items: list[tuple[bytes, str]], *, pause: float = 0.0) -> None:
    """PutRecords in order, 500 at a time, retrying refused records until all are in."""
    kinesis = boto3.client("kinesis", **settings.kinesis_kwargs())
    for i in range(0, len(items), 500):
        batch = [{"Data": d, "PartitionKey": k} for d, k in items[i : i + 500]]
        for _ in range(20):
            resp = kinesis.put_records(StreamName=settings.stream, Records=batch)
            if not resp["FailedRecordCount"]:
                break
            # Keep order per device: resend from the first failure on.
            first = next(j for j, r in enumerate(resp["Records"]) if "ErrorCode" in r)
            batch = batch[first:]
            time.sleep(0.2)
        else:
            raise RuntimeError("PutRecords kept refusing records")
        if pause:
            time.sleep(pause)


def feed_in_background(
    settings: Settings, items: list[tuple[bytes, str]], pause: float
) -> threading.Thread:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            put_records(settings, items, pause=pause)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test through .errors
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.errors = errors  # type: ignore[attr-defined]
    t.start()
    return t


def start_processor(
    settings: Settings, workdir: Path, *extra: str, name: str = "processor", timeout: float = 120
) -> ManagedProcess:
    """``iotcast process`` as a child process, ready once its /metrics answers."""
    port = free_port()
    argv = [
        IOTCAST,
        "process",
        "--endpoint-url",
        str(settings.endpoint_url),
        "--region",
        settings.region,
        "--stream",
        settings.stream,
        "--bucket",
        settings.bucket,
        "--app",
        settings.app,
        "--metrics-port",
        str(port),
        *extra,
    ]
    if settings.kinesis_endpoint_url:
        argv += ["--kinesis-endpoint-url", settings.kinesis_endpoint_url]
    if settings.predictions_stream:
        argv += []
    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        IOTCAST_PREDICTIONS_STREAM=settings.predictions_stream,
    )
    proc = ManagedProcess(name, argv, port, workdir / f"{name}-{time.time_ns()}.log", env=env)
    return proc.start(ready=lambda: port_in_use(port), timeout=timeout)


def scrape(proc: ManagedProcess) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{proc.port}/metrics", timeout=10) as r:
        return r.read().decode()


_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")


def metric_values(text: str, name: str) -> dict[str, float]:
    """``{labels: value}`` of one metric in a Prometheus exposition."""
    out = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match and match.group(1) == name:
            out[match.group(2) or ""] = float(match.group(3))
    return out


def metric_sum(proc: ManagedProcess, name: str) -> float:
    try:
        return sum(metric_values(scrape(proc), name).values())
    except OSError:
        return 0.0


def manifests(settings: Settings) -> dict[str, ShardManifest]:
    s3 = boto3.client("s3", **settings.boto_kwargs())
    store = CheckpointStore(s3, settings.bucket, settings.app, settings.hmac_key)
    out = {}
    prefix = f"checkpoints/{settings.app}/"
    for obj in s3.list_objects_v2(Bucket=settings.bucket, Prefix=prefix).get("Contents", []):
        shard = obj["Key"][len(prefix) :].split("/")[0]
        manifest = store.load_shard_manifest(shard)
        if manifest is not None:
            out[shard] = manifest
    return out


def device_samples(settings: Settings) -> dict[str, int]:
    """Samples per device in the newest manifests (a device in several shards: the child wins)."""
    samples: dict[str, int] = {}
    for manifest in manifests(settings).values():
        for device, entry in manifest.devices.items():
            samples[device] = max(samples.get(device, 0), entry.samples)
    return samples


def load_models(settings: Settings) -> dict[str, Any]:
    """The newest checkpointed DeviceModels of every device (highest sample count)."""
    s3 = boto3.client("s3", **settings.boto_kwargs())
    store = CheckpointStore(s3, settings.bucket, settings.app, settings.hmac_key)
    best: dict[str, Any] = {}
    for manifest in manifests(settings).values():
        for device, entry in manifest.devices.items():
            if device not in best or entry.samples > best[device][0].samples:
                best[device] = (entry, pickle.loads(store.load_device(device, entry)))
    return {d: models for d, (_, models) in best.items()}


def reference(readings: Iterable[Any], catalog: Any, task: Any, models: str) -> dict[str, Any]:
    """DeviceModels trained once, uninterrupted, on the readings in stream order."""
    from online_models.device import DeviceModels

    out: dict[str, Any] = {}
    for r in readings:
        dm = out.get(r.device)
        if dm is None:
            dm = out[r.device] = DeviceModels(r.device, catalog, task, models=models)
        dm.step(r)
    return out


def same_predictions(a: Any, b: Any, probe: list[Any]) -> bool:
    """Step copies of both model sets through ``probe``: identical predictions and scores?"""
    a, b = copy.deepcopy(a), copy.deepcopy(b)
    for r in probe:
        ra, rb = a.step(r), b.step(r)
        if ra.status != rb.status or ra.predictions != rb.predictions or ra.scores != rb.scores:
            return False
    return True


def wait_for(condition: Any, timeout: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")

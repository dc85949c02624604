"""What the tests share: settings on their servers, ``iotcast`` children, Kinesis and S3,
metrics, checkpoints read back, and waiting.

- :func:`settings_on`: settings on a moto server (and kinesalite, and a broker), names
  unique to a test;
- :func:`iotcast_argv`, :func:`start_bridge`, :func:`start_processor`,
  :func:`operator_argv`, :func:`processor_flags`: the command lines of the bridge,
  the processor and the operator commands, and those children started and
  waited for (their command line and environment are the shell's own:
  :func:`iotcast.cli.command_line`, :func:`iotcast.cli.local_env`);
- :func:`create_stream`, :func:`put_records`, ...: the stream and the bucket;
- :func:`manifests`, :func:`device_samples`, :func:`load_models`, :func:`reference`:
  what the processors checkpointed, and what they had to learn.

The servers themselves (mosquitto, moto, kinesalite, Prometheus) start through
:mod:`iotcast.stack`, as fixtures in ``conftest.py``.

>>> metric_values('a_total{shard="s0"} 3.0\\na_total{shard="s1"} 4.0\\n', "a_total")
{'shard="s0"': 3.0, 'shard="s1"': 4.0}
>>> processor_flags("persistence", checkpoint_every=300)[:4]
('--models', 'persistence', '--horizons', '0,60')
"""

from __future__ import annotations

import contextlib
import copy
import re
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from iotcast.cli import command_line, connection_flags, local_env
from iotcast.settings import Settings
from iotcast.stack import ManagedProcess, free_port, port_in_use
from stream.checkpoint import CheckpointStore, ShardManifest
from stream.records import decode_records
from telemetry.reading import Reading, encode

IOTCAST = str(Path(sys.executable).parent / "iotcast")


# ------------------------------------------------------------------ settings
def settings_on(
    moto_url: str,
    *,
    kinesis_url: str | None = None,
    mqtt_url: str | None = None,
    unique: str | None = None,
) -> Settings:
    """Settings pointing at a moto server (Kinesis too unless ``kinesis_url``, kinesalite,
    is given) and a broker, with names unique to a test."""
    unique = unique or uuid.uuid4().hex[:10]
    return Settings.of(
        endpoint_url=moto_url,
        endpoints={"kinesis": kinesis_url} if kinesis_url else None,
        region="us-east-1",
        stream=f"telemetry-{unique}",
        predictions_stream=f"predictions-{unique}",
        bucket=f"iotcast-{unique}",
        app=f"app-{unique}",
        mqtt_url=mqtt_url,
    )


# ------------------------------------------------------- iotcast children
def iotcast_argv(
    settings: Settings, command: str, *extra: str, program: Sequence[str] = (IOTCAST,)
) -> list[str]:
    """``iotcast <command> <extra>`` pointed at ``settings``' components."""
    return command_line(settings, command, *extra, program=program)


@contextlib.contextmanager
def endpoints_env(settings: Settings) -> Iterator[None]:
    """This process's environment with ``settings``' per-service endpoints
    (``AWS_ENDPOINT_URL_KINESIS``, ...) for the block: what :func:`iotcast.cli.local_env`
    gives a child, for a command run in this process (``iotcast.cli.main``)."""
    import os

    names = {f"AWS_ENDPOINT_URL_{s.upper()}": url for s, url in settings.endpoints.items()}
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(names)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def operator_argv(settings: Settings, *argv: str) -> list[str]:
    """An operator command (``status ...``, ``models <action> ...``) with the flags that point
    it at ``settings``' stream, bucket and group (after the action, where they may stand)."""
    common = connection_flags(settings)
    head = 2 if argv[0] == "models" else 1
    return [*argv[:head], *common, *argv[head:]]


def processor_flags(
    models: str,
    horizons: Sequence[int] = (0, 60),
    *,
    checkpoint_every: int | None = None,
    checkpoint_seconds: float = 1,
    session_timeout: float | None = 3,
    heartbeat: float | None = 1,
    shard_refresh: float | None = None,
    predictions: str = "none",
) -> tuple[str, ...]:
    """``iotcast process`` flags for a test: few models and horizons, frequent checkpoints,
    short sessions (a crashed owner's shards are taken over within seconds)."""
    flags = ["--models", models, "--horizons", ",".join(map(str, horizons))]
    flags += ["--predictions", predictions, "--checkpoint-seconds", f"{checkpoint_seconds:g}"]
    for flag, value in (
        ("--checkpoint-every", checkpoint_every),
        ("--session-timeout", session_timeout),
        ("--heartbeat", heartbeat),
        ("--shard-refresh", shard_refresh),
    ):
        if value is not None:
            flags += [flag, f"{value:g}"]
    return tuple(flags)


def start_iotcast(
    settings: Settings,
    workdir: Path,
    command: str,
    *extra: str,
    name: str,
    program: Sequence[str] = (IOTCAST,),
    ready: Callable[[ManagedProcess], bool] | None = None,
    log: Path | None = None,
    timeout: float = 120,
) -> ManagedProcess:
    """``iotcast <command>`` as a child with its /metrics on a free port, started and ready
    (by default: once the port answers)."""
    port = free_port()
    argv = iotcast_argv(settings, command, "--metrics-port", str(port), *extra, program=program)
    log = log or workdir / f"{name}-{time.time_ns()}.log"
    proc = ManagedProcess(name, argv, port, log, env=local_env(settings))
    check = (lambda: ready(proc)) if ready else (lambda: port_in_use(port))
    return proc.start(ready=check, timeout=timeout)


def start_processor(
    settings: Settings, workdir: Path, *extra: str, name: str = "processor", **kwargs: Any
) -> ManagedProcess:
    """``iotcast process`` as one child process (``--workers 1`` unless ``extra`` says
    otherwise), ready once its /metrics answers."""
    return start_iotcast(
        settings, workdir, "process", "--workers", "1", *extra, name=name, **kwargs
    )


def start_bridge(
    settings: Settings, workdir: Path, *extra: str, name: str = "bridge", **kwargs: Any
) -> ManagedProcess:
    """``iotcast bridge`` as a child process (default: ready once its /metrics answers)."""
    kwargs.setdefault("timeout", 90)
    return start_iotcast(settings, workdir, "bridge", *extra, name=name, **kwargs)


def subscriptions(log: Path) -> int:
    """How often the bridge logging to ``log`` has subscribed or resumed its MQTT session
    (a restarted bridge is ready once the count grows)."""
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return 0
    return text.count("MQTT: subscribed") + text.count("MQTT: resumed session")


# ------------------------------------------------------------ Kinesis and S3
def items_of(readings: Iterable[Reading]) -> list[tuple[bytes, str]]:
    """Kinesis records (data, partition key) of readings, as the bridge writes them."""
    return [(encode(r), r.device) for r in readings]


def stream_records(settings: Settings, name: str) -> list[bytes]:
    """Every Kinesis record of stream ``name``, each shard from its start."""
    kinesis = settings.client("kinesis")
    out: list[bytes] = []
    for shard in kinesis.list_shards(StreamName=name)["Shards"]:
        it = kinesis.get_shard_iterator(
            StreamName=name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while it:
            resp = kinesis.get_records(ShardIterator=it, Limit=10_000)
            out += [r["Data"] for r in resp["Records"]]
            if not resp["Records"]:
                break
            it = resp.get("NextShardIterator")
    return out


def stream_outputs(settings: Settings, name: str) -> list[dict[str, Any]]:
    """The output records of stream ``name``, unpacked (``stream.records.decode_records``)."""
    return [d for data in stream_records(settings, name) for d in decode_records(data)]


def create_stream(settings: Settings, shards: int, name: str | None = None) -> None:
    kinesis = settings.client("kinesis")
    kinesis.create_stream(StreamName=name or settings.stream, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(
        StreamName=name or settings.stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100}
    )


def create_bucket(settings: Settings) -> None:
    settings.client("s3").create_bucket(Bucket=settings.bucket)


def create_resources(settings: Settings, shards: int) -> None:
    """The telemetry stream (``shards`` shards) and the bucket of ``settings``."""
    create_stream(settings, shards)
    create_bucket(settings)


def put_records(settings: Settings, items: list[tuple[bytes, str]], *, pause: float = 0.0) -> None:
    """PutRecords in order, 500 at a time, retrying refused records until all are in."""
    kinesis = settings.client("kinesis")
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


# ------------------------------------------------------------------- metrics
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


# --------------------------------------------------------------- checkpoints
def manifests(settings: Settings) -> dict[str, ShardManifest]:
    s3 = settings.client("s3")
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
    s3 = settings.client("s3")
    store = CheckpointStore(s3, settings.bucket, settings.app, settings.hmac_key)
    best: dict[str, Any] = {}
    for manifest in manifests(settings).values():
        for device, entry in manifest.devices.items():
            if device not in best or entry.samples > best[device][0].samples:
                best[device] = (entry, store.load_models(device, entry))
    return {d: models for d, (_, models) in best.items()}


def reference(readings: Iterable[Any], catalog: Any, task: Any, models: str) -> dict[str, Any]:
    """DeviceModels trained once, uninterrupted, on the readings in stream order (with their
    anomaly watch, as the processor runs them)."""
    from online_models.device import DeviceModels

    out: dict[str, Any] = {}
    for r in readings:
        dm = out.get(r.device)
        if dm is None:
            dm = out[r.device] = DeviceModels(
                r.device, catalog, task, models=models, anomalies=True
            )
        dm.step(r)
    return out


def learned_counts(readings: Iterable[Any], catalog: Any, task: Any, models: str) -> dict[str, int]:
    """Readings each device takes (learns, or holds back as anomalous) when trained
    uninterrupted on ``readings`` in stream order: its manifest's samples."""
    return {d: dm.n_taken for d, dm in reference(readings, catalog, task, models).items()}


def same_predictions(a: Any, b: Any, probe: list[Any]) -> bool:
    """Step copies of both model sets through ``probe``: identical predictions and scores?"""
    a, b = copy.deepcopy(a), copy.deepcopy(b)
    for r in probe:
        ra, rb = a.step(r), b.step(r)
        if ra.status != rb.status or ra.predictions != rb.predictions or ra.scores != rb.scores:
            return False
    return True


def wait_checkpointed(settings: Settings, want: dict[str, int], timeout: float, what: str) -> None:
    """Until the newest manifests hold ``want`` samples per device (and no other device)."""
    wait_for(lambda: device_samples(settings) == want, timeout, f"{what} ({want})")


@contextlib.contextmanager
def stops_cleanly(proc: ManagedProcess) -> Iterator[ManagedProcess]:
    """``proc`` for the block; then SIGTERM, and it must exit 0 within 30 s (log tail if not)."""
    try:
        yield proc
    finally:
        assert proc.stop(30) == 0, proc.log_tail()


# ------------------------------------------------------------------- waiting
def wait_for(condition: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll ``condition()`` every ``interval`` seconds until it is truthy, and return it; after
    ``timeout`` seconds fail, saying what was waited for."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# ------------------------------------------------------------ S3 requests
S3_WRITES = frozenset(
    {"PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"}
)


class S3Calls:
    """Every S3 operation a real client sends, with its parameters (botocore's event hooks)."""

    def __init__(self, client: Any) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []
        client.meta.events.register("provide-client-params.s3.*", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.seen.append((model.name, dict(params)))

    def names(self) -> list[str]:
        return [name for name, _ in self.seen]

    def writes(self) -> list[str]:
        return [n for n in self.names() if n in S3_WRITES]

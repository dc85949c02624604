"""The live fleet for the page: devices and champions from the S3 manifests, what happened
to a device today, and the operator's promote and rollback.

:func:`fleet` reads the shard manifests through :class:`stream.registry.ModelRegistry`,
as ``iotcast status`` and ``iotcast models list`` do. :func:`device_events` reads a
device's events (first reading, promotions, drifts, model resets, gone quiet) through
:func:`stream.events.read_events`, as ``iotcast status --device`` does. :func:`operator_command` runs
``iotcast models promote|rollback`` itself, as a child process with the page's
settings: the very command an operator types (its checks, the command written under
``control/<app>/commands/``, the wait for the processors' acknowledgements, its
output and exit status), nothing re-implemented here.

>>> from iotcast.settings import Settings
>>> argv = operator_argv(Settings(), "promote", "d1", "linear", "--reason", "r")
>>> argv[argv.index("models"):argv.index("models") + 4]
['models', 'promote', 'd1', 'linear']
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from iotcast.settings import Settings
from online_models.records import ModelAtHorizon

__all__ = [
    "CommandResult",
    "DeviceEvents",
    "Fleet",
    "device_events",
    "fleet",
    "operator_argv",
    "operator_command",
]


@dataclass
class Fleet:
    """Devices with their current checkpoint (``rows``), or why none could be read."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    where: str = ""
    # the batch model: current version, its shadow verdict and last steps (None: none yet)
    batch: dict[str, Any] | None = None


def fleet(settings: Settings, timeout: float = 3.0) -> Fleet:
    """Every device the shard manifests name: shard, version, samples, champion per horizon,
    and the models it runs (``promotable``)."""
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    from stream.batch_registry import BatchRegistry, S3Objects
    from stream.checkpoint import CheckpointStore
    from stream.registry import ModelRegistry

    where = f"s3://{settings.bucket} ({settings.endpoint_url or 'AWS'})"
    config = Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1})
    try:
        s3 = _s3(settings, config)
        registry = ModelRegistry(
            CheckpointStore(s3, settings.bucket, settings.app, settings.hmac_key)
        )
        current = registry.current()
        batch = BatchRegistry(S3Objects(s3, settings.bucket), settings.app).summary()
    except (BotoCoreError, ClientError, OSError, ValueError) as exc:
        return Fleet(error=f"{type(exc).__name__}: {exc}"[:300], where=where)
    rows = []
    for device, (shard, entry) in sorted(current.items()):
        champion = entry.metrics.get("champion", {})
        models = sorted({ModelAtHorizon.parse(k).model for k in entry.metrics.get("models", {})})
        rows.append(
            {
                "device": device,
                "shard": shard,
                "version": entry.version,
                "samples": entry.samples,
                "champion": {int(h): m for h, m in champion.items()},
                "models": models,
            }
        )
    return Fleet(rows=rows, where=where, batch=batch)


@dataclass
class DeviceEvents:
    """A device's events of the period, oldest first (``rows``: the records of
    :mod:`stream.events`), or why none could be read."""

    device: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    where: str = ""


def device_events(
    settings: Settings, device: str, days: int = 1, timeout: float = 3.0
) -> DeviceEvents:
    """What happened to ``device`` in the last ``days`` days (today, UTC, included), as the
    processors recorded it in S3 with their checkpoints; repeats of a replay dropped."""
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    from stream.events import read_events

    where = f"s3://{settings.bucket}/events/{settings.app}/"
    config = Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1})
    try:
        s3 = _s3(settings, config)
        rows = read_events(s3, settings.bucket, settings.app, days=days, device=device)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NoSuchBucket":
            return DeviceEvents(device, where=where)  # no checkpoint yet: nothing happened
        return DeviceEvents(device, error=f"{type(exc).__name__}: {exc}"[:300], where=where)
    except (BotoCoreError, OSError, ValueError) as exc:
        return DeviceEvents(device, error=f"{type(exc).__name__}: {exc}"[:300], where=where)
    rows.sort(key=lambda e: (str(e.get("at", "")), e.get("ts") or 0.0))
    return DeviceEvents(device, rows=rows, where=where)


def _s3(settings: Settings, config: Any) -> Any:
    if hasattr(settings, "client"):  # settings with per-service endpoints
        return settings.client("s3", config=config)
    import boto3

    return boto3.client("s3", **settings.boto_kwargs(), config=config)


def operator_argv(settings: Settings, action: str, *args: str) -> list[str]:
    """``iotcast models <action> <args>`` pointed at ``settings``' bucket and application."""
    flags = ["--region", settings.region, "--bucket", settings.bucket, "--app", settings.app]
    if settings.endpoint_url:
        flags = ["--endpoint-url", settings.endpoint_url, *flags]
    if settings.models_file:
        flags += ["--models-file", settings.models_file]
    return [sys.executable, "-m", "iotcast.cli", "models", action, *args, *flags]


@dataclass
class CommandResult:
    argv: list[str]
    code: int
    output: str


def operator_command(
    settings: Settings, action: str, *args: str, timeout: float = 60.0
) -> CommandResult:
    """Run ``iotcast models promote|rollback ...`` and return its exit status and output."""
    if action not in ("promote", "rollback"):
        raise ValueError(f"not an operator action: {action!r}")
    argv = operator_argv(settings, action, *args)
    env = dict(os.environ)
    if settings.hmac_key:  # in the environment, never on a command line
        env["IOTCAST_HMAC_KEY"] = settings.hmac_key
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return CommandResult(argv, 124, f"no answer within {timeout:.0f} s")
    return CommandResult(argv, done.returncode, (done.stdout + done.stderr).strip())

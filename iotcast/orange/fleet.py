"""The live fleet for the Fleet widget: every device's figures from the S3 manifests.

:func:`fleet_frame` reads the shard manifests through
:class:`stream.registry.ModelRegistry`, as ``iotcast models list`` and the analysis page
do, and lists, per device, model and horizon: the shard, version and samples learned,
whether the model is the champion, and the figures the manifest keeps (n, MAE, RMSE,
rolling MAE).  Promotion goes through :func:`iotcast.ui.fleet.operator_command`: the
very ``iotcast models promote`` an operator types, as a child process.

>>> from telemetry.reading import SENSORS
>>> rows = frame_rows("d1", "shardId-0", 3, 1200, {"champion": {"60": "linear"},
...     "models": {"linear@60": {"n": 10, "mae": 0.1, "rmse": 0.2, "rolling_mae": 0.09},
...                "persistence@60": {"n": 10, "mae": 0.2}}})
>>> [(r["model"], r["champion"], r["rolling_mae"]) for r in rows]
[('linear', True, 0.09), ('persistence', False, None)]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from iotcast.settings import Settings

__all__ = ["COLUMNS", "FleetFigures", "fleet_frame", "frame_rows"]

COLUMNS = [
    "device",
    "shard",
    "version",
    "samples",
    "model",
    "horizon",
    "champion",
    "n",
    "mae",
    "rmse",
    "rolling_mae",
]


@dataclass
class FleetFigures:
    """The fleet's figures (``frame``), or why none could be read (``error``)."""

    frame: pd.DataFrame
    error: str = ""
    where: str = ""


def frame_rows(
    device: str, shard: str, version: int, samples: int, metrics: Mapping[str, object]
) -> list[dict[str, object]]:
    """One row per ``model@horizon`` a device's manifest entry holds."""
    champion = metrics.get("champion", {})
    models = metrics.get("models", {})
    assert isinstance(champion, Mapping) and isinstance(models, Mapping)
    rows = []
    for key, figures in sorted(models.items()):
        model, _, h = str(key).rpartition("@")
        rows.append(
            {
                "device": device,
                "shard": shard,
                "version": version,
                "samples": samples,
                "model": model,
                "horizon": int(h),
                "champion": champion.get(h) == model,
                **{k: figures.get(k) for k in ("n", "mae", "rmse", "rolling_mae")},
            }
        )
    return rows


def fleet_frame(settings: Settings, timeout: float = 5.0) -> FleetFigures:
    """Every device the shard manifests name, with its models' figures by horizon."""
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    from stream.checkpoint import CheckpointStore
    from stream.registry import ModelRegistry

    where = f"s3://{settings.bucket}/ ({settings.endpoint('s3') or 'AWS'}), app {settings.app}"
    config = Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1})
    try:
        s3 = settings.client("s3", config=config)
        store = CheckpointStore(s3, settings.bucket, settings.app, settings.hmac_key)
        current = ModelRegistry(store).current()
    except (BotoCoreError, ClientError, OSError, ValueError) as exc:
        return FleetFigures(
            pd.DataFrame(columns=COLUMNS), f"{type(exc).__name__}: {exc}"[:300], where
        )
    rows = []
    for device, (shard, entry) in sorted(current.items()):
        rows += frame_rows(device, shard, entry.version, entry.samples, entry.metrics)
    return FleetFigures(pd.DataFrame(rows, columns=COLUMNS), where=where)

"""The Forecast evaluation widget's work, without the widget: readings in, tables out.

:func:`run` evaluates a table of readings with :func:`online_models.analysis.analyse`,
the code ``iotcast evaluate`` runs (same defaults: the default model set plus the
reference models, horizons 0, 60, 900 and 3600 s), and :func:`tables` reshapes the
:class:`~online_models.analysis.Analysis` into the widget's three outputs:

- the **leaderboard** (:meth:`Analysis.leaderboard`): per device and horizon, every
  model and the served forecast by MAE, with the improvement over persistence;
- the **predictions**: every scored prediction (device, model, horizon, made, target
  time, predicted, actual, error, absolute error, the served forecast's interval per
  level as published with it, ``low80`` ... ``high95``, and the hour of day it was
  made at);
- the **scenarios** (:meth:`Analysis.scenarios`): the same figures by condition.

>>> from telemetry.generate import generate
>>> from iotcast.orange.tables import readings_table
>>> data = readings_table(generate(days=0.02, seed=1))
>>> out = tables(run(data, Question(horizons=(0, 60))))
>>> [v.name for v in out.leaderboard.domain.attributes][:4]
['device', 'horizon', 'model', 'baseline']
>>> {"made", "target", "error", "low80", "high95", "hour"} <= {
...     v.name for v in out.predictions.domain.attributes}
True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from Orange.data import Table

from iotcast.orange.tables import frame_table, table_readings
from online_models.analysis import Analysis, Cancelled, analyse
from online_models.catalog import Catalog, load_catalog
from online_models.evaluate import nothing_usable

__all__ = [
    "DEFAULT_HORIZONS",
    "Cancelled",
    "NothingUsable",
    "Outputs",
    "Question",
    "interval_columns",
    "predictions_frame",
    "run",
    "tables",
]

DEFAULT_HORIZONS = (0, 60, 900, 3600)  # iotcast evaluate's --task all


class NothingUsable(ValueError):
    """The evaluation learned from no reading (the message says why)."""


@dataclass(frozen=True)
class Question:
    """What to evaluate: the target, the horizons (seconds, 0 the nowcast), the models
    (``default``, ``all`` or names), the reference models, every scored prediction."""

    target: str = "temp"
    horizons: tuple[int, ...] = DEFAULT_HORIZONS
    models: str | tuple[str, ...] = "default"
    references: bool = True
    predictions: bool = True

    def models_arg(self, catalog: Catalog) -> str:
        """``default`` when the default set is what was picked (as ``iotcast evaluate``
        takes it), else the names."""
        if isinstance(self.models, str):
            return self.models
        if set(self.models) == set(catalog.select("default").names):
            return "default"
        return ",".join(self.models)


@dataclass
class Outputs:
    leaderboard: Table
    predictions: Table | None
    scenarios: Table
    analysis: Analysis


def run(
    data: Table,
    q: Question,
    catalog: Catalog | None = None,
    progress: Callable[[int], None] | None = None,
) -> Analysis:
    """Evaluate the readings of ``data`` (in row order); ``progress(rows)`` may raise
    :class:`Cancelled`.  Raises :class:`~iotcast.orange.tables.TableError` for a table
    without readings and :class:`NothingUsable` when no reading could be learned from."""
    catalog = catalog or load_catalog()
    readings = list(table_readings(data))
    devices = sorted({r.device for r in readings}) if q.predictions else None
    a = analyse(
        readings,
        target=q.target,
        horizons=q.horizons,
        models=q.models_arg(catalog),
        references=q.references,
        devices=devices,
        catalog=catalog,
        predictions=q.predictions,
        progress=progress,
    )
    problem = nothing_usable(a.result)
    if problem is not None:
        raise NothingUsable(problem)
    return a


def _horizon_order(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(horizon=df.horizon.astype(int))


def interval_columns(p: pd.DataFrame) -> list[str]:
    """The interval columns of a predictions frame, in level order (``low80``,
    ``high80``, ``low95``, ``high95`` for the default levels)."""
    return [c for c in p.columns if c.startswith(("low", "high"))]


def predictions_frame(p: pd.DataFrame) -> pd.DataFrame:
    """The scored predictions with their error, the served forecast's interval (as
    published with it: missing for the other models and in the band's warm-up) and the
    hour (UTC) they were made at."""
    made = p.made_ts.to_numpy(dtype=float)
    hours = (np.floor(made % 86_400.0 / 3600.0)).astype(int)
    bounds = {c: p[c].to_numpy(dtype=float, na_value=np.nan) for c in interval_columns(p)}
    return pd.DataFrame(
        {
            "device": p.device.astype(str),
            "model": p.model.astype(str),
            "horizon": p.horizon.astype(int),
            "made": made,
            "target": p.target_ts.to_numpy(dtype=float),
            "predicted": p.predicted.to_numpy(dtype=float),
            "actual": p.actual.to_numpy(dtype=float),
            "error": (p.actual - p.predicted).to_numpy(dtype=float),
            "abs_error": (p.actual - p.predicted).abs().to_numpy(dtype=float),
            **bounds,
            "hour": [f"{h:02d}" for h in hours],
        }
    )


def tables(a: Analysis) -> Outputs:
    """The three output tables of an analysis (predictions only when it kept them)."""
    board = frame_table(
        _horizon_order(a.leaderboard()),
        discrete=("device", "horizon", "model"),
        name="leaderboard",
    )
    predictions = None
    if a.predictions is not None:
        predictions = frame_table(
            predictions_frame(a.predictions),
            discrete=("device", "model", "horizon", "hour"),
            times=("made", "target"),
            name="predictions",
        )
    scenarios = frame_table(
        _horizon_order(a.scenarios()),
        discrete=("device", "model", "horizon", "scenario"),
        name="scenarios",
    )
    return Outputs(board, predictions, scenarios, a)

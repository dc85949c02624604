"""Errors by hour of day: the evaluation's ``hour_HH`` groups as a table.

Used by the report's conditions section and by :class:`online_models.analysis.Analysis`.
"""

from __future__ import annotations

import pandas as pd

from online_models.evaluate import EvalResult

__all__ = ["hour_errors"]


def hour_errors(res: EvalResult, pooled: bool = False) -> pd.DataFrame:
    """MAE by hour of day (UTC) of the prediction's making, per device, model and horizon;
    ``pooled``: all devices together (each device's scores counted once each). Read from
    the evaluation's ``hour_HH`` groups: bounded, whatever the file's length.

    >>> from telemetry.generate import generate
    >>> from online_models.catalog import load_catalog
    >>> from online_models.config import TaskConfig
    >>> from online_models.evaluate import prequential
    >>> res = prequential(generate(days=0.05, seed=1), load_catalog(), TaskConfig(horizons=(60,)))
    >>> h = hour_errors(res, pooled=True)
    >>> list(h.columns), int(h.n.sum()) == sum(g.n for k, g in res.groups.items() if k[3].startswith("hour_"))
    (['model', 'horizon', 'hour', 'n', 'mae'], True)
    """
    rows = [
        {"device": d, "model": m, "horizon": h, "hour": int(s[5:]), "n": g.n, "sum_abs": g.sum_abs}
        for (d, m, h, s), g in res.groups.items()
        if s.startswith("hour_")
    ]
    df = pd.DataFrame(rows, columns=["device", "model", "horizon", "hour", "n", "sum_abs"])
    keys = ["model", "horizon", "hour"] if pooled else ["device", "model", "horizon", "hour"]
    out = df.groupby(keys, as_index=False)[["n", "sum_abs"]].sum()
    out["mae"] = out.sum_abs / out.n
    return out.drop(columns="sum_abs").sort_values(keys).reset_index(drop=True)

"""The offline evaluation as pandas DataFrames: the notebook's API, and the analysis page's.

:func:`analyse` runs :func:`online_models.evaluate.prequential`, the very code
``iotcast evaluate`` runs (same defaults: every horizon of ``--task all``, the
default model set, the reference models added), over a telemetry CSV file or
any readings, and returns an :class:`Analysis`: the raw
:class:`~online_models.evaluate.EvalResult` and its figures as DataFrames.

- :meth:`Analysis.figures`: MAE, RMSE, R², bias per device, model and horizon
  (``served``: what the processor would have published), exactly the ``error``
  rows of ``iotcast evaluate``'s ``metrics.csv``;
- :meth:`Analysis.leaderboard`: the same, ranked, with the improvement over
  persistence in percent and the best model marked;
- :meth:`Analysis.scenarios`, :meth:`Analysis.by_hour`: by condition (day/night,
  light, motion, after a gap, after a drift) and by hour of day;
- :meth:`Analysis.series`, :meth:`Analysis.rolling`: actual against predicted
  and the rolling error over time (one point per 5 minutes per device);
- :attr:`Analysis.predictions`: every scored prediction of the chosen devices
  (``predictions=True``), one row each;
- :meth:`Analysis.write_report`: ``report.html``, ``report.md``, ``metrics.csv``
  as ``iotcast evaluate --out`` writes them.

In a notebook:

>>> from online_models.analysis import analyse
>>> from telemetry.generate import generate
>>> a = analyse(generate(days=0.1, seed=1), target="humidity", horizons=(900,),
...             devices=["b8:27:eb:bf:9d:51"], predictions=True)
>>> board = a.leaderboard()
>>> list(board.columns)
['device', 'horizon', 'model', 'baseline', 'n', 'mae', 'rmse', 'vs_persistence_pct', 'best']
>>> served = board[board.model == "served"].iloc[0]
>>> bool(served.mae == a.result.figure("b8:27:eb:bf:9d:51", "served", 900)["mae"])
True
>>> p = a.predictions
>>> {"persistence", "served"} <= set(p.model) <= {*a.result.models, "served"}
True
>>> bool((p.target_ts - p.made_ts >= 900).all())
True

Figures are computed once by the evaluation's own accumulators; the frames only
reshape them, so memory stays bounded whatever the file's length (the
predictions frame holds every scored prediction: ask for it on the devices you
look at).
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import cast

import pandas as pd

from online_models.baselines import BASELINES
from online_models.catalog import Catalog, load_catalog
from online_models.config import TaskConfig
from online_models.evaluate import EvalResult, prequential
from online_models.records import SERVED
from online_models.report.hours import hour_errors
from telemetry.csvfile import BadRows, PathOrFile, read_csv
from telemetry.reading import Reading

__all__ = [
    "Analysis",
    "Cancelled",
    "PROGRESS_EVERY",
    "analyse",
    "hour_errors",
    "readings_of",
]

PROGRESS_EVERY = 2000  # rows read between two calls of ``progress``


class Cancelled(Exception):
    """Raised by a ``progress`` callback to stop a long run (the page's Cancel button)."""


Source = str | os.PathLike[str] | io.IOBase | Iterable[Reading]


def readings_of(
    source: Source,
    *,
    limit: int | None = None,
    devices: Iterable[str] | None = None,
    bad_rows: BadRows | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[Reading]:
    """The readings of a CSV path, an open file or an iterable of readings: the first
    ``limit`` rows, then only ``devices``' (``None``: all); bad rows go to ``bad_rows``;
    ``progress(rows)`` every :data:`PROGRESS_EVERY` rows read (it may raise :class:`Cancelled`).

    >>> from telemetry.generate import generate
    >>> rows = list(readings_of(generate(days=0.01, seed=1), limit=100, devices=["b8:27:eb:bf:9d:51"]))
    >>> 0 < len(rows) < 100, {r.device for r in rows}
    (True, {'b8:27:eb:bf:9d:51'})
    """
    if isinstance(source, str | os.PathLike | io.IOBase):
        # an open file is a text one (``io.IOBase`` is what isinstance can tell)
        it: Iterable[Reading] = read_csv(cast("PathOrFile", source), on_bad_row=bad_rows)
    else:
        it = source
    if limit is not None:
        it = islice(it, limit)
    wanted = None if devices is None else set(devices)
    n = 0
    for reading in it:
        n += 1
        if progress is not None and n % PROGRESS_EVERY == 0:
            progress(n)
        if wanted is None or reading.device in wanted:
            yield reading
    if progress is not None:
        progress(n)


def _frame(rows: Sequence[Mapping[str, object]], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns)


def _time(ts: pd.Series) -> pd.Series:
    return pd.to_datetime(ts, unit="s", utc=True)


@dataclass
class Analysis:
    """An evaluation's result and its figures as DataFrames (see the module docstring)."""

    result: EvalResult
    catalog: Catalog
    source: str = ""
    bad_rows: BadRows = field(default_factory=BadRows)
    predictions: pd.DataFrame | None = None

    @property
    def devices(self) -> list[str]:
        return sorted(self.result.devices)

    @property
    def horizons(self) -> tuple[int, ...]:
        return self.result.task.horizons

    def figures(self) -> pd.DataFrame:
        """Per device, model (``served`` last) and horizon: n, MAE, RMSE, R², bias and the
        rolling figures at the end, from the models' own accumulators (``metrics.csv``)."""
        rows = [
            {"device": d, "model": m, "horizon": h, **self.result.figure(d, m, h)}
            for d, m, h in self.result.pairs()
        ]
        cols = ["device", "model", "horizon", "n", "mae", "rmse", "r2", "bias"]
        return _frame(rows, cols + ["rolling_mae", "rolling_rmse"])

    def leaderboard(self) -> pd.DataFrame:
        """Per device and horizon, every model and the served forecast by MAE (best first):
        n, MAE, RMSE, how much lower the MAE is than persistence's (percent of it; positive
        is better) and the best model in hindsight (as the report's ★: among the models
        scored on at least 90 % as many predictions as persistence)."""
        from online_models.report.base import best_models

        f = self.figures()
        f = f[f.n > 0].copy()
        pers = f[f.model == "persistence"].set_index(["device", "horizon"]).mae
        ref = pers.reindex(pd.MultiIndex.from_frame(f[["device", "horizon"]])).to_numpy()
        f["vs_persistence_pct"] = 100.0 * (ref - f.mae.to_numpy()) / ref
        best = best_models(self.result)
        f["best"] = [
            best.get((d, h)) == m for d, h, m in zip(f.device, f.horizon, f.model, strict=True)
        ]
        f["baseline"] = f.model.isin(BASELINES)
        f = f.sort_values(["device", "horizon", "mae"], kind="stable").reset_index(drop=True)
        cols = ["device", "horizon", "model", "baseline", "n", "mae", "rmse"]
        return f[cols + ["vs_persistence_pct", "best"]]

    def _groups(self, keep: Callable[[str], bool]) -> pd.DataFrame:
        rows = [
            {
                "device": d,
                "model": m,
                "horizon": h,
                "scenario": s,
                **g.as_dict(),
                "sum_abs": g.sum_abs,
            }
            for (d, m, h, s), g in self.result.groups.items()
            if keep(s)
        ]
        cols = ["device", "model", "horizon", "scenario", "n", "mae", "rmse", "r2", "bias"]
        return _frame(rows, [*cols, "sum_abs"])

    def scenarios(self) -> pd.DataFrame:
        """Figures by the conditions at the reading a prediction was made at: ``all``,
        ``day``/``night``, ``light_on``/``light_off``, ``motion``/``no_motion``,
        ``after_gap``, ``after_first_day``, ``after_drift``, ``drift#i``."""
        df = self._groups(lambda s: not s.startswith("hour_"))
        return df.drop(columns="sum_abs").sort_values(["device", "horizon", "model", "scenario"])

    def by_hour(self, pooled: bool = False) -> pd.DataFrame:
        """MAE by hour of day (UTC) of the prediction's making (see :func:`hour_errors`)."""
        return hour_errors(self.result, pooled)

    def series(self) -> pd.DataFrame:
        """Actual against predicted over time, one point per 5 minutes per device and
        horizon: ``time`` is the forecast's target time, one row per model (``served`` too)."""
        rows = [
            {"device": d, "horizon": h, "target_ts": t, "actual": y, "model": m, "predicted": p}
            for (d, h), pts in self.result.series.items()
            for t, y, preds in pts
            for m, p in preds.items()
        ]
        cols = ["device", "horizon", "target_ts", "actual", "model", "predicted"]
        df = _frame(rows, cols)
        df.insert(2, "time", _time(df.target_ts))
        return df.sort_values(["device", "horizon", "target_ts", "model"]).reset_index(drop=True)

    def rolling(self) -> pd.DataFrame:
        """The rolling MAE of each model (and ``served``) over time, one point per 5 minutes."""
        rows = [
            {"device": d, "horizon": h, "ts": t, "model": m, "rolling_mae": v}
            for (d, h), pts in self.result.rolling.items()
            for t, per_model in pts
            for m, v in per_model.items()
        ]
        df = _frame(rows, ["device", "horizon", "ts", "model", "rolling_mae"])
        df.insert(2, "time", _time(df.ts))
        return df.sort_values(["device", "horizon", "ts", "model"]).reset_index(drop=True)

    def models(self) -> pd.DataFrame:
        """The models that ran: kind, description, baseline or not, measured cost per reading
        (µs, predict + learn at every horizon) and pickled size per device."""
        rows = []
        for name in self.result.models:
            spec = self.catalog[name]
            rows.append(
                {
                    "model": name,
                    "kind": spec.kind,
                    "description": spec.description,
                    "baseline": name in BASELINES,
                    "default": spec.default,
                    "us_per_reading": self.result.cost_us.get(name),
                    "pickled_bytes": self.result.size_bytes.get(name),
                }
            )
        cols = ["model", "kind", "description", "baseline", "default", "us_per_reading"]
        return _frame(rows, [*cols, "pickled_bytes"])

    def write_report(self, out: str | Path) -> list[Path]:
        """``report.md``, ``report.html`` (plots inline) and ``metrics.csv`` into ``out``, as
        ``iotcast evaluate --out`` writes them; returns the paths."""
        from online_models.report import write_report

        return write_report(self.result, out, source=self.source)


def analyse(
    source: Source,
    *,
    target: str = "temp",
    horizons: Iterable[int] = (0, 60, 900, 3600),
    models: str | Iterable[str] = "default",
    references: bool = True,
    devices: Iterable[str] | None = None,
    limit: int | None = None,
    drift_reset: bool = False,
    catalog: Catalog | None = None,
    predictions: bool | Iterable[tuple[str, str]] = False,
    progress: Callable[[int], None] | None = None,
) -> Analysis:
    """Evaluate prequentially as ``iotcast evaluate`` does and return an :class:`Analysis`.

    ``source``: a CSV path (the public format), an open file, or readings. ``target``,
    ``horizons`` (seconds; 0 is the nowcast), ``models`` (``default``, ``all`` or names),
    ``references`` (add the seasonal naive and the batch forest, scored, never served),
    ``limit`` (the file's first rows) and ``drift_reset`` mean what the command's flags
    mean; ``devices`` keeps only those devices' readings (each device's models see exactly
    the readings they see in a run over the whole file). ``predictions``: ``True`` keeps
    every scored prediction of ``devices``' models in :attr:`Analysis.predictions`, or
    name (device, model) pairs. ``progress(rows_read)`` is called every
    :data:`PROGRESS_EVERY` rows; raising :class:`Cancelled` from it stops the run.
    """
    catalog = catalog or load_catalog()
    task = TaskConfig(target=target, horizons=tuple(horizons), drift_reset=drift_reset)
    selected = catalog.select(models, references=references)
    pairs: list[tuple[str, str]] = []
    if predictions is True:
        if devices is None:
            raise ValueError("predictions=True needs devices=[...] (or name (device, model) pairs)")
        devices = list(devices)
        pairs = [(d, m) for d in devices for m in (*selected.names, SERVED)]
    elif predictions:
        pairs = list(predictions)
    bad = BadRows()
    readings = readings_of(source, limit=limit, devices=devices, bad_rows=bad, progress=progress)
    folder = tempfile.mkdtemp(prefix="iotcast-predictions-") if pairs else None
    try:
        res = prequential(
            readings,
            catalog,
            task,
            models=models,
            references=references,
            save_predictions=pairs,
            predictions_dir=folder,
        )
        frame = _read_predictions(Path(folder)) if folder else None
    finally:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
    name = str(source) if isinstance(source, str | os.PathLike) else getattr(source, "name", "")
    return Analysis(res, catalog, source=name, bad_rows=bad, predictions=frame)


def _read_predictions(folder: Path) -> pd.DataFrame:
    # round_trip: pandas' default parser can miss a float's last digit (the files hold repr)
    parts = [
        pd.read_csv(p, dtype={"device": str, "model": str}, float_precision="round_trip")
        for p in sorted(folder.glob("*.csv"))
    ]
    cols = ["device", "model", "horizon", "made_ts", "target_ts", "predicted", "actual"]
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
    df["time"] = _time(df.target_ts)
    return df

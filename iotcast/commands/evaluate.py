"""Prequential evaluation of the online models over a recorded CSV file, with a report.

Streams the file through the very per-device model sets the stream processor
runs (predict, score, learn, reading by reading) and writes to --out:
report.md, report.html (plots inline), metrics.csv (every figure), the PNG
plots and, with --save-predictions, every scored prediction of the chosen
device and model under predictions/. A file with no usable reading at all
(every row refused, no reading carrying the target, nothing but duplicates)
writes no report: the reasons go to stderr and the exit status is 1.

Example:

    iotcast evaluate --csv week.csv --task forecast --horizon 900 --horizon 3600 --out eval/
    iotcast evaluate --csv week.csv --models all --out eval-all/ --json

>>> import argparse
>>> p = argparse.ArgumentParser(); add_arguments(p)
>>> a = p.parse_args(["--csv", "w.csv", "--out", "o", "--task", "forecast", "--horizon", "900"])
>>> task_from_args(a).horizons
(900,)
>>> task_from_args(p.parse_args(["--csv", "w.csv", "--out", "o"])).horizons
(0, 60, 900, 3600)
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
from pathlib import Path

from iotcast.settings import ConfigError, Settings
from online_models.catalog import CatalogError, load_catalog
from online_models.config import TARGETS, TaskConfig

__all__ = ["HELP", "add_arguments", "run", "task_from_args"]

HELP = "evaluate the online models over a recorded CSV file (prequential), write a report"

log = logging.getLogger(__name__)
DEFAULT_FORECAST_HORIZONS = (60, 900, 3600)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--csv", required=True, metavar="FILE", help="readings in the public CSV format"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="directory for the report")
    parser.add_argument(
        "--task",
        choices=("nowcast", "forecast", "all"),
        default="all",
        help="nowcast (horizon 0), forecast (the --horizon values) or both (default)",
    )
    parser.add_argument(
        "--horizon",
        type=int,
        action="append",
        metavar="SECONDS",
        help="forecast horizon in seconds, repeatable (default 60, 900, 3600)",
    )
    parser.add_argument(
        "--target", choices=TARGETS, default="temp", help="sensor to predict (default temp)"
    )
    parser.add_argument(
        "--models",
        default="default",
        help="default (the cheap set the processor runs), all, or names a,b,c; the reference "
        "models (seasonal naive, batch forest) are always added unless --no-references",
    )
    parser.add_argument(
        "--no-references", action="store_true", help="do not add the reference models"
    )
    parser.add_argument(
        "--save-predictions",
        action="append",
        default=[],
        metavar="DEVICE:MODEL",
        help="write every scored prediction of DEVICE's MODEL to predictions/ (repeatable; the "
        "device id may contain ':', the model is after the last one); the served model's rows "
        "carry the interval published with each forecast (low80, high80, low95, high95)",
    )
    parser.add_argument("--limit", type=int, help="stop after this many readings")
    parser.add_argument(
        "--windows",
        metavar="FILE",
        help='labelled anomaly windows (JSON: {"anomaly_windows": [[start_ts, end_ts], ...]}, '
        'or per device {"devices": {"<device>": [...]}}): score the anomaly events against '
        "them (kind=anomaly rows of metrics.csv: windows caught, false events, delay)",
    )
    parser.add_argument(
        "--drift-reset", action="store_true", help="reset the champion's model on drift"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the headline figures as JSON")


def task_from_args(args: argparse.Namespace) -> TaskConfig:
    """The :class:`TaskConfig` the flags ask for."""
    forecast = tuple(args.horizon) if args.horizon else DEFAULT_FORECAST_HORIZONS
    if args.task == "nowcast":
        horizons: tuple[int, ...] = (0,)
    elif args.task == "forecast":
        horizons = forecast
    else:
        horizons = (0, *forecast)
    try:
        return TaskConfig(target=args.target, horizons=horizons, drift_reset=args.drift_reset)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _count_rows(path: Path) -> int:
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
    return max(n - 1, 0)


def run(settings: Settings, args: argparse.Namespace) -> int:
    from itertools import islice

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from online_models.evaluate import nothing_usable, prequential
    from online_models.report import write_report
    from telemetry.csvfile import BadRows, CsvFormatError, read_csv

    path = Path(args.csv)
    if not path.is_file():
        raise ConfigError(f"no such file: {path}")
    windows = faults = None
    if args.windows:
        from online_models.report.anomalies import load_faults, load_windows

        try:
            windows, faults = load_windows(args.windows), load_faults(args.windows)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
    task = task_from_args(args)
    try:
        catalog = load_catalog(settings.models_file)
        catalog.select(args.models)  # names checked before the long run
    except CatalogError as exc:
        raise ConfigError(str(exc)) from exc
    save = []
    for item in args.save_predictions:
        device, sep, model = item.rpartition(":")
        if not sep or not device or not model:
            raise ConfigError(f"--save-predictions wants DEVICE:MODEL, got {item!r}")
        save.append((device, model))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    total = _count_rows(path)
    if args.limit:
        total = min(total, args.limit)
    bad = BadRows()
    readings = read_csv(path, on_bad_row=bad)
    if args.limit:
        readings = islice(readings, args.limit)
    # Many small long-lived objects (pending forecasts, accumulators): collect less often.
    gc.set_threshold(50_000, 20, 100)
    show = not args.no_progress and sys.stderr.isatty()
    with Progress(
        TextColumn("evaluating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        disable=not show,
        transient=False,
    ) as progress:
        bar = progress.add_task("rows", total=total, rate="")

        def tick(n: int) -> None:
            progress.update(bar, completed=n)

        try:
            res = prequential(
                readings,
                catalog,
                task,
                models=args.models,
                references=not args.no_references,
                save_predictions=save,
                predictions_dir=out / "predictions",
                progress=tick,
            )
        except CsvFormatError as exc:
            raise ConfigError(str(exc)) from exc
        progress.update(bar, completed=res.rows)
    if bad.count:
        log.warning("skipped %d bad rows: %s", bad.count, dict(bad.by_reason))
    problem = nothing_usable(res, bad)
    if problem is not None:
        if args.json:
            print(json.dumps({"rows": res.rows, "bad_rows": bad.count, "error": problem}, indent=2))
        print(f"iotcast evaluate: {path}: {problem}", file=sys.stderr)
        return 1
    write_report(res, out, source=str(path), windows=windows, faults=faults)
    headline = _headline(res, bad.count, out)
    if args.json:
        print(json.dumps(headline, indent=2))
    else:
        _print_headline(res, headline, out)
    return 0


def _headline(res, bad_rows: int, out: Path) -> dict:
    """The figures ``--json`` prints: the served forecast against the baselines, the best model."""
    from online_models.report import best_models, headline_rows

    best = best_models(res)
    rows = []
    for scenario in ("all", "after_first_day"):
        for r in headline_rows(res, scenario):
            if r.served is None:
                continue
            b = best.get((r.device, r.horizon))
            rows.append(
                {
                    "device": r.device,
                    "horizon": r.horizon,
                    "scored_ahead_s": res.lead(r.device, r.horizon),
                    "scenario": scenario,
                    "served_mae": r.served,
                    "champion": r.champion,
                    "champion_mae": r.champion_mae,
                    **{f"{k}_mae": v for k, v in r.baselines.items()},
                    **{f"vs_{k}_percent": r.improvement(k) for k in r.baselines},
                    "best": b,
                    "best_mae": res.figure(r.device, b, r.horizon)["mae"] if b else None,
                }
            )
    return {
        "rows": res.rows,
        "bad_rows": bad_rows,
        "wall_seconds": res.wall_s,
        "rows_per_second": res.rows_per_s,
        "out": str(out),
        "resets": sum(dm.n_resets for dm in res.devices.values()),
        "served": rows,
    }


def _print_headline(res, headline: dict, out: Path) -> None:
    """Served MAE per device and horizon, and how much lower it is than each baseline (80 cols)."""
    from online_models.report.base import scored_ahead

    print(
        f"evaluated {res.rows:,} readings of {len(res.devices)} devices in {res.wall_s:.1f} s "
        f"({res.rows_per_s:,.0f} readings/s); report: {out / 'report.md'}"
    )
    print("served forecast MAE, and how much lower than each baseline's (+ is better):")
    print(
        f"  {'device':<17} {'horizon':>8} {'served':>7} {'persist.':>9} {'roll.mean':>9} {'seasonal':>9}"
    )
    for r in headline["served"]:
        if r["scenario"] != "all":
            continue
        h = r["horizon"]
        cells = [
            "-" if v is None else f"{v:+.1f}%"
            for v in (
                r[f"vs_{k}_percent"] for k in ("persistence", "rolling_mean", "seasonal_naive")
            )
        ]
        print(
            f"  {r['device'][:17]:<17} {'nowcast' if h == 0 else f'{h} s':>8} "
            f"{r['served_mae']:>7.4f} {cells[0]:>9} {cells[1]:>9} {cells[2]:>9}"
        )
    ahead: dict[int, list[float]] = {}  # horizon -> how far ahead its flagged devices scored
    for r in headline["served"]:
        lead = scored_ahead(res, r["device"], r["horizon"])
        if r["scenario"] == "all" and lead is not None:
            ahead.setdefault(r["horizon"], []).append(lead)
    for h, leads in sorted(ahead.items()):
        print(
            f"note: {h} s is shorter than the readings' interval of {len(leads)} device(s): "
            f"their forecasts were scored at the next reading, {min(leads):,.0f}"
            + (f"-{max(leads):,.0f}" if max(leads) > min(leads) + 0.5 else "")
            + " s ahead on average"
        )
    if headline["resets"]:
        print(f"models reset by the guard: {headline['resets']} (see the report's 'Model resets')")

"""``metrics.csv``: every figure of an evaluation in long form, one per row.

Columns ``kind,device,model,horizon,scenario,metric,value,level``; floats as
``repr`` (exact). Kinds: ``run``, ``device`` (its figures, and for every device that
sent a reading: ``readings``, ``sensor_<name>`` readings that carried it,
``dropped_<field>_<reason>`` and ``clipped_<field>`` values), ``error`` (model ``served`` is
the published forecast), ``best``, ``cost``, ``event``, ``reset``, and ``interval``: the
served forecast's prediction intervals (model ``served``), ``coverage`` (the fraction of
targets inside the interval published with their forecast) and ``width`` (the mean width,
in the target's unit) at each ``level`` (the only kind with one; 0.8, 0.95 by default);
with labelled windows, ``anomaly``: per device, ``windows_caught``, ``windows``,
``false_events``, ``mean_delay_s`` and ``silent_events``; with planted faults, per fault
kind (in the ``model`` column) ``planted``, ``caught`` and ``mean_delay_s``
(:mod:`online_models.report.anomalies`).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from online_models.evaluate import EvalResult
from online_models.records import SERVED
from online_models.report.anomalies import Windows, score_faults, score_windows
from online_models.report.base import best_models

__all__ = ["write_metrics_csv"]


def _rows(
    res: EvalResult,
    source: str,
    windows: Windows | None,
    faults: list[tuple[str, str, float, float]] | None = None,
) -> Iterable[tuple[object, ...]]:
    run = {
        "source": source,
        "rows": res.rows,
        "wall_seconds": res.wall_s,
        "rows_per_second": res.rows_per_s,
        "cpu_seconds": res.cpu_s,
        "rows_per_cpu_second": res.rows_per_cpu_s,
        "target": res.task.target,
    }
    for k, v in run.items():
        yield ("run", "", "", "", "", k, v)
    for status, n in sorted(res.statuses.items()):
        yield ("run", "", "", "", "", f"status_{status}", n)
    for device in sorted(res.devices):
        yield ("device", device, "", "", "", "profile", res.profiles[device])
        for k, v in res.device_figures[device].items():
            yield ("device", device, "", "", "", k, v)
        yield ("device", device, "", "", "", "checkpoint_bytes", res.checkpoint_bytes[device])
    for device in sorted(res.inputs):
        inp = res.inputs[device]
        yield ("device", device, "", "", "", "readings", inp.readings)
        for name in inp.seen():
            yield ("device", device, "", "", "", f"sensor_{name}", inp.sensors[name])
        for (name, why), n in sorted(inp.dropped.items()):
            yield ("device", device, "", "", "", f"dropped_{name}_{why}", n)
        for name, n in sorted(inp.clipped.items()):
            yield ("device", device, "", "", "", f"clipped_{name}", n)
    for device, model, h in res.pairs():
        for k, v in res.figure(device, model, h).items():
            yield ("error", device, model, h, "all", k, v)
    for (device, model, h, scenario), g in sorted(res.groups.items()):
        if scenario != "all":
            for k, v in g.as_dict().items():
                yield ("error", device, model, h, scenario, k, v)
    for (device, h), model in sorted(best_models(res).items()):
        yield ("best", device, model, h, "all", "best", 1)
    for model in res.models:
        yield ("cost", "", model, "", "", "us_per_reading", res.cost_us.get(model))
        yield ("cost", "", model, "", "", "pickled_bytes_per_device", res.size_bytes.get(model))
    for (device, kind, model, h), n in sorted(res.event_counts.items()):
        yield ("event", device, model, h, "", kind, n)
    for device in sorted(res.devices):
        for (h, model), n in sorted(res.devices[device].resets().items()):
            yield ("reset", device, model, h, "", "resets", n)
    for device in sorted(res.devices):
        for h, hz in res.devices[device].horizons.items():
            for level in hz.band.levels:
                for metric in ("coverage", "width"):
                    value = getattr(hz.band, metric)(level)
                    yield ("interval", device, SERVED, h, "all", metric, value, level)
    if windows is not None:
        scored = score_windows(res.anomalies.values(), windows, res.devices)
        for device, figures in scored.items():
            for metric, value in figures.items():
                yield ("anomaly", device, "", "", "all", metric, value)
    if faults:
        for kind, figures in score_faults(res.anomalies.values(), faults).items():
            for metric, value in figures.items():
                yield ("anomaly", "", kind, "", "all", metric, value)


def write_metrics_csv(
    res: EvalResult,
    path: Path,
    source: str = "",
    windows: Windows | None = None,
    faults: list[tuple[str, str, float, float]] | None = None,
) -> None:
    """Every figure, one per row: ``kind,device,model,horizon,scenario,metric,value``."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kind", "device", "model", "horizon", "scenario", "metric", "value", "level"])
        for row in _rows(res, source, windows, faults):
            value = row[6]
            cell = "" if value is None else repr(value) if isinstance(value, float) else value
            w.writerow([*row[:6], cell, row[7] if len(row) > 7 else ""])

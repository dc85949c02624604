"""Write an evaluation's figures: ``report.md``, ``report.html``, ``metrics.csv`` and PNG plots.

:func:`write_report` renders an :class:`~online_models.evaluate.EvalResult`
into a directory, one module per section with its plot beside it:
:mod:`~online_models.report.headline` (the run; the served forecast against
its champion and the baselines), :mod:`~online_models.report.accuracy`
(every model, rolling error, residuals), :mod:`~online_models.report.sensors`
(what each device sent: sensors, values dropped and clipped),
:mod:`~online_models.report.conditions`
(device profile, scenarios, hour of day, after drifts),
:mod:`~online_models.report.events` (promotions, drifts, model resets),
:mod:`~online_models.report.intervals` (the served forecast's intervals: coverage and
width; the anomaly events),
:mod:`~online_models.report.cost`; :mod:`~online_models.report.metrics_csv`
writes every figure in long form.

>>> from telemetry.generate import generate
>>> from online_models.catalog import load_catalog
>>> from online_models.config import TaskConfig
>>> from online_models.evaluate import prequential
>>> import tempfile, pathlib
>>> res = prequential(generate(days=0.02, seed=1), load_catalog(), TaskConfig(horizons=(0, 60)))
>>> out = pathlib.Path(tempfile.mkdtemp())
>>> paths = write_report(res, out, source="generated")
>>> sorted(p.name for p in paths)[:3]
['actual_vs_predicted.png', 'error_by_hour.png', 'events.csv']
>>> "## Accuracy per device, model and horizon" in (out / "report.md").read_text()
True
"""

from __future__ import annotations

from pathlib import Path

from online_models.evaluate import EvalResult
from online_models.report.accuracy import accuracy_section
from online_models.report.anomalies import Windows, write_events_csv
from online_models.report.base import Block, best_models, html, markdown
from online_models.report.conditions import drift_section, profile_section, scenario_section
from online_models.report.cost import cost_section
from online_models.report.events import events_section, resets_section
from online_models.report.headline import HeadlineRow, headline_rows, headline_section, run_section
from online_models.report.intervals import anomaly_section, interval_section
from online_models.report.metrics_csv import write_metrics_csv
from online_models.report.sensors import sensors_section

__all__ = [
    "SECTIONS",
    "HeadlineRow",
    "best_models",
    "headline_rows",
    "write_metrics_csv",
    "write_report",
]

SECTIONS = (
    "Run",
    "Sensors per device",
    "Headline",
    "Accuracy per device, model and horizon",
    "Prediction intervals",
    "By device profile",
    "By scenario",
    "After each detected drift",
    "Events",
    "Model resets",
    "Anomaly events",
    "Cost",
)


def write_report(
    res: EvalResult,
    out: str | Path,
    source: str = "",
    windows: Windows | None = None,
    faults: list[tuple[str, str, float, float]] | None = None,
) -> list[Path]:
    """Write report.md, report.html, metrics.csv, events.csv and the PNGs into ``out``; return
    the paths. With ``windows`` (labelled anomaly windows), metrics.csv scores the events."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    blocks: list[Block] = [("h1", f"iotcast evaluation: {res.task.target}")]
    blocks += run_section(res, source)
    blocks += sensors_section(res)
    blocks += headline_section(res, out)
    blocks += accuracy_section(res, out)
    blocks += interval_section(res)
    blocks += profile_section(res)
    blocks += scenario_section(res, out)
    blocks += drift_section(res)
    blocks += events_section(res)
    blocks += resets_section(res)
    blocks += anomaly_section(res)
    blocks += cost_section(res)
    (out / "report.md").write_text(markdown(blocks))
    (out / "report.html").write_text(html(blocks, out))
    write_metrics_csv(res, out / "metrics.csv", source, windows, faults)
    write_events_csv(res.anomalies.values(), out / "events.csv")
    images = [b[1] for b in blocks if b[0] == "img"]
    paths = ("report.md", "report.html", "metrics.csv", "events.csv", *images)
    return [out / p for p in paths]

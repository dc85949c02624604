"""`iotcast evaluate`: figures that an independent recomputation confirms, a complete report,
and models added by TOML alone."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from iotcast.cli import main
from online_models.catalog import BUILTIN, load_catalog
from online_models.config import TaskConfig
from online_models.evaluate import PLOT_STEP_S, prequential
from online_models.report import SECTIONS
from telemetry.csvfile import write_csv
from telemetry.generate import generate

DEVICE = "1c:bf:ce:15:ec:4d"
EXTRA = """
[models.slow_linear]
class = "river.linear_model.LinearRegression"
kind = "regressor"
scale = true
default = false
params = { optimizer = { class = "river.optim.SGD", params = { lr = 0.001 } }, intercept_lr = 0.001 }
description = "added by a test, no code change"
"""


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("evaluate")
    data = root / "week.csv"
    write_csv(data, generate(days=0.03, seed=1))
    models = root / "models.toml"
    models.write_text(BUILTIN.read_text() + EXTRA)
    out = root / "out"
    code = main(
        [
            "evaluate",
            "--csv",
            str(data),
            "--out",
            str(out),
            "--horizon",
            "60",
            "--models",
            "persistence,linear,slow_linear",
            "--models-file",
            str(models),
            "--save-predictions",
            f"{DEVICE}:linear",
            "--save-predictions",
            f"{DEVICE}:persistence",
            "--no-progress",
        ]
    )
    assert code == 0
    return out


def _metrics(out: Path) -> dict[tuple, float]:
    figures = {}
    with open(out / "metrics.csv") as f:
        for row in csv.DictReader(f):
            if row["kind"] == "error" and row["scenario"] == "all" and row["value"]:
                figures[(row["device"], row["model"], int(row["horizon"]), row["metric"])] = float(
                    row["value"]
                )
    return figures


def test_metrics_csv_agrees_with_an_independent_recomputation(evaluated: Path) -> None:
    figures = _metrics(evaluated)
    checked = 0
    for model in ("linear", "persistence"):
        by_h: dict[int, list[tuple[float, float]]] = defaultdict(list)
        path = evaluated / "predictions" / f"{DEVICE.replace(':', '-')}__{model}.csv"
        with open(path) as f:
            for row in csv.DictReader(f):
                assert float(row["target_ts"]) - float(row["made_ts"]) == pytest.approx(
                    int(row["horizon"])
                )
                by_h[int(row["horizon"])].append((float(row["predicted"]), float(row["actual"])))
        assert set(by_h) == {0, 60}
        for h, pairs in by_h.items():
            p, a = np.array(pairs).T
            err = a - p
            expect = {
                "n": len(err),
                "mae": np.mean(np.abs(err)),
                "rmse": np.sqrt(np.mean(err**2)),
                "bias": np.mean(err),
                "r2": 1 - np.sum(err**2) / np.sum((a - a.mean()) ** 2),
            }
            for metric, value in expect.items():
                assert figures[(DEVICE, model, h, metric)] == pytest.approx(
                    value, rel=1e-9, abs=1e-12
                ), (
                    model,
                    h,
                    metric,
                )
                checked += 1
    assert checked == 20


def test_report_has_every_section_and_plot(evaluated: Path) -> None:
    md = (evaluated / "report.md").read_text()
    for section in SECTIONS:
        assert f"## {section}" in md, section
    for title in (
        "Day vs night",
        "Light on vs off",
        "Motion",
        "after a gap",
        "After the first day",
        "drift",
    ):
        assert title in md, title
    for png in ("actual_vs_predicted.png", "rolling_mae.png", "residuals.png", "error_by_hour.png"):
        assert (evaluated / png).stat().st_size > 1000
        assert f"]({png})" in md
    html = (evaluated / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    assert "★" in md and "readings/s" in md


def test_model_added_in_toml_appears_in_the_report(evaluated: Path) -> None:
    figures = _metrics(evaluated)
    assert figures[(DEVICE, "slow_linear", 60, "n")] > 100
    assert "slow_linear" in (evaluated / "report.md").read_text()


def test_evaluation_keeps_bounded_state() -> None:
    readings = list(generate(days=0.02, seed=2))
    res = prequential(readings, load_catalog(), TaskConfig(horizons=(0, 60)), models="persistence")
    span = readings[-1].ts - readings[0].ts
    for pts in res.series.values():
        assert len(pts) <= span / PLOT_STEP_S + 2
    # per-reading conditions are forgotten once no pending forecast needs them
    assert res.rows > 1000
    assert sum(dm.horizons[60].pending.__len__() for dm in res.devices.values()) < 3 * 60


def test_a_horizon_shorter_than_the_readings_interval_says_how_far_ahead_it_was_scored(
    tmp_path: Path,
) -> None:
    """Hourly readings: a 60 s forecast is scored at the next reading, an hour ahead, and the
    report says so beside the horizon's name; a 3,600 s forecast is what its name says."""
    import math

    from online_models.report.headline import headline_section
    from telemetry.reading import Reading

    start = 1_700_000_000.0
    readings = [
        Reading(start + 3600 * i, "d", temp=20 + 4 * math.sin(2 * math.pi * i / 24))
        for i in range(24 * 3)
    ]
    res = prequential(readings, load_catalog(), TaskConfig(horizons=(60, 3600)), models="default")
    assert res.lead("d", 60) == res.lead("d", 3600) == 3600.0
    table = next(b for b in headline_section(res, tmp_path) if b[0] == "table")  # the whole run
    horizons = [row[2] for row in table[2]]
    assert horizons == ["60 s (scored 3,600 s ahead)", "3600 s"]
    from iotcast.commands.evaluate import _headline

    rows = [r for r in _headline(res, 0, tmp_path)["served"] if r["scenario"] == "all"]
    assert [(r["horizon"], r["scored_ahead_s"]) for r in rows] == [(60, 3600.0), (3600, 3600.0)]

"""The notebook API (``online_models.analysis``) and the data summary: the very figures of
``iotcast evaluate``, predictions that recompute them, and counts that agree with the models'."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from iotcast.cli import main
from online_models.analysis import Cancelled, evaluate
from online_models.data_summary import count_rows, summarize
from telemetry.csvfile import write_csv
from telemetry.generate import generate


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("analysis") / "day.csv"
    write_csv(path, generate(days=0.3, seed=5))
    return path


def metrics(out: Path) -> dict[tuple[str, str, int], float]:
    with open(out / "metrics.csv", newline="") as f:
        return {
            (r["device"], r["model"], int(r["horizon"])): float(r["value"])
            for r in csv.DictReader(f)
            if r["kind"] == "error"
            and r["scenario"] == "all"
            and r["metric"] == "mae"
            and r["value"]
        }


def test_the_api_gives_exactly_the_figures_of_iotcast_evaluate(data, tmp_path):
    args = ["--target", "humidity", "--task", "all", "--horizon", "900", "--no-progress"]
    assert main(["evaluate", "--csv", str(data), "--out", str(tmp_path), *args]) == 0
    a = evaluate(data, target="humidity", horizons=(0, 900))
    f = a.figures().dropna(subset=["mae"])
    assert {
        (d, m, h): v for d, m, h, v in zip(f.device, f.model, f.horizon, f.mae, strict=True)
    } == metrics(tmp_path)
    # one device alone: its models see the same readings, so the same figures
    device = a.devices[1]
    alone = evaluate(data, target="humidity", horizons=(0, 900), devices=[device])
    assert alone.figures().equals(
        f.__class__(a.figures()[a.figures().device == device]).reset_index(drop=True)
    )


def test_predictions_recompute_the_figures_and_frames_are_consistent(data):
    device = "b8:27:eb:bf:9d:51"
    a = evaluate(data, horizons=(900,), devices=[device], predictions=True)
    p = a.predictions
    mae = (p.actual - p.predicted).abs().groupby(p.model).mean()
    for model, value in mae.items():
        assert value == pytest.approx(a.result.figure(device, model, 900)["mae"], rel=1e-12)
    board = a.leaderboard()
    assert board.groupby(["device", "horizon"]).best.sum().eq(1).all()
    pers = board[board.model == "persistence"].mae.iloc[0]
    served = board[board.model == "served"].iloc[0]
    assert served.vs_persistence_pct == pytest.approx(100 * (pers - served.mae) / pers)
    pooled = a.by_hour(pooled=True)
    per_device = a.by_hour()
    assert pooled.n.sum() == per_device.n.sum() > 0
    assert set(a.scenarios().scenario) >= {"all", "day", "night", "light_off", "no_motion"}
    assert {"served", "persistence"} <= set(a.series().model) and len(a.rolling()) > 0


def test_a_cancelled_run_stops(data):
    def stop(n: int) -> None:
        raise Cancelled

    with pytest.raises(Cancelled):
        evaluate(data, horizons=(900,), progress=stop)


def test_the_summary_counts_what_the_models_skip(data):
    s = summarize(data, points=50)
    res = evaluate(data, horizons=(0,), models="persistence", references=False).result
    assert s.rows == res.rows == count_rows(data)
    assert int(s.devices.duplicates.sum()) == res.statuses["duplicate"]
    assert int(s.devices.late.sum()) == res.statuses["late"]
    assert int(s.devices.glitches.sum()) >= res.statuses["glitch"]
    assert (s.devices.cadence_s > 0).all() and (s.devices.span_hours > 7).all()
    assert s.sensors.groupby("device").size().max() <= 50
    assert summarize(data, limit=1000).rows == 1000

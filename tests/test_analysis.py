"""The notebook API (``online_models.analysis``) and the data summary: the very figures of
``iotcast evaluate``, predictions that recompute them, and counts that agree with the models'
and, for what the page says was left out, with ``iotcast data load``'s."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from iotcast.cli import main
from iotcast.commands.data import load_report
from iotcast.ui.workspace import Contents
from online_models.analysis import Cancelled, analyse
from online_models.data_summary import count_rows, summarize
from telemetry.csvfile import HEADER, write_csv
from telemetry.generate import generate
from tests.ui_support import T_ONLY, TH, mixed_file


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
    a = analyse(data, target="humidity", horizons=(0, 900))
    f = a.figures().dropna(subset=["mae"])
    assert {
        (d, m, h): v for d, m, h, v in zip(f.device, f.model, f.horizon, f.mae, strict=True)
    } == metrics(tmp_path)
    # one device alone: its models see the same readings, so the same figures
    device = a.devices[1]
    alone = analyse(data, target="humidity", horizons=(0, 900), devices=[device])
    assert alone.figures().equals(
        f.__class__(a.figures()[a.figures().device == device]).reset_index(drop=True)
    )


def test_predictions_recompute_the_figures_and_frames_are_consistent(data):
    device = "b8:27:eb:bf:9d:51"
    a = analyse(data, horizons=(900,), devices=[device], predictions=True)
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
        analyse(data, horizons=(900,), progress=stop)


def test_the_summary_counts_what_the_models_skip(data):
    s = summarize(data, points=50)
    res = analyse(data, horizons=(0,), models="persistence", references=False).result
    assert s.rows == res.rows == count_rows(data)
    assert int(s.devices.duplicates.sum()) == res.statuses["duplicate"]
    assert int(s.devices.late.sum()) == res.statuses["late"]
    assert int(s.devices.glitches.sum()) >= res.statuses["glitch"]
    assert (s.devices.cadence_s > 0).all() and (s.devices.span_hours > 7).all()
    assert s.sensors.groupby("device").size().max() <= 50
    assert summarize(data, limit=1000).rows == 1000


def test_what_the_page_says_was_left_out_is_what_iotcast_data_load_reports(tmp_path):
    path = mixed_file(tmp_path / "mixed.csv")
    c = Contents.read(path)
    report = load_report(str(path))
    assert c.summary.rows == report["rows"] == sum(report["devices"].values())
    assert {d: sorted(c.sensors(d)) for d in c.devices} == report["sensors"]
    notes: Counter[str] = Counter()
    for inp in c.inputs.values():
        notes.update({f"{field} {why}": n for (field, why), n in inp.dropped.items()})
        notes.update({f"{field} clipped": n for field, n in inp.clipped.items()})
    assert notes == report["fields_dropped_or_clipped"]
    assert notes == {
        "humidity wrong_type": 4,
        "humidity out_of_range": 2,
        "humidity clipped": 3,
        "temp out_of_range": 1,
    }
    assert c.summary.bad_rows.by_reason == report["bad_rows_by_reason"]
    assert report["bad_rows_by_reason"] == {"no_sensor": 2, "bad_timestamp": 1}
    # the summary's own columns agree
    d = c.summary.devices.set_index("device")
    assert (d.dropped[TH], d.clipped[TH], d.dropped[T_ONLY], d.clipped[T_ONLY]) == (7, 3, 0, 0)
    # what can be asked: humidity of one device; the nowcast only where another sensor is
    assert c.targets() == {"temp": 2, "humidity": 1} and c.targets([T_ONLY]) == {"temp": 1}
    assert c.nowcast_possible("temp", [TH]) and c.nowcast_possible("humidity", [T_ONLY, TH])
    assert not c.nowcast_possible("temp", [T_ONLY])
    assert not c.nowcast_possible("humidity", [T_ONLY])
    # the first rows only
    assert Contents.read(path, limit=100).summary.rows == 100


def test_a_file_with_no_usable_reading_reads_as_nothing_with_its_reasons(tmp_path):
    path = tmp_path / "nothing.csv"
    path.write_text(HEADER + "\n" + '"1.5945E9","a1","","","","","","",""\n' * 3)
    c = Contents.read(path)
    assert c.summary.rows == 0 and c.devices == [] and c.targets() == {}
    assert dict(c.summary.bad_rows.by_reason) == {"no_sensor": 3}

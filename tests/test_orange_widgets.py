"""The Orange add-on's Telemetry and Forecast evaluation widgets, offscreen, with Orange's
own widget test base: the generated day as a table, a malformed file shown as the
widget's error, the leaderboard equal to ``iotcast evaluate``'s figures to the last
digit, cancel, and the widgets' words in Spanish."""

from __future__ import annotations

import ast
import contextlib
import csv
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("Orange")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from Orange.data import ContinuousVariable, DiscreteVariable, TimeVariable  # noqa: E402
from Orange.widgets.tests import base  # noqa: E402

from iotcast.cli import main  # noqa: E402
from iotcast.orange.widgets.owforecast import OWForecastEvaluation  # noqa: E402
from iotcast.orange.widgets.owtelemetry import FILE, OWTelemetry  # noqa: E402
from telemetry.csvfile import HEADER, write_csv  # noqa: E402
from telemetry.generate import generate  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ADDON = ROOT / "iotcast" / "orange"
WAIT_MS = 600_000


class TelemetryWidget(base.WidgetTest):
    def setUp(self) -> None:  # the base class's checks (minimum size, messages) need one
        self.widget = self.load(days=0.01)

    def load(self, **settings) -> OWTelemetry:
        w = self.create_widget(OWTelemetry, stored_settings=settings)
        self.wait_until_finished(w, timeout=WAIT_MS)
        return w

    def test_the_generated_day_is_49600_readings_with_time_device_and_sensors(self) -> None:
        w = self.load(days=1.0, seed=1)
        table = self.get_output(w.Outputs.data, widget=w)
        assert len(table) == 49_600
        d = table.domain
        assert [v.name for v in d.attributes] == [
            "time",
            "device",
            "co",
            "humidity",
            "light",
            "lpg",
            "motion",
            "smoke",
            "temp",
        ]
        assert isinstance(d["time"], TimeVariable)
        assert isinstance(d["device"], DiscreteVariable)
        assert d["device"].values == ("00:0f:00:70:91:0a", "1c:bf:ce:15:ec:4d", "b8:27:eb:bf:9d:51")
        assert all(isinstance(d[s], ContinuousVariable) for s in ("co", "humidity", "temp"))
        assert d["light"].values == ("false", "true") and d.class_vars == ()
        assert "49,600 readings of 3 devices, 2020-07-12 00:00" in w.info_label.text()
        assert not w.Error.active

    def test_a_malformed_file_is_an_error_shown_in_the_widget(self) -> None:
        folder = Path(tempfile.mkdtemp(prefix="orange-telemetry-"))
        cases = {
            "header.csv": "a,b,c\n1,2,3\n",
            "rows.csv": HEADER + '\n"oops","d1","","","","","","","21.0"\n"1e9","",""\n',
            "binary.csv": "\x00\x01PK\x03\x04",
            "missing.csv": None,
        }
        for name, text in cases.items():
            path = folder / name
            if text is not None:
                path.write_text(text)
            w = self.load(source=FILE, path=str(path))
            assert w.Error.read_error.is_shown(), name
            assert self.get_output(w.Outputs.data, widget=w) is None, name
            shown = w.Error.read_error.formatted
            assert shown and "Traceback" not in shown, (name, shown)
        rows_error = self.load(source=FILE, path=str(folder / "rows.csv")).Error.read_error
        assert "no usable reading: 2 rows refused" in rows_error.formatted


def _evaluate_command(path: Path, out: Path) -> dict[tuple[str, str, int], dict[str, str]]:
    """``iotcast evaluate``'s figures (metrics.csv, ``error`` rows of scenario ``all``)."""
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["evaluate", "--csv", str(path), "--out", str(out), "--no-progress"]) == 0
    figures: dict[tuple[str, str, int], dict[str, str]] = {}
    with open(out / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["kind"] == "error" and row["scenario"] == "all":
                key = (row["device"], row["model"], int(row["horizon"]))
                figures.setdefault(key, {})[row["metric"]] = row["value"]
    return figures


class EvaluationWidget(base.WidgetTest):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        OWForecastEvaluation.measure_costs = False

    def setUp(self) -> None:
        self.widget = self.create_widget(OWForecastEvaluation)

    def readings(self, path: Path):
        t = self.create_widget(OWTelemetry, stored_settings={"source": FILE, "path": str(path)})
        self.wait_until_finished(t, timeout=WAIT_MS)
        return self.get_output(t.Outputs.data, widget=t)

    def test_the_leaderboard_equals_iotcast_evaluate_to_the_last_digit(self) -> None:
        folder = Path(tempfile.mkdtemp(prefix="orange-eval-"))
        path = folder / "day.csv"
        write_csv(path, generate(days=0.1, seed=5))
        command = _evaluate_command(path, folder / "out")
        w = self.create_widget(OWForecastEvaluation)
        self.send_signal(w.Inputs.data, self.readings(path), widget=w)
        self.wait_until_finished(w, timeout=WAIT_MS)
        board = self.get_output(w.Outputs.leaderboard, widget=w)
        assert board is not None and not w.Error.active
        d = board.domain
        seen = set()
        for row in board:
            key = (row["device"].value, row["model"].value, int(row["horizon"].value))
            want = command[key]
            for metric in ("n", "mae", "rmse"):
                got = float(row[metric])
                assert repr(got if metric != "n" else int(got)) == want[metric], (key, metric)
            seen.add(key)
        scored = {k for k, v in command.items() if v["n"] not in ("0", "")}
        assert seen == scored and len(seen) > 40
        assert d["best"].values == ("false", "true")
        predictions = self.get_output(w.Outputs.predictions, widget=w)
        n = sum(int(v["n"]) for v in command.values() if v["n"])
        assert len(predictions) == n
        assert w.board.rowCount() == len(board)

    def test_cancel_stops_the_run_and_says_so(self) -> None:
        from iotcast.orange.tables import readings_table

        w = self.create_widget(OWForecastEvaluation)
        self.send_signal(w.Inputs.data, readings_table(generate(days=1.0, seed=2)), widget=w)
        w.stop()
        self.wait_until_finished(w, timeout=WAIT_MS)
        assert w.Information.cancelled.is_shown()
        assert self.get_output(w.Outputs.leaderboard, widget=w) is None

    def test_a_table_without_readings_is_an_error_not_a_traceback(self) -> None:
        from Orange.data import Table

        w = self.create_widget(OWForecastEvaluation)
        self.send_signal(w.Inputs.data, Table("iris"), widget=w)
        self.wait_until_finished(w, timeout=WAIT_MS)
        assert "no time column" in w.Error.failed.formatted


def _translated_texts() -> list[str]:
    texts = []
    for path in sorted(ADDON.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "tr"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                texts.append(node.args[0].value)
    return texts


def test_every_text_the_widgets_translate_has_english_and_spanish() -> None:
    english = json.loads((ADDON / "i18n" / "English.json").read_text())
    spanish = json.loads((ADDON / "i18n" / "Spanish.json").read_text())
    assert english[:2] == ["English", "English"] and spanish[:2] == ["Español", "Spanish"]
    assert len(english) == len(spanish)
    missing = sorted(set(_translated_texts()) - set(english[2:]))
    assert missing == []
    assert all(
        es and es != en for en, es in zip(english[2:], spanish[2:], strict=True) if en != "Bucket:"
    )


def test_orange_set_to_spanish_names_the_widgets_in_spanish(tmp_path: Path) -> None:
    """Orange's language setting (``biolab.si/Orange.ini``) chooses the words, read when the
    widgets are imported, as Orange's own are."""
    (tmp_path / "biolab.si").mkdir()
    (tmp_path / "biolab.si" / "Orange.ini").write_text("[application]\nlanguage=Español\n")
    code = (
        "from iotcast.orange.widgets.owtelemetry import OWTelemetry\n"
        "from iotcast.orange.widgets.owforecast import OWForecastEvaluation\n"
        "from iotcast.orange.widgets.owfleet import OWFleet\n"
        "print(OWTelemetry.name, '|', OWForecastEvaluation.name, '|', OWFleet.name, '|',"
        " OWForecastEvaluation.Outputs.leaderboard.name)\n"
    )
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.stdout.strip() == "Telemetría | Evaluación de pronósticos | Flota | Clasificación", (
        out.stderr
    )
    env["XDG_CONFIG_HOME"] = str(tmp_path / "none")
    env["LANG"] = env["LC_ALL"] = "C.UTF-8"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.stdout.strip() == "Telemetry | Forecast Evaluation | Fleet | Leaderboard", out.stderr

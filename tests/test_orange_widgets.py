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

import numpy as np
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
        folder = Path(self.enterContext(tempfile.TemporaryDirectory(prefix="orange-telemetry-")))
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


def _evaluate_command(
    path: Path, out: Path, *args: str
) -> dict[tuple[str, str, int], dict[str, str]]:
    """``iotcast evaluate``'s figures (metrics.csv, ``error`` rows of scenario ``all``, and
    ``interval`` rows under the model ``served@<level>``)."""
    argv = ["evaluate", "--csv", str(path), "--out", str(out), "--no-progress", *args]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(argv) == 0
    figures: dict[tuple[str, str, int], dict[str, str]] = {}
    with open(out / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["kind"] in ("error", "interval") and row["scenario"] == "all":
                model = row["model"]
                if row["kind"] == "interval":
                    model += f"@{row['level']}"
                key = (row["device"], model, int(row["horizon"]))
                figures.setdefault(key, {})[row["metric"]] = row["value"]
    return figures


def _served_intervals(out: Path) -> dict[tuple[str, int, float], dict[str, str]]:
    """The served forecasts ``iotcast evaluate --save-predictions DEVICE:served`` wrote,
    with the interval published with each: (device, horizon, made) -> row."""
    rows = {}
    for path in sorted((out / "predictions").glob("*__served.csv")):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                rows[(row["device"], int(row["horizon"]), float(row["made_ts"]))] = row
    return rows


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

    def test_the_leaderboard_and_intervals_equal_iotcast_evaluate_to_the_last_digit(self) -> None:
        folder = Path(self.enterContext(tempfile.TemporaryDirectory(prefix="orange-eval-")))
        path = folder / "day.csv"
        readings = list(generate(days=0.1, seed=5))
        write_csv(path, readings)
        save = [f"--save-predictions={d}:served" for d in sorted({r.device for r in readings})]
        command = _evaluate_command(path, folder / "out", *save)
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
        scored = {k for k, v in command.items() if "@" not in k[1] and v["n"] not in ("0", "")}
        assert seen == scored and len(seen) > 40
        assert d["best"].values == ("false", "true")
        predictions = self.get_output(w.Outputs.predictions, widget=w)
        n = sum(int(v["n"]) for k, v in command.items() if "@" not in k[1] and v["n"])
        assert len(predictions) == n
        assert w.board.rowCount() == len(board)
        self.check_intervals(predictions, command, _served_intervals(folder / "out"))

    def check_intervals(self, predictions, command, published) -> None:
        """The served rows carry the interval ``iotcast evaluate`` published with each
        forecast, digit for digit (missing in the band's warm-up); the other models' rows
        none; the 80 % interval lies inside the 95 %; the rows give the command's coverage."""
        sides = ["low80", "high80", "low95", "high95"]
        names = [v.name for v in predictions.domain.attributes]
        assert names[names.index("abs_error") + 1 : names.index("hour")] == sides
        d = predictions.domain
        column = predictions.get_column
        device = np.array(d["device"].values)[column("device").astype(int)]
        model = np.array(d["model"].values)[column("model").astype(int)]
        horizon = np.array([int(v) for v in d["horizon"].values])[column("horizon").astype(int)]
        made, predicted, actual = column("made"), column("predicted"), column("actual")
        bounds = np.column_stack([column(c) for c in sides])
        served = model == "served"
        assert np.isnan(bounds[~served]).all() and (~served).any()
        assert served.sum() == len(published) > 1000
        warm_up = 0
        for i in np.flatnonzero(served):
            key = (str(device[i]), int(horizon[i]), float(made[i]))
            want = published[key]
            assert repr(float(predicted[i])) == want["predicted"], key
            got = [float(v) for v in bounds[i]]
            if want["low80"] == "":
                assert np.isnan(got).all(), key
                warm_up += 1
                continue
            assert [repr(v) for v in got] == [want[c] for c in sides], key
            lo80, hi80, lo95, hi95 = got
            assert lo95 <= lo80 < hi80 <= hi95, key
        assert 0 < warm_up < served.sum() / 10
        checked = 0
        for (dev, name, h), figures in command.items():
            if not name.startswith("served@") or figures["coverage"] == "":
                continue
            j = 2 * [0.8, 0.95].index(float(name.split("@")[1]))
            rows = served & (device == dev) & (horizon == h) & ~np.isnan(bounds[:, j])
            inside = (bounds[rows, j] <= actual[rows]) & (actual[rows] <= bounds[rows, j + 1])
            assert inside.sum() / rows.sum() == float(figures["coverage"]), (dev, h, name)
            checked += 1
        assert checked == 3 * 4 * 2  # devices x horizons x levels

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

"""The analysis page in a real headless Chromium: a person loads the generated sample, asks
for one device's humidity one hour ahead, reads the leaderboard and the charts, switches to
Spanish, and uploads files that are not telemetry; the figures shown are those of
``iotcast evaluate`` on the same file and settings, to the last digit."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from iotcast.cli import main
from iotcast.settings import Settings
from iotcast.ui import callbacks_data, create_app
from iotcast.ui.workspace import Workspace
from telemetry.csvfile import HEADER
from tests.ui_support import T_ONLY, TH, browser_page, mixed_file, screenshot, served

DEVICE = "1c:bf:ce:15:ec:4d"


@pytest.fixture(scope="module")
def page_url(tmp_path_factory: pytest.TempPathFactory):
    # nothing answers on port 9: the fleet section says so, and no test reaches a stack
    settings = Settings(endpoint_url="http://127.0.0.1:9")
    ws = Workspace(settings, folder=tmp_path_factory.mktemp("ui"), sample_days=1)
    with served(create_app(ws)) as url:
        yield url, ws


def evaluate_figures(csv_path: Path, out: Path) -> dict[str, float]:
    """MAE per model of DEVICE at 1 hour from ``iotcast evaluate``'s metrics.csv."""
    argv = ["evaluate", "--csv", str(csv_path), "--out", str(out), "--target", "humidity"]
    assert main([*argv, "--task", "forecast", "--horizon", "3600", "--no-progress"]) == 0
    with open(out / "metrics.csv", newline="") as f:
        return {
            r["model"]: float(r["value"])
            for r in csv.DictReader(f)
            if (r["kind"], r["device"], r["horizon"], r["scenario"], r["metric"])
            == ("error", DEVICE, "3600", "all", "mae")
            and r["value"]  # a model that never forecast (the seasonal naive on one day)
        }


OTHERS = ("00:0f:00:70:91:0a", "b8:27:eb:bf:9d:51")  # the sample's devices but DEVICE
SLOW = ("in 15 minutes", "in 6 hours")


def test_a_person_asks_a_question_reads_the_answer_in_two_languages_and_bad_files_are_refused(
    page_url, tmp_path, monkeypatch
):
    url, ws = page_url
    shots = tmp_path / "screenshots"
    monkeypatch.setattr(callbacks_data, "LARGE_ROWS", 20_000)  # the sample counts as large
    with browser_page() as page:
        page.goto(url)
        # A large file: the page offers a row limit before reading, and reads with progress.
        page.click("#sample")
        page.wait_for_selector("#large-text:has-text('rows')")
        assert "49,600" in page.inner_text("#large-text")
        page.fill("#limit", "5000")
        page.click("#large-ok")
        page.wait_for_selector("#data-message:has-text('5,000 readings')")
        page.click("#sample")
        page.click("#large-all")
        page.wait_for_selector("#data-message:has-text('49,600 readings of 3 devices')")
        assert page.locator("#summary-table tbody tr").count() == 3
        assert page.locator(".sensor-chart").count() == 3
        screenshot(page, shots, "1-data")

        # The question: one device, humidity, one hour ahead, the default models.
        for other in OTHERS:
            page.locator("#devices label", has_text=other).click()
        page.locator("#target label", has_text="humidity").click()
        page.locator("#horizons label", has_text="in 15 minutes").click()
        page.click("#run")
        page.wait_for_selector("#leaderboard-table")
        page.wait_for_function(
            "() => { const g = document.querySelector('#g-actual .js-plotly-plot');"
            " return g && g.data && g.data.length > 3 && g.data[0].x.length > 50 }"
        )
        sentence = page.inner_text("#s-leaderboard")
        assert sentence.startswith("1 hour ahead") and "%" in sentence, sentence
        shown = {}
        for row in page.locator("#leaderboard-table tbody tr").all():
            model = row.locator(".name").get_attribute("title")
            shown[model] = float(row.locator(".mae").get_attribute("title"))
        assert {"served", "persistence", "ensemble"} <= set(shown)
        for chart in ("rolling", "hour", "scenarios"):
            assert page.inner_text(f"#s-{chart}").strip(), chart
        screenshot(page, shots, "2-results")
        with page.expect_download() as download:  # the figures, as iotcast evaluate writes them
            page.click("#dl-csv")
        with open(download.value.path()) as f:
            assert f.readline().startswith("kind,device,model,horizon,scenario,metric,value")
        # The same question again: answered from the cache. A slow one: cancelled.
        page.click("#run")
        page.wait_for_selector("#run-message:has-text('the answer is reused')")
        # The models' options are redrawn once, when their costs are measured (late on a loaded
        # machine): a click on a label being replaced is lost, so wait for the costs first.
        page.wait_for_selector("#models label:has-text('adaptive random forest'):has-text('µs')")
        # Slow enough to be seen running on a quiet machine (ARF alone on one device and
        # horizon ends in under a second): every device, three horizons.
        arf = page.locator("#models label", has_text="adaptive random forest").locator("input")
        more = [page.locator("#devices label", has_text=d).locator("input") for d in OTHERS]
        more += [page.locator("#horizons label", has_text=h).locator("input") for h in SLOW]
        for box in (arf, *more):
            box.check()
        page.click("#run")
        page.wait_for_selector("#run-progress-text:has-text('rows')")
        page.click("#cancel")
        page.wait_for_selector("#run-message:has-text('Cancelled.')")
        for box in (arf, *more):
            box.uncheck()
        assert page.locator("#leaderboard-table").is_visible()
        # The same figures as `iotcast evaluate` on the same file and settings.
        sample = next(ws.folder.glob("sample-*.csv"))
        assert shown == evaluate_figures(sample, tmp_path / "evaluate")

        # Spanish: every label, the sentences, the units stay.
        page.locator("#lang label", has_text="Español").click()
        page.wait_for_selector("#run:has-text('Calcular')")
        page.wait_for_selector("#s-leaderboard:has-text('A 1 hora vista')")
        for text in (
            "Clasificación",
            "Qué predecir",
            "Dispositivos",
            "Error según la hora del día",
        ):
            assert page.get_by_text(text).first.is_visible(), text
        screenshot(page, shots, "3-spanish")

        # Files that are not telemetry: a clear message, and the results stay.
        for name, body, expected in (
            ("empty.csv", b"", "El archivo está vacío"),
            (
                "prices.csv",
                b"date,price\n2020-01-01,3\n",
                "Las columnas del archivo son date, price",
            ),
            ("notes.txt", b"just some notes\nnot a table\n", "Esto no es un archivo CSV"),
        ):
            page.set_input_files(
                "#upload input[type=file]",
                files=[{"name": name, "mimeType": "text/csv", "buffer": body}],
            )
            page.wait_for_selector(f"#data-message .error:has-text('{expected}')")
        assert page.locator("#leaderboard-table").is_visible()
        screenshot(page, shots, "4-bad-file")
        # Everything the page loaded came from this machine's page server.
        assert {u.split("/")[2] for u in page.urls if u.startswith("http")} == {url.split("/")[2]}


def labels(page, where: str) -> list[str]:
    return [s.strip() for s in page.locator(f"{where} label").all_inner_texts()]


def test_the_page_offers_the_targets_the_file_has_and_says_what_was_left_out(page_url, tmp_path):
    url, _ws = page_url
    path = mixed_file(tmp_path / "mixed.csv")
    with browser_page() as page:
        page.goto(url)
        page.fill("#path", str(path))
        page.click("#open")
        page.wait_for_selector("#data-message:has-text('readings of 2 devices')")
        assert "3 rows could not be used" in page.inner_text("#data-message")
        page.wait_for_selector(f"#summary-table td:has-text('{T_ONLY}')")
        # Per device: the sensors it sent; no light or motion sensor is said, not "nan %".
        cells = {
            row.locator("td").first.inner_text(): row.locator("td").all_inner_texts()
            for row in page.locator("#summary-table tbody tr").all()
        }
        assert cells[TH][1] == "temperature, humidity"
        assert cells[T_ONLY][1] == "temperature"
        assert cells[T_ONLY][-2:] == ["no sensor", "no sensor"]
        # What was left out, in words.
        said = page.inner_text("#left-out")
        assert (
            "3 rows were refused whole, as nothing usable was left in them: "
            "no usable sensor value (2), an impossible time (1)."
        ) in said, said
        assert (
            f"{TH}: dropped 6 humidity values (4 unreadable, 2 beyond what the sensor can "
            "measure); 1 temperature value (beyond what the sensor can measure); "
            "3 humidity values set to the sensor's limit."
        ) in said, said
        assert T_ONLY + ":" not in said
        # The targets are the file's; humidity says that one device of the two has it.
        assert labels(page, "#target") == ["temperature", "humidity (1 of 2 devices)"]
        nowcast = page.locator("#horizons label", has_text="now (virtual sensor)").locator("input")
        assert nowcast.is_enabled()
        screenshot(page, tmp_path, "6-left-out")

        # The temperature-only device alone: temperature only, and no virtual sensor, said.
        page.locator("#devices label", has_text=TH).click()
        page.wait_for_selector("#nowcast-note:has-text('no other sensor')")
        assert labels(page, "#target") == ["temperature"]
        assert nowcast.is_disabled()
        page.locator("#devices label", has_text=TH).click()
        page.wait_for_selector("#target label:has-text('humidity')")
        assert nowcast.is_enabled()
        assert page.inner_text("#nowcast-note").strip() == ""

        # Humidity for both: the device without it is left out, and the page says so.
        page.locator("#target label", has_text="humidity").click()
        page.click("#run")
        page.wait_for_selector("#leaderboard-table")
        page.wait_for_selector("#run-message:has-text('Done')")
        assert f"Left out, as they have no humidity sensor: {T_ONLY}." in page.inner_text(
            "#run-message"
        )
        screenshot(page, tmp_path, "7-humidity")

        # A file with no usable reading: said, nothing breaks, the file before stays.
        empty = HEADER + "\n" + '"1.5945E9","a1","","","","","","",""\n' * 3
        page.set_input_files(
            "#upload input[type=file]",
            files=[{"name": "nothing.csv", "mimeType": "text/csv", "buffer": empty.encode()}],
        )
        page.wait_for_selector(
            "#data-message .error:has-text(\"None of the file's 3 rows holds a usable reading: "
            'no usable sensor value (3). The first is line 2.")'
        )
        assert page.locator("#leaderboard-table").is_visible()


REAL_TEMP_ONLY = Path(__file__).parents[2] / "shared/data/real/nab_ambient_temperature.csv"


@pytest.mark.skipif(not REAL_TEMP_ONLY.exists(), reason="the real series are kept beside the repo")
def test_the_real_temperature_only_file_offers_temperature_alone(page_url):
    url, _ws = page_url
    with browser_page() as page:
        page.goto(url)
        page.fill("#path", str(REAL_TEMP_ONLY))
        page.click("#open")
        page.wait_for_selector("#data-message:has-text('7,267 readings of one device')")
        page.wait_for_selector("#left-out:has-text('Nothing: every value of every row was read')")
        page.wait_for_selector("#nowcast-note:has-text('no other sensor')")
        assert labels(page, "#target") == ["temperature"]
        assert page.locator("#horizons label", has_text="now").locator("input").is_disabled()
        row = page.locator("#summary-table tbody tr").first.locator("td").all_inner_texts()
        assert row[1] == "temperature" and row[-2:] == ["no sensor", "no sensor"]

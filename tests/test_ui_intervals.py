"""The served forecast's intervals and the anomaly events on the analysis page (issue 27):
over a short generated series with planted faults (:mod:`telemetry.plant`), the forecast
chart draws the 80 % and 95 % bands around the served forecast and a marker per anomaly
event; the events are listed with their kind, start, end, value and expected range, and the
intervals' coverage and width are said beside the leaderboard, in English and Spanish. The
figures are those ``iotcast evaluate`` writes on the same file (``metrics.csv``'s
``interval`` rows, ``events.csv``); the browser test checks what Chromium rendered and
takes the screenshot kept as ``docs/ui/band-and-events.png``."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from playwright.sync_api import expect

from iotcast.cli import main
from iotcast.settings import Settings
from iotcast.ui import charts, create_app
from iotcast.ui.callbacks_run import anomalies_view
from iotcast.ui.workspace import Workspace
from online_models.analysis import analyse
from telemetry.csvfile import write_csv
from telemetry.generate import Faults, generate
from telemetry.plant import plant
from tests.test_ui_events import text_of
from tests.ui_support import browser_page, screenshot, served

DAYS, SEED = 0.5, 1
HORIZON = 900


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Half a day of one device with faults planted (two of each kind a day), as a CSV file,
    and what ``iotcast evaluate`` says of it (nowcast and 15 minutes ahead)."""
    folder = tmp_path_factory.mktemp("planted")
    clean = generate(days=DAYS, seed=SEED, devices=1, faults=Faults.none())
    readings, _truth = plant(clean, seed=SEED, days=DAYS, per_day=2)
    path = folder / "planted.csv"
    write_csv(path, readings)
    out = folder / "evaluate"
    argv = ["evaluate", "--csv", str(path), "--out", str(out), "--task", "all"]
    assert main([*argv, "--horizon", str(HORIZON), "--no-progress"]) == 0
    with open(out / "metrics.csv", newline="") as f:
        intervals = {
            float(r["level"]): (float(r["value"]), r["metric"])
            for r in csv.DictReader(f)
            if r["kind"] == "interval"
            and r["horizon"] == str(HORIZON)
            and r["metric"] == "coverage"
        }
    with open(out / "events.csv", newline="") as f:
        events = list(csv.DictReader(f))
    return path, {"coverage": intervals, "events": events, "report": out / "report.md"}


def test_the_chart_has_both_bands_around_the_served_forecast_and_a_marker_per_event(planted):
    path, said = planted
    a = analyse(path, horizons=(0, HORIZON))
    (device,) = a.devices
    fig = charts.actual_figure(a, device, HORIZON, "en", "C")
    bands = [tr for tr in fig.data if tr.fill == "tonexty"]
    assert [tr.name for tr in bands] == ["served: 95 % range", "served: 80 % range"]
    band = charts.band_frame(a, device, HORIZON)
    wide, narrow = band[band.level == 0.95], band[band.level == 0.8]
    assert len(wide) == len(narrow) > 50
    # drawn as published (the bounds the forecasts carried), the 80 % band the narrower
    assert list(bands[1].y) == list(narrow.low) and list(bands[0].y) == list(wide.low)
    highs = [tr for tr in fig.data if tr.legendgroup == "band-0.8" and not tr.fill]
    assert list(highs[0].y) == list(narrow.high)
    assert (narrow.high - narrow.low).mean() < (wide.high - wide.low).mean()
    assert ((narrow.low < narrow.value) & (narrow.value < narrow.high)).mean() > 0.9
    # one marker per event of events.csv, in a trace per kind
    markers = [tr for tr in fig.data if tr.mode == "markers"]
    kinds = sorted(e["kind"] for e in said["events"])
    assert kinds, "the planted faults raised no event"
    assert sorted(tr.meta for tr in markers for _ in tr.x) == kinds


def test_the_events_are_listed_in_words_and_the_report_lists_them_too(planted):
    path, said = planted
    a = analyse(path, horizons=(0, HORIZON))
    (device,) = a.devices
    view = anomalies_view(a, device, "en", "C")
    (table,) = [c for c in view.children if getattr(c, "id", None) == "anomalies-table"]
    rows = table.children[1].children
    events = said["events"]
    assert len(rows) == min(len(events), charts.MAX_EVENTS_SHOWN)
    first = [text_of(td) for td in rows[0].children]
    assert first[0] == "spike (one reading far off)" or first[0].split(" (")[0] in (
        "stuck sensor",
        "silent device",
        "lasting shift of level",
        "gas level rising",
    )
    assert first[1] == charts.utc_time(float(events[0]["start_ts"]))
    assert [td.children.title for td in (r.children[0] for r in rows)] == [
        e["kind"] for e in events[: len(rows)]
    ]
    spanish = text_of(anomalies_view(a, device, "es", "C"))
    assert spanish.startswith(f"{len(events)} evento(s) anómalo(s) de este dispositivo")
    # the coverage said beside the leaderboard is metrics.csv's
    sentence = charts.sentences(a, device, HORIZON, "en", "C")["interval"]
    for level, (coverage, _) in said["coverage"].items():
        assert f"the {level * 100:g} % range held the measured value {100 * coverage:.0f} %" in (
            sentence
        ), sentence
    report = said["report"].read_text()
    assert "## Prediction intervals" in report and "## Anomaly events" in report
    for e in events[:20]:
        assert (
            f"| {e['device']} | {e['kind']} | {charts.utc_time(float(e['start_ts']))} |" in report
        )


@pytest.fixture(scope="module")
def page_url(tmp_path_factory: pytest.TempPathFactory):
    settings = Settings(endpoint_url="http://127.0.0.1:9")  # no stack: none is needed
    ws = Workspace(settings, folder=tmp_path_factory.mktemp("ui"), measure_costs=False)
    with served(create_app(ws)) as url:
        yield url


PLOT = "document.querySelector('#g-actual .js-plotly-plot')"


def test_the_page_shows_the_band_and_the_markers_in_chromium(planted, page_url, tmp_path):
    path, said = planted
    events = said["events"]
    with browser_page(height=1000) as page:
        page.goto(page_url)
        page.fill("#path", str(path))
        page.click("#open")
        page.wait_for_selector("#data-message:has-text('readings of one device')")
        # the device is ticked, and the horizons offered for it, by callbacks after the file
        expect(page.locator("#devices input").first).to_be_checked()
        nowcast = page.locator("#horizons label", has_text="now (virtual sensor)").locator("input")
        expect(nowcast).to_be_enabled()
        hour = page.locator("#horizons label", has_text="in 1 hour").locator("input")
        nowcast.check()
        hour.uncheck()
        expect(nowcast).to_be_checked()
        expect(hour).not_to_be_checked()
        page.click("#run")
        page.wait_for_selector("#anomalies-table")
        page.wait_for_function(
            f"() => {{ const g = {PLOT}; return g && g.data && g.data.some(t => t.fill) }}"
        )
        traces = page.evaluate(
            f"() => {PLOT}.data.map(t => ({{name: t.name, fill: t.fill || '', mode: t.mode,"
            " meta: t.meta || '', n: t.x.length}))"
        )
        bands = [tr["name"] for tr in traces if tr["fill"] == "tonexty"]
        assert bands == ["served: 95 % range", "served: 80 % range"], traces
        marked = sorted(
            tr["meta"] for tr in traces if tr["mode"] == "markers" for _ in range(tr["n"])
        )
        assert marked == sorted(e["kind"] for e in events)
        # drawn, not only described: the band fills and one point per event in the SVG
        assert page.locator("#g-actual .js-fill").count() >= 2
        markers = page.locator("#g-actual .scatterlayer .trace .points path").count()
        assert markers >= len(events), markers
        rows = page.locator("#anomalies-table tbody tr")
        assert rows.count() == min(len(events), charts.MAX_EVENTS_SHOWN)
        said_interval = page.inner_text("#s-interval")
        cov = said["coverage"][0.95][0]
        assert f"the 95 % range held the measured value {100 * cov:.0f} % of the time" in (
            said_interval
        ), said_interval
        page.locator("#g-actual").scroll_into_view_if_needed()
        shot = screenshot_of(page, tmp_path, "band-and-events", "#s-leaderboard", "#anomalies")
        assert shot.stat().st_size > 10_000

        page.locator("#lang label", has_text="Español").click()
        page.wait_for_selector("#s-interval:has-text('La previsión servida viene con márgenes')")
        page.wait_for_function(
            f"() => {PLOT}.data.some(t => t.name === 'servida: margen del 80 %')"
        )
        assert page.get_by_text("Lecturas anómalas").first.is_visible()
        assert page.locator("#anomalies-table th").first.inner_text() == "qué"


def screenshot_of(page, folder: Path, name: str, first: str, last: str) -> Path:
    """A PNG of the page from the top of ``first`` to the bottom of ``last`` (full width)."""
    top = page.locator(first).bounding_box()
    bottom = page.locator(last).bounding_box()
    assert top and bottom
    scroll = page.evaluate("() => [window.scrollX, window.scrollY]")
    clip = {
        "x": 0,
        "y": top["y"] + scroll[1] - 8,
        "width": page.viewport_size["width"],
        "height": bottom["y"] + bottom["height"] - top["y"] + 16,
    }
    path = screenshot(page, folder, name)  # where screenshots go; overwritten by the clip
    page.screenshot(path=str(path), full_page=True, clip=clip)
    return path

"""Promote a model from the analysis page against a running stack (moto server and a real
``iotcast process``): after the confirmation, the processor applies it,
``iotcast models show`` reports the new champion, and the page's "What happened today"
lists the device's first reading and the operator's promotion."""

from __future__ import annotations

import contextlib
import io
import itertools
import json

from iotcast.cli import main
from iotcast.ui import create_app
from iotcast.ui.workspace import Workspace
from online_models.catalog import load_catalog
from online_models.config import TaskConfig
from telemetry.generate import generate
from tests import support
from tests.ui_support import browser_page, pick, screenshot, served

MODELS = "persistence,rolling_mean,linear"


def test_promote_from_the_page_changes_the_champion_models_show_reports(settings, tmp_path):
    support.create_resources(settings, 1)
    readings = list(itertools.islice(generate(days=1, seed=7), 1200))
    support.put_records(settings, support.items_of(readings))
    proc = support.start_processor(
        settings, tmp_path, *support.processor_flags(MODELS, checkpoint_every=300)
    )
    with support.stops_cleanly(proc):
        task = TaskConfig(horizons=(0, 60))
        want = support.learned_counts(readings, load_catalog(), task, MODELS)
        support.wait_checkpointed(settings, want, 90, "the readings checkpointed")
        device = sorted(want)[0]
        ws = Workspace(settings, folder=tmp_path / "ui", measure_costs=False)
        with served(create_app(ws)) as url, browser_page() as page:
            page.goto(url)
            page.click("#refresh")
            page.wait_for_selector(f"#fleet-devices:has-text('{device}')")
            pick(page, "fleet-device", device)
            pick(page, "fleet-model", "linear")
            page.fill("#reason", "linear follows the humid afternoons")
            page.once("dialog", lambda dialog: dialog.accept())
            page.click("#promote")
            page.wait_for_selector("#fleet-result:has-text('applied by')", timeout=60_000)
            result = page.inner_text("#fleet-result")
            assert f"{device}: applied by" in result and "champion linear" in result, result

            def happened() -> str:  # the event goes to S3 with the next checkpoint
                page.click("#refresh")
                page.wait_for_timeout(500)
                text = page.inner_text("#fleet-events")
                return text if "became the champion" in text else ""

            text = support.wait_for(happened, 30, "the promotion in What happened today")
            assert "First reading: its models start learning." in text, text
            assert "linear became the champion, 1 minute ahead (before: " in text, text
            assert "by analysis page: linear follows the humid afternoons" in text, text
            screenshot(page, tmp_path, "5-fleet")

        def champions() -> dict:
            out = io.StringIO()
            argv = support.operator_argv(settings, "models", "show", device, "all", "--json")
            with contextlib.redirect_stdout(out):
                assert main(argv) == 0
            shown = json.loads(out.getvalue())
            return {f["horizon"]: f["model"] for f in shown["models"] if f["champion"]}

        # the next checkpoint carries the promotion; models show reads it from S3
        support.wait_for(lambda: champions() == {0: "linear", 60: "linear"}, 30, "the new champion")

"""Promote a model from the analysis page against a running stack (moto server and a real
``iotcast process``): after the confirmation, the processor applies it and
``iotcast models show`` reports the new champion."""

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

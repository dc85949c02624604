"""The Orange add-on's Fleet widget against a running stack (moto server, kinesalite and a
real ``iotcast process``): it lists the checkpointed devices with their champions and
rolling errors, and its Promote, once confirmed, changes what ``iotcast models show``
reports."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
from unittest import mock

import pytest

pytest.importorskip("Orange")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from Orange.widgets.tests import base  # noqa: E402

from iotcast.cli import main  # noqa: E402
from iotcast.orange.widgets.owfleet import OWFleet  # noqa: E402
from online_models.catalog import load_catalog  # noqa: E402
from online_models.config import TaskConfig  # noqa: E402
from telemetry.generate import generate  # noqa: E402
from tests import support  # noqa: E402

MODELS = "persistence,rolling_mean,linear"


def _champions(settings, device: str) -> dict[int, str]:
    out = io.StringIO()
    argv = support.operator_argv(settings, "models", "show", device, "all", "--json")
    with contextlib.redirect_stdout(out):
        assert main(argv) == 0
    shown = json.loads(out.getvalue())
    return {f["horizon"]: f["model"] for f in shown["models"] if f["champion"]}


class FleetWidget(base.WidgetTest):
    __test__ = False  # a helper for the tests below (Orange's test base: QApplication, waits)

    def widget_on(self, settings) -> OWFleet:
        stored = {
            "endpoint_url": settings.endpoint_url,
            "region": settings.region,
            "bucket": settings.bucket,
            "app": settings.app,
            "reason": "linear follows the humid afternoons",
        }
        w = self.create_widget(OWFleet, stored_settings=stored)
        self.wait_until_finished(w, timeout=60_000)
        return w


@pytest.fixture
def fleet_test(request):
    FleetWidget.setUpClass()
    case = FleetWidget()
    case.setUp()
    yield case
    case.tearDown()
    FleetWidget.tearDownClass()


def test_promote_in_orange_changes_the_champion_models_show_reports(settings, tmp_path, fleet_test):
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
        before = _champions(settings, device)
        assert before and set(before.values()) != {"linear"}, before

        w = fleet_test.widget_on(settings)
        table = fleet_test.get_output(w.Outputs.fleet, widget=w)
        assert not w.Error.active, w.Error.unreachable.formatted
        assert sorted(table.domain["device"].values) == sorted(want)
        rows = [r for r in table if r["device"].value == device and r["champion"].value == "true"]
        assert {int(r["horizon"].value): r["model"].value for r in rows} == before
        assert all(float(r["rolling_mae"]) >= 0 for r in rows)

        w.device_index = w.devices.index(device)
        w.model_index = w.model_names.index("linear")
        asked = []
        with mock.patch.object(OWFleet, "confirm", lambda self, text: asked.append(text) or True):
            w.promote()
        fleet_test.wait_until_finished(w, timeout=120_000)
        assert asked == [f"Make linear the champion of {device} at every horizon it runs at?"]
        answer = w.answer.text()
        assert f"{device}: applied by" in answer and "champion linear" in answer, answer
        assert not w.Error.refused.is_shown()
        # the next checkpoint carries the promotion; models show reads it from S3
        support.wait_for(
            lambda: _champions(settings, device) == {0: "linear", 60: "linear"}, 30, "the champion"
        )


def test_an_unreachable_stack_is_an_error_in_the_widget(fleet_test):
    w = fleet_test.create_widget(OWFleet, stored_settings={"endpoint_url": "http://127.0.0.1:9"})
    fleet_test.wait_until_finished(w, timeout=60_000)
    assert w.Error.unreachable.is_shown()
    assert "127.0.0.1:9" in w.Error.unreachable.formatted
    assert fleet_test.get_output(w.Outputs.fleet, widget=w) is None

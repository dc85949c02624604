"""The analysis page's "What happened today" list of the fleet section: the chosen device's
events as the processors write them to S3 (:mod:`stream.events`), read through the same
reader as ``iotcast status --device``, in words, in both languages; and in words when
there are none or they cannot be read.

At the callback level: the fleet callbacks registered on a recorder, the list's callback
called as Dash calls it, against the session's moto server.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from iotcast.settings import Settings
from iotcast.ui import callbacks_fleet, create_app
from iotcast.ui.fleet import DeviceEvents, device_events
from iotcast.ui.workspace import Workspace
from online_models.records import Event
from tests import support
from tests.test_status_events import DRIFT, FIRST, PROMOTION, now, put_events

RESET = Event(
    "model_reset",
    "ridge",
    900,
    "exception: ValueError: boom",
    {"reason": "exception"},
    1_594_516_500.0,
)


class Recorder:
    """Stands for the Dash app: keeps each callback function registered, by name."""

    def __init__(self) -> None:
        self.callbacks: dict[str, Callable[..., Any]] = {}

    def callback(self, *args: Any, **kwargs: Any) -> Callable[[Callable], Callable]:
        def keep(fn: Callable) -> Callable:
            self.callbacks[fn.__name__] = fn
            return fn

        return keep


def text_of(component: Any) -> str:
    """Every string a Dash component tree shows, joined by spaces."""
    if component is None:
        return ""
    if isinstance(component, str | int | float):
        return str(component)
    if isinstance(component, list | tuple):
        return " ".join(text_of(c) for c in component)
    return text_of(getattr(component, "children", None))


def happened(settings: Settings, tmp_path) -> Callable[..., Any]:
    """The list's callback: (device, fleet data, language) -> what the page shows."""
    app = Recorder()
    callbacks_fleet.register(app, Workspace(settings, folder=tmp_path, measure_costs=False))
    return app.callbacks["happened"]


@pytest.fixture
def bucket(settings_moto_only: Settings) -> Settings:
    support.create_bucket(settings_moto_only)
    return settings_moto_only


def test_what_happened_today_lists_the_devices_events_in_words(bucket, tmp_path):
    t = now() - timedelta(minutes=20)
    put_events(bucket, [("d1", FIRST), ("d2", FIRST)], t)
    checkpoint = [("d1", PROMOTION), ("d2", DRIFT), ("d1", RESET)]
    put_events(bucket, checkpoint, t + timedelta(minutes=5))
    put_events(bucket, checkpoint, t + timedelta(minutes=6), shard="shardId-000000000001")  # replay
    put_events(bucket, [("d1", DRIFT)], t - timedelta(days=1))  # yesterday: not today's

    found = device_events(bucket, "d1")
    assert not found.error and [e["event"] for e in found.rows] == [
        "first_reading",
        "promotion",
        "model_reset",
    ]
    show = happened(bucket, tmp_path)
    view = show("d1", None, "en")
    shown = text_of(view)
    assert "3 event(s) of d1 today, times in UTC:" in shown, shown
    assert "First reading: its models start learning." in shown
    assert "linear became the champion, 1 minute ahead (before: persistence)." in shown
    assert PROMOTION.reason in shown  # the processor's own words beside
    assert "ridge was started afresh, 15 minutes ahead: it failed with an error." in shown
    assert "drift" not in shown and "d2" not in shown
    at = (t + timedelta(minutes=5)).strftime("%H:%M:%S")
    (items,) = [c for c in view.children if getattr(c, "id", None) == "fleet-events-list"]
    assert [text_of(li.children[0]) for li in items.children][1:] == [at, at]
    spanish = text_of(show("d1", None, "es"))
    assert "linear pasó a ser el campeón, a 1 minuto vista (antes: persistence)." in spanish
    assert "ridge se reinició desde cero, a 15 minutos vista: falló con un error." in spanish


def test_what_happened_today_says_so_when_nothing_did_or_it_cannot_be_read(bucket, tmp_path):
    show = happened(bucket, tmp_path)
    assert text_of(show(None, None, "en")) == (
        "Choose a device above to see what happened to it today."
    )
    none = text_of(show("d1", None, "en"))
    assert none.startswith("Nothing was recorded for d1 today (UTC)"), none
    assert text_of(show("d1", None, "es")).startswith("No se registró nada para d1 hoy (UTC)")
    # No bucket yet (no checkpoint ever written): nothing happened, not an error.
    fresh = bucket.replace(bucket=bucket.bucket + "-none")
    assert device_events(fresh, "d1") == DeviceEvents(
        "d1", where=f"s3://{fresh.bucket}/events/{fresh.app}/"
    )
    # Nothing answers: the list says where it looked and why it has nothing.
    down = bucket.replace(endpoint_url="http://127.0.0.1:9", endpoints={})
    found = device_events(down, "d1", timeout=1)
    assert found.error and not found.rows
    shown = text_of(callbacks_fleet.events_view("en", found))
    assert shown.startswith(f"The events of d1 could not be read from s3://{bucket.bucket}/events/")


def test_the_page_has_the_list_under_the_fleet(tmp_path):
    app = create_app(Workspace(folder=tmp_path, measure_costs=False))
    assert "fleet-events.children" in app.callback_map
    assert "fleet-events" in str(app.layout)

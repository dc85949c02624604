"""The Telemetry widget's live fleet: the last hours of a Kinesis stream of a running stack
(the session's kinesalite; moto for the processor's bucket and leases), offscreen with
Orange's widget test base.

- the telemetry stream, as the bridge and the IoT rule write it (single readings, packed
  records, a device batch, a bad reading, a stray copy addressed to another shard): every
  reading once, with its sensors, as the Readings table of a file;
- the predictions stream a real ``iotcast process`` writes: one row per reading it
  learned, the actual value as the target's column, the served forecasts and their
  intervals beside it;
- a stack that does not answer, a stream that does not exist and one with nothing in the
  window are errors shown in the widget, never a traceback; the read reports progress and
  stops when asked.
"""

from __future__ import annotations

import itertools
import os

import orjson
import pytest

pytest.importorskip("Orange")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from Orange.widgets.tests import base  # noqa: E402

from iotcast.orange.live import LiveError, Stop, read_recent  # noqa: E402
from iotcast.orange.tables import table_readings  # noqa: E402
from iotcast.orange.widgets.owtelemetry import LIVE, STACK, OWTelemetry  # noqa: E402
from iotcast.settings import Settings  # noqa: E402
from online_models.catalog import load_catalog  # noqa: E402
from online_models.config import TaskConfig  # noqa: E402
from telemetry.envelope import pack  # noqa: E402
from telemetry.generate import generate  # noqa: E402
from telemetry.reading import encode  # noqa: E402
from tests import support  # noqa: E402

WAIT_MS = 120_000
MODELS = "persistence,rolling_mean,linear"


class LiveWidget(base.WidgetTest):
    __test__ = False  # a helper for the tests below (Orange's test base: QApplication, waits)

    def widget_on(self, settings: Settings, stream: str, hours: float = 1.0) -> OWTelemetry:
        stored = {
            "source": LIVE,
            "live_where": STACK,
            "endpoint_url": settings.endpoint("kinesis"),
            "region": settings.region,
            "live_stream": stream,
            "hours": hours,
        }
        w = self.create_widget(OWTelemetry, stored_settings=stored)
        self.wait_until_finished(w, timeout=WAIT_MS)
        return w


@pytest.fixture
def live_test():
    LiveWidget.setUpClass()
    case = LiveWidget()
    case.setUp()
    yield case
    case.tearDown()
    LiveWidget.tearDownClass()


def _shard_ids(settings: Settings) -> list[str]:
    shards = settings.client("kinesis").list_shards(StreamName=settings.stream)["Shards"]
    return [s["ShardId"] for s in shards]


def test_the_last_hours_of_the_telemetry_stream_are_the_readings_once_each(settings, live_test):
    support.create_stream(settings, shards=2)
    readings = list(itertools.islice(generate(days=0.05, seed=3), 600))
    singles, packed, batched = readings[:300], readings[300:560], readings[560:]
    support.put_records(settings, support.items_of(singles))  # one reading a record
    first, second = _shard_ids(settings)
    kinesis = settings.client("kinesis")
    # a packed record holding the next readings, written unaddressed (as a reader meets a
    # record whose shard it cannot check), a device batch with one bad reading in it,
    # and a stray copy addressed to another shard than the one it lands on
    batch = [orjson.loads(encode(r)) for r in batched]
    bad = {"data": {"temp": "hot"}, "device_id": batched[0].device, "ts": batched[0].ts + 0.5}
    body = pack([encode(r) for r in packed] + [orjson.dumps([*batch, bad])])
    hash_of = {
        s["ShardId"]: s["HashKeyRange"]["StartingHashKey"]
        for s in kinesis.list_shards(StreamName=settings.stream)["Shards"]
    }
    kinesis.put_record(
        StreamName=settings.stream, Data=body, PartitionKey="x", ExplicitHashKey=hash_of[first]
    )
    stray = pack([encode(r) for r in readings[:50]], shard=second)
    kinesis.put_record(
        StreamName=settings.stream, Data=stray, PartitionKey="x", ExplicitHashKey=hash_of[first]
    )

    w = live_test.widget_on(settings, settings.stream)
    assert not w.Error.active, w.Error.read_error.formatted
    table = live_test.get_output(w.Outputs.data, widget=w)
    assert len(table) == len(readings)
    assert [v.name for v in table.domain.attributes][:3] == ["time", "device", "co"]
    assert sorted(table_readings(table), key=lambda r: (r.ts, r.device)) == sorted(
        readings, key=lambda r: (r.ts, r.device)
    )
    assert w.Warning.bad_rows.is_shown()  # the batch's bad reading, counted
    assert "wrong_type" in w.Warning.bad_rows.formatted or "no_sensor" in (
        w.Warning.bad_rows.formatted
    )
    info = w.info_label.text()
    assert f"{len(readings):,} readings of 3 devices" in info, info
    assert f"stream {settings.stream}" in info and "the readings the devices sent" in info

    # Cancel: the read under way is dropped (nothing sent, the table before stays), said so
    w.hours = 2.0
    w.reload()
    w.cancel_read()
    live_test.wait_until_finished(w, timeout=WAIT_MS)
    assert w.info_label.text() == "Cancelled: press Reload to read again."
    assert not w.cancel_button.isEnabled() and not w.Error.active
    assert live_test.get_output(w.Outputs.data, widget=w) is table

    # the read itself: the stray copy skipped, progress to 100 %, and a stop honoured
    seen: list[float] = []
    got = read_recent(settings, settings.stream, 1.0, progress=seen.append)
    assert got.stray == 1 and got.shards == 2 and got.kind == "telemetry"
    assert seen and seen[-1] == 100.0 and seen == sorted(seen)
    with pytest.raises(Stop):
        read_recent(settings, settings.stream, 1.0, stop=lambda: True)


def test_the_predictions_stream_gives_the_served_forecasts_and_intervals(
    settings, tmp_path, live_test
):
    support.create_resources(settings, 1)
    support.create_stream(settings, shards=1, name=settings.predictions_stream)
    readings = list(itertools.islice(generate(days=1, seed=7), 900))
    support.put_records(settings, support.items_of(readings))
    flags = support.processor_flags(MODELS, (0, 60), predictions="champion")
    proc = support.start_processor(settings, tmp_path, *flags)
    with support.stops_cleanly(proc):
        task = TaskConfig(horizons=(0, 60))
        want = support.learned_counts(readings, load_catalog(), task, MODELS)

        def all_served() -> object:
            try:
                got = read_recent(settings, settings.predictions_stream, 1.0)
            except LiveError:
                return None
            return got if len(got.readings) >= sum(want.values()) else None

        got = support.wait_for(all_served, 90, "a prediction record for every learned reading")
    assert got.kind == "predictions" and got.events >= len(want)  # each device's first reading

    w = live_test.widget_on(settings, settings.predictions_stream)
    assert not w.Error.active, w.Error.read_error.formatted
    table = live_test.get_output(w.Outputs.data, widget=w)
    assert len(table) == sum(want.values())
    names = {v.name for v in table.domain.attributes}
    assert {"served_0s", "low80_0s", "high95_0s", "served_60s", "high80_60s"} <= names
    temps = {(r.device, r.ts): r.temp for r in readings}
    rows = list(table_readings(table))
    assert all(temps[(r.device, r.ts)] == r.temp for r in rows)
    # once past their warm-up, the served nowcasts carry their intervals around them
    banded = [dict(r.extra) for r in rows if "low80_0s" in dict(r.extra)]
    assert len(banded) > len(rows) / 2
    assert all(b["low95_0s"] <= b["served_0s"] <= b["high95_0s"] for b in banded)
    assert "what the processors served" in w.info_label.text()


def test_no_stack_no_stream_or_nothing_in_the_window_is_an_error_in_the_widget(settings, live_test):
    down = Settings.of(endpoint_url="http://127.0.0.1:9", region=settings.region)
    w = live_test.widget_on(down, "iot-telemetry")
    assert w.Error.read_error.is_shown()
    assert "nothing answers for stream iot-telemetry (http://127.0.0.1:9)" in (
        w.Error.read_error.formatted
    )
    assert live_test.get_output(w.Outputs.data, widget=w) is None

    w = live_test.widget_on(settings, settings.stream)  # not created yet
    assert w.Error.read_error.formatted.startswith(f"no such stream: stream {settings.stream} (")

    support.create_stream(settings, shards=1)
    w = live_test.widget_on(settings, settings.stream)
    assert w.Error.read_error.formatted.startswith(
        f"no reading arrived in stream {settings.stream} ("
    ), w.Error.read_error.formatted
    assert w.Error.read_error.formatted.endswith("in the last 1 hours")
    assert live_test.get_output(w.Outputs.data, widget=w) is None

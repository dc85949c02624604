"""``iotcast status``: what happened to a device (the events the processors write to S3 with
their checkpoints, :mod:`stream.events`), the fleet's recent events, and the fleet figures
and worst devices of the processors' /metrics.

Against the session's moto server (S3, and Kinesis and DynamoDB with nothing in them); the
events are put as a processor's checkpoint puts them (:func:`stream.events.event_record`
lines under :func:`stream.events.events_key`), a replayed checkpoint's twice. The /metrics
are crafted expositions, served by an HTTP server of the test on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from iotcast.cli import main
from iotcast.settings import Settings
from online_models.catalog import load_catalog
from online_models.config import TaskConfig
from online_models.records import Event
from stream.events import event_record, events_key
from telemetry.generate import generate
from tests import support

SHARD = "shardId-000000000000"


def put_events(
    settings: Settings, events: list[tuple[str, Event]], at: datetime, shard: str = SHARD
) -> str:
    """One checkpoint's events, as the processor writes them to S3; returns the key."""
    key = events_key(settings.app, shard, at.isoformat(timespec="seconds"))
    body = b"".join(event_record(d, e, shard, at.timestamp()) for d, e in events)
    settings.client("s3").put_object(Bucket=settings.bucket, Key=key, Body=body)
    return key


def status(settings: Settings, *argv: str) -> tuple[int, str]:
    """``iotcast status <argv>`` in this process: exit status and output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), support.endpoints_env(settings):
        code = main(support.operator_argv(settings, "status", "--count-limit", "0", *argv))
    return code, out.getvalue()


def status_json(settings: Settings, *argv: str, code: int = 0) -> dict:
    got, text = status(settings, "--json", *argv)
    assert got == code, text
    return json.loads(text)


def words(text: str) -> str:
    """Rendered output with rich's table borders and line breaks folded to single spaces."""
    return " ".join(text.replace("│", " ").replace("┃", " ").split())


def now() -> datetime:
    """The clock the tests write events at: now, or 1 a.m. UTC when it is earlier (events
    dated 30 minutes back must still fall on today, also just after midnight)."""
    real = datetime.now(UTC).replace(microsecond=0)
    return max(real, real.replace(hour=1, minute=0, second=0))


PROMOTION = Event(
    "promotion",
    "linear",
    60,
    "rolling MAE 0.1000 beats champion persistence's 0.2000 by more than 5% over 50 scored "
    "predictions",
    {"old": "persistence", "new": "linear"},
    ts=1_594_512_000.0,
)
DRIFT = Event(
    "drift", "linear", 60, "ADWIN: mean |residual| of linear was 0.1 ...", {}, ts=1_594_515_600.0
)
RESET = Event(
    "model_reset", "ridge", 0, "out_of_range: forecast 1e9 outside [-40, 120]", {}, 1_594_516_000.0
)
FIRST = Event("first_reading", "", 0, "", {}, ts=1_594_500_000.0)


@pytest.fixture
def bucket(settings_moto_only: Settings) -> Settings:
    support.create_bucket(settings_moto_only)
    return settings_moto_only


def test_status_device_shows_what_happened_to_it_today_without_repeats(bucket):
    t = now() - timedelta(minutes=10)
    put_events(bucket, [("d1", FIRST), ("d2", FIRST)], t - timedelta(minutes=5))
    checkpoint = [("d1", PROMOTION), ("d2", DRIFT), ("d1", RESET)]
    put_events(bucket, checkpoint, t)
    # A crash between the events' write and the commit: the replay writes them again.
    put_events(bucket, checkpoint, t + timedelta(seconds=30), shard="shardId-000000000001")
    put_events(bucket, [("d1", DRIFT)], t - timedelta(days=1))  # yesterday's

    report = status_json(bucket, "--device", "d1")
    happened = report["events"]
    assert happened["device"] == "d1" and happened["total"] == 3
    assert [(e["event"], e["model"], e["horizon"]) for e in happened["events"]] == [
        ("first_reading", None, None),
        ("promotion", "linear", 60),
        ("model_reset", "ridge", 0),
    ]
    assert happened["events"][1]["reason"] == PROMOTION.reason
    assert happened["events"][1]["ts"] == PROMOTION.ts and happened["events"][1]["shard"] == SHARD
    assert report["problems"] == [] and report["devices"] == []  # no checkpoint names it yet

    code, text = status(bucket, "--device", "d1")
    assert code == 0, text
    shown = words(text)
    assert "what happened to d1 today (UTC): 3 event(s)" in shown, text
    assert "beats champion persistence's" in shown and "outside [-40, 120]" in shown, text
    assert "drift" not in shown and "d2" not in shown, text
    # --days 2 adds yesterday's drift, oldest first.
    older = status_json(
        bucket,
        "--device",
        "d1",
        "--days",
        "2",
    )
    assert [e["event"] for e in older["events"]["events"]] == [
        "drift",
        "first_reading",
        "promotion",
        "model_reset",
    ]


def test_status_shows_the_fleets_last_events_of_today(bucket):
    t = now() - timedelta(minutes=30)
    for i in range(30):  # one event a checkpoint, a minute apart
        event = Event("first_reading", "", 0, "", {}, ts=1_594_500_000.0 + i)
        put_events(bucket, [(f"d{i:02d}", event)], t + timedelta(minutes=i))
    report = status_json(bucket, "--events", "5")
    happened = report["events"]
    assert happened["total"] == 30 and happened["limit"] == 5
    assert [e["device"] for e in happened["events"]] == ["d25", "d26", "d27", "d28", "d29"]
    code, text = status(bucket)  # the default: the last 20
    assert code == 0, text
    shown = words(text)
    assert "events today (UTC): the last 20 of 30" in shown, text
    assert "d10" in shown and "d29" in shown and "d09" not in shown, text
    assert "its first reading: its models start" in shown, text
    # --events 0: none read, none shown
    assert status_json(bucket, "--events", "0")["events"]["events"] == []
    quiet = words(status(bucket, "--events", "0")[1])
    assert "events today" not in quiet and "events: none" not in quiet, quiet


def test_status_says_so_when_there_are_no_events(bucket, settings_moto_only):
    report = status_json(bucket)
    assert report["events"]["events"] == [] and report["events"]["total"] == 0
    code, text = status(bucket)
    assert code == 0
    assert f"events: none of the fleet today (UTC) in s3://{bucket.bucket}/events/" in words(text)
    # A device nobody knows: no checkpoint, no event. Said, and the exit status is 1.
    put_events(bucket, [("d2", DRIFT)], now())
    code, text = status(bucket, "--device", "nosuch", "--days", "3")
    shown = words(text)
    assert code == 1, text
    assert "events: none of device nosuch the last 3 days (UTC, today included)" in shown, text
    assert "device 'nosuch': no checkpoint names it and it has no event in the last 3" in shown
    # No bucket at all: the events say none, the problem names the bucket.
    missing = settings_moto_only.replace(bucket="iotcast-nosuch-" + settings_moto_only.app[4:])
    report = status_json(missing, code=1)
    assert report["events"]["events"] == []
    assert "does not exist" in report["problems"][0]


# ------------------------------------------------------------------- the fleet's figures
def exposition(shard: str, held: int, worst: list[tuple[str, str, float, float]]) -> str:
    """A processor's /metrics as the new contract gives it (monitoring/metrics.py)."""
    lines = [
        f'iotcast_shard_owned{{shard="{shard}"}} 1.0',
        f'iotcast_readings_processed_total{{shard="{shard}"}} 1000.0',
        f'iotcast_readings_learned_total{{shard="{shard}"}} 990.0',
        f"iotcast_devices_held {held}.0",
        "iotcast_devices_quiet 2.0",
        "iotcast_devices_reset_last_hour 1.0",
        "iotcast_watched_devices 1.0",
        'iotcast_champions{horizon="0",model="linear"} 3.0',
        f'iotcast_champions{{horizon="0",model="persistence"}} {held - 3}.0',
        'iotcast_events_total{kind="first_reading"} 5.0',
        'iotcast_events_total{kind="promotion"} 2.0',
        'iotcast_champion_info{device="w1",model="linear"} 1.0',
    ]
    ranks: dict[str, int] = {}
    for horizon, device, ratio, mae in worst:
        rank = ranks[horizon] = ranks.get(horizon, 0) + 1
        labels = f'device="{device}",horizon="{horizon}",rank="{rank}"'
        lines.append(f"iotcast_worst_device_error_ratio{{{labels}}} {ratio}")
        lines.append(f"iotcast_worst_device_mae_celsius{{{labels}}} {mae}")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def serving(text: str) -> Iterator[str]:
    """``text`` as /metrics on 127.0.0.1; yields its URL."""
    body = text.encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()


def test_status_scrape_shows_the_worst_devices_now_and_the_fleet_figures(bucket):
    one = exposition(
        "s0", 10, [("60", "d3", 2.5, 0.5), ("60", "d1", 1.2, 0.3), ("0", "d1", 1.1, 0.1)]
    )
    two = exposition("s1", 8, [("60", "d7", 1.8, 0.9), ("60", "d8", 0.9, 0.2)])
    with serving(one) as a, serving(two) as b:
        report = status_json(bucket, "--scrape", a, b)
        code, text = status(bucket, "--scrape", a, b)
        device_view = words(status(bucket, "--scrape", a, b, "--device", "d7")[1])
    fleet = report["fleet"]
    assert fleet["processors"] == 2 and fleet["devices_held"] == 18
    assert fleet["devices_quiet"] == 4 and fleet["devices_reset_last_hour"] == 2
    assert fleet["champions"] == {"0": {"linear": 6.0, "persistence": 12.0}}
    assert fleet["events"] == {"first_reading": 10.0, "promotion": 4.0}
    # Each process ranks its own devices; the fleet's worst are the worst of them all.
    worst = {
        h: [(r["rank"], r["device"], r["ratio"]) for r in rows]
        for h, rows in fleet["worst"].items()
    }
    assert worst == {"0": [(1, "d1", 1.1)], "60": [(1, "d3", 2.5), (2, "d7", 1.8)]}
    assert fleet["worst"]["60"][1]["url"] == b and fleet["worst"]["60"][1]["mae_celsius"] == 0.9
    assert [c["champions"] for c in report["components"]] == [{"w1": "linear"}] * 2

    assert code == 0, text
    shown = words(text)
    assert (
        "fleet (2 processors scraped): 18 devices held, 4 quiet, "
        "2 with a model reset in the last hour, 2 watched" in shown
    ), text
    assert "champions: 0 s: linear 6, persistence 12" in shown, text
    assert "events since the processors started: first_reading 10, promotion 4" in shown, text
    assert "worst devices now: served rolling MAE against persistence's (rank 1 = worst)" in shown
    # a row: horizon, rank, device, x persistence, served MAE, persistence MAE, process
    assert f"60 1 d3 2.50 0.500 0.200 {a}" in shown and f"60 2 d7 1.80 0.900 0.500 {b}" in shown
    assert "live champion (watched)" not in shown  # w1 has no checkpoint here
    assert (
        "among the worst devices now at 60 s: rank 2 of 2, served rolling MAE 0.900 °C = 1.80 x persistence's"
        in device_view
    )


def test_status_scrape_before_any_device_is_ranked_says_so(bucket):
    with serving(exposition("s0", 0, [])) as url:
        report = status_json(bucket, "--scrape", url)
        text = words(status(bucket, "--scrape", url)[1])
    assert report["fleet"]["worst"] == {}
    assert "worst devices now: none ranked yet" in text


# ------------------------------------------------------------ a real processor, end to end
def test_status_of_a_running_processor_shows_its_events_worst_devices_and_watched_champion(
    settings, tmp_path
):
    models = "persistence,rolling_mean,linear"
    support.create_resources(settings, 1)
    readings = list(itertools.islice(generate(days=1, seed=7), 1500))
    support.put_records(settings, support.items_of(readings))
    reference = support.reference(readings, load_catalog(), TaskConfig(horizons=(0, 60)), models)
    watched, *others = sorted(reference)
    flags = support.processor_flags(models, checkpoint_every=300)
    proc = support.start_processor(settings, tmp_path, *flags, "--watch", watched)
    url = f"http://127.0.0.1:{proc.port}/metrics"
    with support.stops_cleanly(proc):
        want = {d: dm.n_taken for d, dm in reference.items()}
        support.wait_checkpointed(settings, want, 90, "the readings checkpointed")

        def settled() -> dict | None:
            report = status_json(settings, "--scrape", url, "--events", "1000")
            firsts = [e for e in report["events"]["events"] if e["event"] == "first_reading"]
            ranked = report["fleet"] and all(report["fleet"]["worst"].get(h) for h in ("0", "60"))
            return report if len(firsts) == len(reference) and ranked else None

        report = support.wait_for(settled, 30, "every device's first reading in the events")
        promote = (
            "models",
            "promote",
            watched,
            "linear",
            "--horizon",
            "60",
            "--reason",
            "test",
            "--by",
            "ops",
        )
        with support.endpoints_env(settings), contextlib.redirect_stdout(io.StringIO()):
            assert main(support.operator_argv(settings, *promote)) == 0

        def promoted() -> dict | None:
            mine = status_json(settings, "--device", watched)
            kinds = [e["event"] for e in mine["events"]["events"]]
            return mine if "promotion" in kinds else None

        mine = support.wait_for(promoted, 30, "the operator's promotion in the device's events")
        code, text = status(settings, "--device", watched, "--scrape", url)
    assert code == 0, text
    # The events: one first reading per device; its promotions and drifts as the reference's.
    events = report["events"]["events"]
    for device, dm in reference.items():
        kinds = [e["event"] for e in events if e["device"] == device]
        assert kinds.count("first_reading") == 1, (device, kinds)
        assert kinds.count("promotion") == dm.n_promotions, (device, kinds)
        assert kinds.count("drift") == dm.n_drifts, (device, kinds)
    first, promotion = mine["events"]["events"]  # what happened to the watched device
    assert first == next(e for e in events if e["device"] == watched)
    assert (promotion["event"], promotion["model"], promotion["horizon"]) == (
        "promotion",
        "linear",
        60,
    )
    assert promotion["reason"].startswith("operator command ")
    assert promotion["reason"].endswith(": promote linear at 60s by ops: test")
    assert promotion["figures"]["old"] == "persistence"
    assert f"what happened to {watched} today (UTC): 2 event(s)" in words(text), text
    assert "promotion linear 60 operator command" in words(text), text
    # The fleet: every device held, a champion each per horizon, the worst-k per horizon.
    fleet = report["fleet"]
    assert fleet["devices_held"] == len(reference) and fleet["watched"] == 1
    assert {h: sum(m.values()) for h, m in fleet["champions"].items()} == {"0": 3.0, "60": 3.0}
    assert fleet["events"]["first_reading"] == len(reference)
    assert set(fleet["worst"]) == {"0", "60"}
    for rows in fleet["worst"].values():
        assert {r["device"] for r in rows} == set(reference), rows  # k=5 > 3 devices
        assert [r["ratio"] for r in rows] == sorted((r["ratio"] for r in rows), reverse=True)
    # Per-device series for the watched device only: its live champion, no one else's.
    devices = {d["device"]: d for d in report["devices"]}
    assert devices[watched]["live_champion"] == reference[watched].champion(0)
    assert all(devices[d]["live_champion"] is None for d in others)

"""The whole monitoring path with real parts, once per module.

mosquitto -> ``iotcast bridge`` (through the fault proxy, so Kinesis throttles
some records) -> Kinesis (moto) -> ``iotcast process`` -> Prometheus (Debian
server on 127.0.0.1, our prometheus.yml with its file_sd targets pointed at
the two processes and our rules) -> its HTTP API.

The feed: a short replay of generated telemetry (three devices, with the
generator's duplicates and out-of-order readings), one glitch reading, one
payload that is not JSON (dead letter at the bridge), one reading with a value
dropped and one clipped, one reading without the target (a humidity-only
device), one Kinesis record that
is not a reading (poison at the processor), and, put straight into Kinesis
(the bridge's throughput is not the subject here), a synthetic device whose
temperature is a function of humidity (a nowcast model beats persistence and
is promoted after the selection's cool-down) and whose noise then jumps
(ADWIN drift), so that every labelled metric has had a reason to appear.

The processor watches the synthetic device and two of the three generated
ones (``--watch``): they get the per-device series, the third only its share
of the fleet figures and, perhaps, a place among the ``--worst-k 2`` worst.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

import monitoring.metrics
from iotcast.settings import Settings
from iotcast.stack import ManagedProcess, start_mosquitto, start_prometheus
from online_models.catalog import BUILTIN
from telemetry.generate import generate
from telemetry.reading import Reading, encode, topic_for
from telemetry.replay import replay
from tests import support
from tests.faultproxy import FaultProxy
from tests.test_monitoring import (
    PROMETHEUS_BUILTINS,
    VARIABLES,
    dashboard_expressions,
    module_metric_labels,
    source_metric_names,
    substitute,
)

# About two minutes on a loaded 2-core machine: the processor's throughput bounds it.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]

ROOT = Path(__file__).resolve().parent.parent
PROM_DIR = ROOT / "monitoring" / "prometheus"

SYNTHETIC = "synthetic-0"
WORST_K = 2
OUTCOMES = ("learned", "held", "duplicate", "late", "glitch", "no_target")  # a decoded reading's
# Promotion after the selection's 5000-prediction cool-down (then 500 readings of
# grace); the noise jumps at 7000. ADWIN sees blocks of 50 residuals and checks
# every 32 blocks, so the first check with enough calm blocks before the jump is
# at reading 8700 (measured with online_models.device.DeviceModels offline).
SYNTHETIC_N = 8800
NOISE_JUMP_AT = 7000
HORIZONS = "0,60"
# cheap: the processor runs on 2 shared cores in CI; wild_linear diverges (a River linear
# regression with a learning rate far too high), so the guard resets it again and again
MODELS = "persistence,linear,wild_linear"
WILD = """
[models.wild_linear]
class = "river.linear_model.LinearRegression"
kind = "regressor"
params = { optimizer = { class = "river.optim.SGD", params = { lr = 0.5 } }, intercept_lr = 0.5 }
"""


def synthetic_device(n: int = SYNTHETIC_N, start: float = 1_594_512_000.0) -> list[Reading]:
    """Temperature = f(humidity) + noise; humidity random, so last-value nowcasts are poor."""
    rng = random.Random(11)
    out = []
    for i in range(n):
        humidity = rng.uniform(40.0, 60.0)
        noise = rng.gauss(0.0, 0.02 if i < NOISE_JUMP_AT else 3.0)
        temp = round(20.0 + 0.2 * (humidity - 50.0) + noise, 2)
        out.append(
            Reading(
                start + 5.0 * i,
                SYNTHETIC,
                0.005,
                round(humidity, 2),
                False,
                0.007,
                False,
                0.02,
                temp,
            )
        )
    return out


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def scrape(port: int) -> dict[str, float]:
    """Every sample of a /metrics page: ``name{labels}`` -> value."""
    text = _get(f"http://127.0.0.1:{port}/metrics").decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


def total(samples: dict[str, float], name: str) -> float:
    return sum(v for k, v in samples.items() if k.split("{")[0] == name)


@dataclass
class Pipeline:
    settings: Settings
    prometheus: ManagedProcess
    bridge: ManagedProcess
    processor: ManagedProcess
    bridge_port: int
    processor_port: int
    devices: set[str]  # every device with the target sensor
    watched: set[str]  # the processor's watch list: all of them but one
    published: int
    direct: int
    proxy: FaultProxy

    def query(self, expr: str) -> list[dict]:
        url = f"{self.prometheus.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        answer = json.loads(_get(url))
        assert answer["status"] == "success", answer
        return answer["data"]["result"]


def _prometheus_config(work: Path, bridge_port: int, processor_port: int) -> Path:
    """Our prometheus.yml, with 1 s intervals, absolute rule paths and local file_sd targets."""
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROM_DIR / p) for p in config["rule_files"]]
    targets = work / "targets"
    targets.mkdir()
    ports = {"iotcast-bridge": bridge_port, "iotcast-processor": processor_port}
    for job in config["scrape_configs"]:
        f = targets / f"{job['job_name']}.yml"
        f.write_text(yaml.safe_dump([{"targets": [f"127.0.0.1:{ports[job['job_name']]}"]}]))
        job["file_sd_configs"] = [{"files": [str(f)], "refresh_interval": "1s"}]
    path = work / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _serves_metrics(proc: ManagedProcess) -> bool:
    try:
        return b"iotcast_" in _get(f"http://127.0.0.1:{proc.port}/metrics", timeout=1)
    except OSError:
        return False


def _wait(what: str, check, timeout: float, procs: list[ManagedProcess]) -> None:
    """Poll ``check() -> (done, figures)`` until done; on timeout say where it stood."""
    deadline = time.monotonic() + timeout
    figures = None
    while time.monotonic() < deadline:
        for p in procs:
            assert p.alive(), f"{p.name} died:\n{p.log_tail(40)}"
        done, figures = check()
        if done:
            return
        time.sleep(0.5)
    tails = "\n".join(f"--- {p.name}\n{p.log_tail(30)}" for p in procs)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}: {figures}\n{tails}")


@pytest.fixture(scope="module")
def pipeline(
    moto_server: ManagedProcess,
    kinesalite: ManagedProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pipeline]:
    work = tmp_path_factory.mktemp("monitoring-e2e")
    unique = os.urandom(5).hex()
    with ExitStack() as stack:
        broker = start_mosquitto(work / "broker")
        stack.callback(broker.stop)
        settings = support.settings_on(
            moto_server.url,
            kinesis_url=kinesalite.url,
            mqtt_url=f"mqtt://127.0.0.1:{broker.port}",
            unique=unique,
        )
        kinesis = settings.client("kinesis")
        kinesis.create_stream(StreamName=settings.stream, ShardCount=1)
        kinesis.get_waiter("stream_exists").wait(
            StreamName=settings.stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100}
        )
        settings.client("s3").create_bucket(Bucket=settings.bucket)
        proxy = FaultProxy.before(settings, throttle_share=0.1)
        stack.callback(proxy.close)

        readings = list(generate(days=0.02, seed=5, devices=3))  # about 1,200 readings
        generated = sorted({r.device for r in readings})
        # The glitch and the noted reading below go to readings[0]'s device: watched.
        unwatched = next(d for d in generated if d != readings[0].device)
        watched = {*generated, SYNTHETIC} - {unwatched}

        quiet = settings.replace(log_level="WARNING")
        bridge = support.start_bridge(proxy.route(quiet), work, ready=_serves_metrics, timeout=60)
        stack.callback(bridge.stop)
        models_file = work / "models.toml"
        models_file.write_text(BUILTIN.read_text() + WILD)
        processor = support.start_processor(
            quiet, work, "--create-resources", "--horizons", HORIZONS, "--models", MODELS,
            "--checkpoint-seconds", "2", "--models-file", str(models_file),
            "--watch", ",".join(sorted(watched)), "--worst-k", str(WORST_K),
            ready=_serves_metrics, timeout=60,
        )  # fmt: skip
        stack.callback(processor.stop)
        bridge_port, processor_port = bridge.port, processor.port
        prometheus = start_prometheus(work, _prometheus_config(work, bridge_port, processor_port))
        stack.callback(prometheus.stop)

        glitch = Reading(
            readings[-1].ts + 1, readings[0].device, 0.0, 1.0, False, 0.0, False, 0.0, 0.0
        )
        # Not a reading, straight into Kinesis: poison for the processor.
        kinesis.put_record(StreamName=settings.stream, Data=b"\x00poison", PartitionKey="poison")
        # The long synthetic series goes straight into Kinesis (the bridge's
        # throughput is not what this test is about), the rest through MQTT.
        synthetic = synthetic_device()
        for i in range(0, len(synthetic), 500):
            answer = kinesis.put_records(
                StreamName=settings.stream,
                Records=[
                    {"Data": encode(r), "PartitionKey": r.device} for r in synthetic[i : i + 500]
                ],
            )
            assert answer["FailedRecordCount"] == 0
        published = replay(settings.mqtt, [*readings, glitch], qos=1)
        assert published == len(readings) + 1
        # Not a reading: dead-lettered by the bridge.
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bad-{unique}")
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        client.publish(topic_for("bad-device"), b"this is not json", qos=1).wait_for_publish(10)
        # A value dropped (co), one clipped (humidity at saturation), and a reading without
        # the target (a device that never reports it: no model set, no series).
        noted = {"temp": 22.0, "humidity": 101.0, "co": "high"}
        device = readings[0].device
        for topic, body in (
            (topic_for(device), {"data": noted, "device_id": device, "ts": glitch.ts + 1}),
            (topic_for("humid-0"), {"data": {"humidity": 40.0}, "device_id": "humid-0", "ts": glitch.ts}),
        ):  # fmt: skip
            client.publish(topic, orjson.dumps(body), qos=1).wait_for_publish(10)
        client.disconnect()
        client.loop_stop()

        procs = [bridge, processor, prometheus]

        def bridge_done() -> tuple[bool, dict]:
            s = scrape(bridge_port)
            figures = {
                "forwarded": total(s, "iotcast_bridge_readings_forwarded_total"),
                "dead letters": total(s, "iotcast_bridge_dead_letters_total"),
                "published": published,
            }
            return figures["forwarded"] >= published and figures["dead letters"] >= 1, figures

        _wait("the bridge to forward every reading", bridge_done, 120, procs)
        forwarded = total(scrape(bridge_port), "iotcast_bridge_readings_forwarded_total")
        expected = forwarded + len(synthetic)

        def processor_done() -> tuple[bool, dict]:
            s = scrape(processor_port)
            figures = {kind: total(s, f"iotcast_readings_{kind}_total") for kind in OUTCOMES}
            figures.update(
                expected=expected,
                poison=total(s, "iotcast_records_poison_total"),
                processed=total(s, "iotcast_readings_processed_total"),
            )
            # and a fleet sweep (every 5 s) that saw every device held: a champion per horizon
            figures.update(held=total(s, "iotcast_devices_held"), champions=total(s, "iotcast_champions"))  # fmt: skip
            swept = figures["champions"] == figures["held"] * len(HORIZONS.split(","))
            seen = sum(figures[k] for k in OUTCOMES)
            return seen >= expected and figures["poison"] >= 1 and swept, figures

        _wait("the processor to take every forwarded reading", processor_done, 240, procs)
        time.sleep(3)  # two more scrapes and rule evaluations
        yield Pipeline(
            settings, prometheus, bridge, processor, bridge_port, processor_port,
            {*generated, SYNTHETIC}, watched, published, len(synthetic), proxy,
        )  # fmt: skip


WORST = {"iotcast_worst_device_error_ratio", "iotcast_worst_device_mae_celsius"}


def _poll(
    query: Callable[[], list[dict]], done: Callable[[list[dict]], bool], timeout: float = 20
) -> list[dict]:
    """``query()`` until ``done(result)`` or the timeout (rules see a scrape a few seconds old)."""
    deadline = time.monotonic() + timeout
    while True:
        result = query()
        if done(result) or time.monotonic() > deadline:
            return result
        time.sleep(1)


def test_prometheus_has_per_device_series_of_the_watched_devices_only(pipeline: Pipeline) -> None:
    up = pipeline.query('up{job=~"iotcast-.*"}')
    assert {(r["metric"]["job"], r["value"][1]) for r in up} == {
        ("iotcast-bridge", "1"),
        ("iotcast-processor", "1"),
    }
    mae = pipeline.query('iotcast_rolling_mae_celsius{job="iotcast-processor"}')
    assert {r["metric"]["device"] for r in mae} == pipeline.watched
    assert {r["metric"]["horizon"] for r in mae} == set(HORIZONS.split(","))
    assert {"persistence", "linear", "served"} <= {r["metric"]["model"] for r in mae}
    values = [float(r["value"][1]) for r in mae]
    assert all(math.isfinite(v) and v >= 0 for v in values) and max(values) > 0
    predictions = pipeline.query('iotcast_prediction_celsius{job="iotcast-processor"}')
    assert {r["metric"]["device"] for r in predictions} == pipeline.watched
    wild = [
        (r["metric"]["model"], r["metric"]["horizon"], r["metric"]["device"], r["value"][1])
        for r in predictions
        if not -20 < float(r["value"][1]) < 60
    ]
    assert wild == []
    readings = pipeline.query("sum by (device) (iotcast_device_readings_total)")
    assert {r["metric"]["device"] for r in readings} == pipeline.watched
    # The device not watched: no series names it, but perhaps the worst-k gauges.
    (unwatched,) = pipeline.devices - pipeline.watched
    named = pipeline.query(
        f'count by (__name__) ({{__name__=~"iotcast_.+", device="{unwatched}"}})'
    )
    assert {r["metric"]["__name__"] for r in named} <= WORST
    # The recording rules work on the watched devices' series: one champion MAE per
    # device and horizon.
    champion = _poll(
        lambda: pipeline.query("device_horizon:iotcast_champion_rolling_mae_celsius:max"),
        lambda result: {r["metric"]["device"] for r in result} == pipeline.watched,
    )
    pairs = [(r["metric"]["device"], r["metric"]["horizon"]) for r in champion]
    assert len(pairs) == len(set(pairs)) and {d for d, _ in pairs} == pipeline.watched
    # Every open shard has an owner.
    owned = _poll(
        lambda: pipeline.query("iotcast:stream_shards:max - iotcast:shards_owned:count"),
        lambda result: [float(r["value"][1]) for r in result] == [0.0],
    )
    assert [float(r["value"][1]) for r in owned] == [0.0]


def test_prometheus_sees_every_reading_accounted_for(pipeline: Pipeline) -> None:
    def scalar(expr: str) -> float:
        result = pipeline.query(expr)
        return float(result[0]["value"][1]) if result else 0.0

    forwarded = scalar("sum(iotcast_bridge_readings_forwarded_total)")
    assert forwarded >= pipeline.published
    seen = sum(scalar(f"sum(iotcast_readings_{kind}_total)") for kind in OUTCOMES)
    assert seen == forwarded + pipeline.direct
    assert scalar("sum(iotcast_readings_no_target_total)") == 1
    assert scalar("sum(iotcast_readings_glitch_total)") >= 1
    assert scalar("sum(iotcast_bridge_dead_letters_total)") >= 1
    assert scalar("sum(iotcast_records_poison_total)") >= 1
    # Counted per shard (one here), not per device.
    learned = pipeline.query("iotcast_readings_learned_total")
    assert [sorted(r["metric"]) for r in learned] == [["__name__", "instance", "job", "shard"]]
    # The watched devices' own counts are part of the fleet's, not all of it.
    watched = scalar('sum(iotcast_device_readings_total{outcome="learned"})')
    assert 0 < watched < scalar("sum(iotcast_readings_learned_total)")
    assert scalar('sum(iotcast_device_readings_total{outcome="glitch"})') >= 1
    # The bridge forwards the noted reading as sent; the processor finds the same values.
    for prefix in ("iotcast_bridge_", "iotcast_"):
        dropped = pipeline.query(f"{prefix}values_dropped_total")
        assert {(r["metric"]["field"], r["metric"]["reason"], r["value"][1]) for r in dropped} == {
            ("co", "wrong_type", "1")
        }
        clipped = pipeline.query(f"{prefix}values_clipped_total")
        assert {(r["metric"]["field"], r["metric"]["reason"], r["value"][1]) for r in clipped} == {
            ("humidity", "clipped", "1")
        }


def test_fleet_figures_name_no_device_but_the_worst_k(pipeline: Pipeline) -> None:
    def by(expr: str, *labels: str) -> dict[tuple[str, ...], float]:
        return {
            tuple(r["metric"].get(k, "") for k in labels): float(r["value"][1])
            for r in pipeline.query(expr)
        }

    horizons = HORIZONS.split(",")
    # Only the watched devices' series and the worst-k gauges carry a device label.
    named = by('count by (__name__) ({__name__=~"iotcast_.+", device!=""})', "__name__")
    labels = module_metric_labels()
    assert {name for (name,) in named} <= {n for n, ls in labels.items() if "device" in ls}
    # ... the watched devices' and the k worst's only.
    devices = by('count by (device) ({__name__=~"iotcast_.+", device!=""})', "device")
    assert {d for (d,) in devices} <= pipeline.watched | {
        r["metric"]["device"] for r in pipeline.query("iotcast_worst_device_error_ratio")
    }
    # The error histogram: the served forecast's and persistence's at every horizon.
    counts = by("sum by (model, horizon) (iotcast_error_celsius_count)", "model", "horizon")
    for model in ("served", "persistence", "linear"):
        assert all(counts.get((model, h), 0) > 0 for h in horizons), (model, counts)
    # Every device held has one champion per horizon.
    held = by("sum(iotcast_devices_held)")[()]
    assert held == len(pipeline.devices)
    assert by("sum by (horizon) (iotcast_champions)", "horizon") == {(h,): held for h in horizons}
    assert by("sum(iotcast_watched_devices)") == {(): len(pipeline.watched)}
    # The k worst devices per horizon, ranked 1..n.
    worst = pipeline.query("iotcast_worst_device_error_ratio")
    for h in horizons:
        ranks = sorted(r["metric"]["rank"] for r in worst if r["metric"]["horizon"] == h)
        assert ranks == [str(i) for i in range(1, len(ranks) + 1)] and 0 < len(ranks) <= WORST_K
    assert {r["metric"]["device"] for r in worst} <= pipeline.devices
    assert all(math.isfinite(float(r["value"][1])) and float(r["value"][1]) > 0 for r in worst)

    def key(r: dict) -> tuple[str, str, str]:
        return r["metric"]["horizon"], r["metric"]["rank"], r["metric"]["device"]

    mae = pipeline.query("iotcast_worst_device_mae_celsius")
    assert {key(r) for r in mae} == {key(r) for r in worst}
    # Events by kind, and the counters by model they match.
    events = by("sum by (kind) (iotcast_events_total)", "kind")
    assert events[("first_reading",)] == len(pipeline.devices)
    for kind, counter in (
        ("promotion", "iotcast_promotions_total"),
        ("drift", "iotcast_drift_detected_total"),
        ("model_reset", "iotcast_model_resets_total"),
    ):
        assert events[(kind,)] >= 1 and by(f"sum({counter})") == {(): events[(kind,)]}
    resets = by("sum by (model) (iotcast_model_resets_total)", "model")
    assert resets.get(("wild_linear",), 0) >= 1


def _declared() -> dict[str, str]:
    return {name: metric.kind for name, metric in monitoring.metrics.declared().items()}


def test_every_declared_metric_is_exported_by_the_bridge_or_the_processor(
    pipeline: Pipeline,
) -> None:
    """Scraped samples, not just HELP lines: a labelled metric shows only once used."""
    samples = {**scrape(pipeline.bridge_port), **scrape(pipeline.processor_port)}
    names = {k.split("{")[0] for k in samples}
    suffix = {"counter": "_total", "histogram": "_count", "gauge": ""}
    missing = sorted(
        name for name, kind in _declared().items() if f"{name}{suffix[kind]}" not in names
    )
    assert missing == [], f"declared in monitoring/metrics.py but never exported: {missing}"


def test_every_dashboard_query_reads_metrics_a_real_scrape_exports(pipeline: Pipeline) -> None:
    """Every metric a dashboard query names (recording rules resolved through
    recording.yml) is in a scrape of the processor (watching devices) or the bridge, and
    every panel query and template variable returns series in the real Prometheus."""
    samples = {**scrape(pipeline.bridge_port), **scrape(pipeline.processor_port)}
    exported = {k.split("{")[0] for k in samples}
    expressions = dashboard_expressions()
    used = {
        where: source_metric_names(substitute(e)) - PROMETHEUS_BUILTINS for where, e in expressions
    }
    missing = {f"{where}: {sorted(n - exported)}" for where, n in used.items() if n - exported}
    assert missing == set()
    assert len(set().union(*used.values())) > 40
    # horizon 0: the stack is younger than the other horizons, and the device dashboard
    # draws a prediction at the time it is for (offset by its horizon)
    variables = {**VARIABLES, "device": SYNTHETIC, "horizon": "0", "model": "linear"}
    may_be_empty = {  # the device is perhaps not among the k worst now
        "device.json: panel 'Among the worst devices now' A",
    }
    empty = [
        f"{where}: {expr}"
        for where, expr in expressions
        if ": annotation" not in where  # they show events, when there are some
        and where not in may_be_empty
        and not pipeline.query(substitute(expr, variables))
    ]
    assert empty == []


def test_alert_rules_fire_on_the_real_promotion_drift_and_resets(pipeline: Pipeline) -> None:
    """Our fleet alert rules, evaluated by Prometheus on the processor's real counters: they
    name the model, never the device (that is in the event log)."""
    wanted = {"IotcastChampionPromoted", "IotcastDriftDetected", "IotcastModelResetsRepeated"}
    alerts = _poll(
        lambda: pipeline.query('ALERTS{alertstate="firing"}'),
        lambda result: wanted <= {a["metric"]["alertname"] for a in result},
    )
    firing: dict[str, list[dict[str, str]]] = {}
    for a in alerts:
        firing.setdefault(a["metric"]["alertname"], []).append(a["metric"])
    assert wanted <= set(firing)
    assert not set(firing) & {"IotcastTargetDown", "IotcastShardUnowned"}
    assert [m for name in wanted for m in firing[name] if "device" in m] == []
    assert {m["model"] for m in firing["IotcastModelResetsRepeated"]} == {"wild_linear"}
    assert {m["model"] for m in firing["IotcastChampionPromoted"]} == {"linear"}

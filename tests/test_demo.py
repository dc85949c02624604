"""``iotcast demo``: refusals, clean shutdown, metric scraping and the live view, and the
whole demo end to end on real components (mosquitto, kinesalite, moto server, Prometheus)."""

from __future__ import annotations

import argparse
import hashlib
import http.server
import io
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from rich.console import Console

from iotcast import live
from iotcast import stack as local_stack
from iotcast.cli import common_flags
from iotcast.demo import command as demo
from iotcast.demo import run as demo_run
from iotcast.demo import stack as demo_stack
from iotcast.demo import summary as demo_summary
from iotcast.settings import Settings
from iotcast.stack import ComponentMissing, ManagedProcess, free_port
from iotcast.supervisor import Interrupts, ProcessList

REPO = Path(__file__).resolve().parent.parent


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(parents=[common_flags()])
    demo.add_arguments(parser)
    return parser.parse_args(argv)


def port_flags(ports: demo_stack.Ports) -> list[str]:
    return [
        "--mqtt-port", str(ports.mqtt), "--kinesis-port", str(ports.kinesis),
        "--moto-port", str(ports.moto), "--prometheus-port", str(ports.prometheus),
        "--bridge-metrics-port", str(ports.bridge),
        "--processor-metrics-port", str(ports.processor), "--workers", str(ports.workers),
    ]  # fmt: skip


def free_ports() -> demo_stack.Ports:
    ports: set[int] = set()
    while len(ports) < 5:
        ports.add(free_port())
    # The two workers' /metrics: a port and the next, below the ephemeral range (a port
    # the kernel just called free there is soon some client's outbound port: the next one
    # was taken by the time the second worker bound it).
    rng = random.Random()
    while True:
        p = rng.randrange(20_000, 32_000)
        if not ({p, p + 1} & ports or local_stack.port_in_use(p) or local_stack.port_in_use(p + 1)):
            break
    a, b, c, d, e = sorted(ports)
    return demo_stack.Ports(mqtt=a, kinesis=b, moto=c, prometheus=d, bridge=e, processor=p)


@pytest.fixture
def out_dir() -> Iterator[Path]:
    """An output directory outside pytest's basetemp, which concurrent pytest sessions on
    the same machine rotate away (with mosquitto's and Prometheus' data in it) mid-run."""
    path = Path(tempfile.mkdtemp(prefix="iotcast-demo-test-"))
    yield path / "out"
    shutil.rmtree(path, ignore_errors=True)


def demo_cmd(out: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "iotcast.cli", "demo", "--out", str(out), "--no-live",
            *port_flags(free_ports()), *args]  # fmt: skip


def wait_demo(child: subprocess.Popen, timeout: float) -> str:
    """Wait for the demo; past ``timeout`` stop it with SIGTERM (it then stops its own
    children) and fail.  Returns its output."""
    try:
        output, _ = child.communicate(timeout=timeout)
        return output
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGTERM)
        try:
            output, _ = child.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            child.kill()
            output, _ = child.communicate()
        pytest.fail(f"the demo did not finish in {timeout:.0f} s:\n{output[-6000:]}")


def wait_pids_file(out: Path, child: subprocess.Popen, names: set[str]) -> dict[str, int]:
    deadline = time.monotonic() + 90
    pids: dict[str, int] = {}
    while time.monotonic() < deadline and child.poll() is None:
        try:
            pids = json.loads((out / "pids.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            pids = {}
        if names <= set(pids):
            return pids
        time.sleep(0.1)
    child.kill()
    pytest.fail(f"the demo did not start {names}: {pids}\n{child.communicate()[0][-4000:]}")


def gone(pid: int) -> bool:
    """True when ``pid`` is no longer a live process (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


# ---------------------------------------------------------------- refusals


def test_demo_refuses_a_taken_port_and_starts_nothing(tmp_path, capsys):
    ports = free_ports()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports.prometheus))
        taken.listen()
        args = parse(["--out", str(tmp_path / "out"), *port_flags(ports)])
        code = demo.run(Settings.resolve(env={}, toml={}, flags={}), args)
    err = capsys.readouterr().err
    assert code == 2
    assert f"port {ports.prometheus} (prometheus)" in err and "--prometheus-port" in err
    assert not (tmp_path / "out").exists()


def test_demo_refuses_the_same_port_twice():
    with pytest.raises(demo_stack.DemoRefused, match="given to both mosquitto and prometheus"):
        demo_stack.check_ports(
            demo_stack.Ports(mqtt=41000, prometheus=41000), in_use=lambda p: False
        )


def test_demo_refuses_a_missing_component_saying_how_to_get_it(tmp_path, capsys, monkeypatch):
    real = local_stack.require

    def require(binary: str) -> str:
        if binary == "mosquitto":
            raise ComponentMissing(
                "mosquitto is not installed; get it with: apt-get install -y mosquitto"
            )
        return real(binary)

    monkeypatch.setattr(local_stack, "require", require)
    args = parse(["--out", str(tmp_path / "out"), *port_flags(free_ports())])
    code = demo.run(Settings.resolve(env={}, toml={}, flags={}), args)
    err = capsys.readouterr().err
    assert code == 2
    assert "apt-get install -y mosquitto" in err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------- shutdown

_STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(600)"
_POLITE = "import time; print('up', flush=True); time.sleep(600)"


def test_stop_all_ends_children_even_one_that_ignores_sigterm(tmp_path):
    procs = ProcessList()
    for name, code in (("polite", _POLITE), ("stubborn", _STUBBORN)):
        proc = ManagedProcess(name, [sys.executable, "-c", code], 0, tmp_path / f"{name}.log")
        procs.start(proc, ready=lambda p=proc: "up" in p.log_tail())
    pids = procs.pids()
    assert all(not gone(pid) for pid in pids.values())
    codes = procs.stop_all(grace=1)
    assert codes == {"stubborn": -signal.SIGKILL, "polite": -signal.SIGTERM}
    assert all(gone(pid) for pid in pids.values())
    assert procs.running() == []


STACK = {"reaper", "kinesalite", "moto_server", "mosquitto", "prometheus"}


def test_sigterm_and_ctrl_c_both_interrupt_the_demo():
    before = signal.getsignal(signal.SIGTERM)
    interrupts = Interrupts()
    interrupts.install()
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), sig)
                time.sleep(1)  # the handler runs at the next bytecode
    finally:
        interrupts.restore()
    assert signal.getsignal(signal.SIGTERM) == before


def test_demo_interrupted_while_starting_stops_everything_it_started(out_dir):
    child = subprocess.Popen(
        demo_cmd(out_dir), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    pids = wait_pids_file(out_dir, child, STACK)
    child.send_signal(signal.SIGINT)
    output = wait_demo(child, timeout=90)
    assert child.returncode == 130, output
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["outcome"] == "interrupted"
    assert set(pids.items()) <= set(summary["pids"].items())
    assert summary["still_running"] == []
    assert all(gone(pid) for pid in summary["pids"].values())


def test_demo_killed_outright_leaves_no_process_behind(out_dir):
    """SIGKILL skips the demo's own shutdown: its watchdog stops the children."""
    child = subprocess.Popen(
        demo_cmd(out_dir), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    pids = wait_pids_file(out_dir, child, STACK)
    child.kill()
    child.communicate(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(gone(p) for p in pids.values()):
        time.sleep(0.2)
    alive = {name: pid for name, pid in pids.items() if not gone(pid)}
    for pid in alive.values():  # do not leave them to the next test
        os.kill(pid, signal.SIGKILL)
    reaper_log = (out_dir / "logs" / "reaper.log").read_text()
    assert alive == {}, reaper_log
    assert "died; stopping" in reaper_log


# ------------------------------------------------------ scraping and the view


def _names_declared_in_monitoring() -> set[str]:
    import monitoring.metrics as m

    names = set()
    for name, metric in m.declared().items():
        if metric.kind == "histogram":
            names |= {name + s for s in ("_bucket", "_sum", "_count")}
        else:
            names.add(name + ("_total" if metric.kind == "counter" else ""))
    return names


def test_the_view_reads_only_metrics_declared_in_monitoring():
    assert set(live.METRIC_NAMES) <= _names_declared_in_monitoring()


def _bridge_page() -> str:
    r = CollectorRegistry()
    Counter("iotcast_bridge_messages_received", "", registry=r).inc(1003)
    Counter("iotcast_bridge_readings_forwarded", "", registry=r).inc(1000)
    dead = Counter("iotcast_bridge_dead_letters", "", ["reason"], registry=r)
    dead.labels("bad_json").inc(2)
    dead.labels("out_of_range").inc(1)
    Gauge("iotcast_bridge_buffer_records", "", registry=r).set(0)
    return generate_latest(r).decode()


def _processor_page(
    devices: dict[str, tuple[int, float]],
    shards: dict[str, tuple[int, float]],
    champion: str,
    errors: dict[tuple[str, str], tuple[float, int]] | None = None,
    worst: tuple[str, str, float] | None = None,
    unwatched: int = 0,
) -> str:
    """A processor's page: its shards' counts and the watched ``devices``.

    devices: watched device -> (learned, last ts); shards: shard -> (owned, lag); errors:
    (model, horizon) -> (sum, count) of the fleet's error histogram; worst: (horizon,
    device, ratio) of rank 1; unwatched: readings learned of a device not watched."""
    r = CollectorRegistry()
    fleet = {
        outcome: Counter(f"iotcast_readings_{outcome}", "", ["shard"], registry=r)
        for outcome in ("learned", "glitch", "duplicate", "no_target")
    }
    held = Gauge("iotcast_devices_held", "", registry=r)
    readings = Counter("iotcast_device_readings", "", ["device", "outcome"], registry=r)
    last = Gauge("iotcast_last_reading_timestamp_seconds", "", ["device"], registry=r)
    info = Gauge("iotcast_champion_info", "", ["device", "model"], registry=r)
    rolling = Gauge("iotcast_rolling_mae_celsius", "", ["device", "model", "horizon"], registry=r)
    mae = Gauge("iotcast_mae_celsius", "", ["device", "model", "horizon"], registry=r)
    actual = Gauge("iotcast_actual_celsius", "", ["device"], registry=r)
    pred = Gauge("iotcast_prediction_celsius", "", ["device", "model", "horizon"], registry=r)
    owned = Gauge("iotcast_shard_owned", "", ["shard"], registry=r)
    lag = Gauge("iotcast_shard_lag_seconds", "", ["shard"], registry=r)
    ratio = Gauge("iotcast_worst_device_error_ratio", "", ["horizon", "rank", "device"], registry=r)
    error = Histogram("iotcast_error_celsius", "", ["model", "horizon"], buckets=(1.0,), registry=r)
    # The fleet's counts: the watched devices' readings, and one device not watched.
    shard = next(iter(shards))
    fleet["learned"].labels(shard).inc(unwatched)
    for device, (n, ts) in devices.items():
        fleet["learned"].labels(shard).inc(n)
        fleet["glitch"].labels(shard).inc(1)
        readings.labels(device, "learned").inc(n)
        readings.labels(device, "glitch").inc(1)
        readings.labels(device, "duplicate").inc(0)
        last.labels(device).set(ts)
        info.labels(device, "persistence").set(0)
        info.labels(device, champion).set(1)
        for model, value in ((champion, 0.11), ("persistence", 0.25)):
            rolling.labels(device, model, "0").set(value + ts % 10 / 100)
            mae.labels(device, model, "0").set(value)
            rolling.labels(device, model, "60").set(9.0)
        actual.labels(device).set(22.5)
        pred.labels(device, champion, "0").set(22.43)
    fleet["duplicate"].labels(shard).inc(0)
    fleet["no_target"].labels(shard).inc(0)
    held.set(len(devices) + (unwatched > 0))
    for shard_id, (is_owned, seconds) in shards.items():
        owned.labels(shard_id).set(is_owned)
        lag.labels(shard_id).set(seconds)
    for (model, h), (total, count) in (errors or {}).items():
        child = error.labels(model, h)
        for _ in range(count - 1):
            child.observe(0.0)
        child.observe(total)
    if worst is not None:
        ratio.labels(worst[0], "1", worst[1]).set(worst[2])
    return generate_latest(r).decode()


def _serve(pages: dict[str, str]) -> tuple[http.server.HTTPServer, int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            if self.path not in pages:
                self.send_error(404)
                return
            body = pages[self.path].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def test_collect_sums_counters_and_takes_device_gauges_from_the_newest_holder():
    # processor 1 held watched device "a" until ts 100, then processor 2 took its shard over.
    p1 = _processor_page(
        {"a": (400, 100.0), "b": (300, 200.0)},
        {"shardId-000000000000": (0, 7.0), "shardId-000000000001": (1, 0.5)},
        champion="persistence",
        errors={("served", "900"): (3.0, 10), ("persistence", "900"): (4.0, 10)},
        worst=("900", "z", 1.5),
        unwatched=5,
    )
    p2 = _processor_page(
        {"a": (297, 150.0)},
        {"shardId-000000000000": (1, 1.5)},
        champion="linear",
        errors={("served", "900"): (1.0, 10), ("persistence", "900"): (4.0, 10)},
        worst=("900", "y", 2.5),
    )
    server, port = _serve({"/bridge": _bridge_page(), "/p1": p1, "/p2": p2})
    try:
        base = f"http://127.0.0.1:{port}"
        processors = [f"{base}/p1", f"{base}/p2", f"{base}/missing"]
        snap = live.Scraper(f"{base}/bridge", processors).collect()
        down = live.Scraper("http://127.0.0.1:9/metrics", [], timeout=0.5).collect()
    finally:
        server.shutdown()
    assert snap.bridge_up and snap.processors_up == (True, True, False)
    assert (snap.received, snap.forwarded, snap.dead_lettered) == (1003, 1000, 3)
    assert snap.dead_letters_by_reason == {"bad_json": 2, "out_of_range": 1}
    # the fleet's counts (by shard), and the watched devices' readings (by device)
    assert (snap.learned, snap.glitches, snap.duplicates, snap.no_target) == (1002, 3, 0, 0)
    assert snap.accounted == 1005 and snap.devices_held == 4
    assert snap.learned_by_device == {"a": 697, "b": 300}
    assert snap.device_readings["a"] == {
        "learned": 697, "held": 0, "duplicate": 0, "late": 0, "glitch": 2}  # fmt: skip
    # the fleet's error: the histograms summed over the processors; the worst of all
    (fleet,) = snap.fleet
    assert (fleet.horizon, fleet.scored) == ("900", 20)
    assert (fleet.worst_device, fleet.worst_ratio) == ("y", 2.5)
    assert fleet.served_mae == pytest.approx(0.2) and fleet.persistence_mae == pytest.approx(0.4)
    assert snap.shard_lag == {"shardId-000000000000": 1.5, "shardId-000000000001": 0.5}
    a, b = snap.devices
    assert (a.device, a.champion, a.learned) == ("a", "linear", 697)
    assert a.champion_rolling_mae == pytest.approx(0.11) and a.baseline_rolling_mae == 0.25
    assert (a.champion_mae, a.baseline_mae, a.actual, a.predicted) == (0.11, 0.25, 22.5, 22.43)
    assert (b.device, b.champion) == ("b", "persistence")
    assert demo_run.pipeline_done(snap, 1003, replay_finished=True)
    assert not demo_run.pipeline_done(snap, 1003, replay_finished=False)
    assert not down.bridge_up and down.forwarded == 0


def test_live_view_renders_the_pipeline_lag_fleet_and_watched_devices():
    p = _processor_page(
        {"b8:27:eb:bf:9d:51": (1234, 100.0)},
        {"shardId-000000000001": (1, 2.25)},
        "linear",
        errors={("served", "3600"): (6.0, 20), ("persistence", "3600"): (8.0, 20)},
        worst=("3600", "c6:ab:dc:89:11:7e", 1.75),
        unwatched=66,
    )
    snap = live.aggregate(live.parse_metrics(_bridge_page()), [live.parse_metrics(p), None])
    console = Console(width=140, file=io.StringIO(), record=True)
    console.print(live.render(snap, replayed=1003, total=2000, footer="Prometheus http://x"))
    text = console.export_text()
    for expected in ("1003/2000", "1000", "shardId-000000000001", "2.2", "b8:27:eb:bf:9d:51",
                     "1234", "1300", "linear", "0.110", "0.250", "22.5", "22.43", "up / up DOWN",
                     "3600 s", "0.300", "0.400", "+25.0%", "c6:ab:dc:89:11:7e", "1.75",
                     "Prometheus http://x"):  # fmt: skip
        assert expected in text, (expected, text)
    line = live.progress_line(snap, 1003, 2000)
    assert line.startswith("replayed 1003/2000  received 1003  forwarded 1000  dead-lettered 3")
    assert line.endswith("lag 1=2.2s")


def test_summary_prints_the_fleet_and_the_watched_devices_ids_as_they_are():
    """A device id is printed as it is: ":ab:" is an emoji code to rich, "[x]" markup."""
    ids = ("c6:ab:dc:89:11:7e", "d[b]1")
    rows = [{"horizon": 900, "scored": 10, "served_mae": 0.3, "persistence_mae": 0.4,
             "worst_device": ids[0], "worst_ratio": 1.5}]  # fmt: skip
    s = {
        "outcome": "done", "elapsed_seconds": 1.0, "horizon": "0", "baseline": "persistence",
        "stream": {"learned": 7, "fleet_error": rows, "devices_held": 1000},
        "devices": {d: {"learned": 7, "champion": "linear", "champion_mae": 0.1,
                        "baseline_mae": 0.2} for d in ids},
        "forecasts": [{"device": ids[0], "horizon": 900, "served": 0.3, "persistence": 0.4}],
        "agreement": {"prometheus": True, "manifests": False, "evaluation": None},
        "report": "r", "checkpoints_s3": "s3://b/", "checkpoints_dir": "c",
        "prometheus_data": "p", "logs": "l", "out": "o",
        "urls": {"prometheus": "P", "bridge_metrics": "B", "processor_metrics": ["Q"]},
    }  # fmt: skip
    console = Console(width=80, file=io.StringIO(), record=True)
    demo_summary.print_summary(console, s)
    text = console.export_text()
    for expected in (*ids, "the fleet (1000 devices)", "+25.0%", "1.50", "watched devices",
                     "prometheus: agree  manifests: DISAGREE  evaluation: not checked"):  # fmt: skip
        assert expected in text, (expected, text)
    assert text.count(ids[0]) == 3  # the worst device, a watched device's two rows


def test_stall_message_names_the_stage_that_stopped():
    snap = live.PipelineFigures(bridge_up=True, forwarded=500, learned=10)
    assert "published 40 of 100" in demo_run.diagnose_stall(snap, 40, 100, 61)
    assert "forwarded 500 and dead-lettered 0 of 900" in demo_run.diagnose_stall(snap, 900, 900, 61)
    assert "accounted for 10 of 500" in demo_run.diagnose_stall(snap, 500, 500, 61)


def test_prometheus_config_scrapes_the_parts_and_promtool_accepts_it(tmp_path):
    from iotcast.stack import require

    rules, rejected = demo_stack.rule_files()
    config = demo_stack.prometheus_config(tmp_path / "prometheus.yml", free_ports(), rules)
    check = subprocess.run(
        [require("promtool"), "check", "config", str(config)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert rejected == {}, rejected


# ------------------------------------------------------------------ end to end


def _expected_learned(csv: Path) -> dict[str, int]:
    """Per device, the readings a processor must learn: in arrival order, not a glitch,
    and newer than the last one learned (duplicates and late readings are skipped)."""
    from telemetry.csvfile import read_csv
    from telemetry.reading import is_glitch

    last: dict[str, float] = {}
    learned: dict[str, int] = {}
    for r in read_csv(csv):
        if is_glitch(r) or r.ts <= last.get(r.device, float("-inf")):
            continue
        last[r.device] = r.ts
        learned[r.device] = learned.get(r.device, 0) + 1
    return dict(sorted(learned.items()))


@pytest.mark.slow
@pytest.mark.timeout(540)  # 380 s run + up to 120 s for its own shutdown
def test_demo_runs_a_day_to_completion_and_its_figures_agree(out_dir):
    out = out_dir
    child = subprocess.Popen(
        demo_cmd(out, "--days", "0.25", "--devices", "3", "--speed", "0", "--progress-every", "10"),
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    output = wait_demo(child, timeout=380)
    assert child.returncode == 0, output[-6000:]
    check_completed_demo(out, output)


def check_completed_demo(out: Path, output: str, devices: int = 3) -> None:
    """Everything a completed ``iotcast demo`` run of ``devices`` devices must show (see the
    test above): the fleet's counts, and the per-device figures of the three it watches."""
    log = output[-6000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["outcome"] == "done", log

    # Every process it started is gone, each stopped by SIGTERM within the grace period.
    assert set(s["pids"]) == STACK | {"bridge", "processor", "evaluate"}
    assert all(gone(pid) for pid in s["pids"].values())
    assert s["still_running"] == [] and s["killed_after_grace"] == [], s["stop_seconds"]

    # The figures: every generated reading replayed, forwarded (or dead-lettered), and the
    # processors took exactly the readings they must, each once: learned, or held back by
    # the anomaly watch (the generator plants stuck sensors).
    stream = s["stream"]
    csv = Path(s["csv"])
    generated = sum(1 for _ in csv.open()) - 1
    assert s["generated"] == s["replayed"] == generated
    assert stream["forwarded"] + stream["dead_lettered"] >= generated
    expected = _expected_learned(csv)
    assert len(expected) == devices
    watched = sorted(s["watched"])
    assert len(watched) == 3 and set(watched) <= set(expected)
    taken = {d: r["learned"] + r["held"] for d, r in stream["device_readings"].items()}
    assert stream["learned"] + stream["held"] == sum(expected.values())
    assert taken == {d: expected[d] for d in watched}
    assert stream["learned_by_device"] == {
        d: r["learned"] for d, r in stream["device_readings"].items()
    }
    assert f"learned {stream['learned']}" in output

    # ... agree with Prometheus' (queried by the demo before it stopped Prometheus): the
    # fleet's counts, and the readings of the watched devices, the only ones with series.
    prom = s["prometheus"]
    assert prom["scraped_after_done"]
    for key in demo_summary.COMPARED:
        assert prom[key] == stream[key], key
    assert sorted(prom["device_readings"]) == watched

    # ... and with the checkpoint manifests copied out of moto (read here, independently).
    manifests = [
        json.loads(p.read_text())
        for p in (out / "checkpoints" / "checkpoints").glob("*/*/manifest.json")
    ]
    assert {m["shard_id"] for m in manifests} == {
        f"shardId-{i:012d}" for i in range(demo_stack.SHARDS)
    }
    entries = {d: e for m in manifests for d, e in m["devices"].items()}
    assert {d: e["samples"] for d, e in entries.items()} == expected
    ckpt = s["checkpoints"]  # the summary keeps the totals and the watched devices' entries
    assert (ckpt["device_count"], ckpt["samples"]) == (devices, sum(expected.values()))
    assert {d: e["samples"] for d, e in ckpt["devices"].items()} == taken
    for entry in entries.values():
        if entry.get("offset") is None:  # one object per device (checkpoints before bundles)
            path = out / "checkpoints" / entry["key"]
            assert path.with_name("manifest.json").exists()
        else:  # its byte range of the shard's bundle, copied as <bundle key>@<offset>
            path = out / "checkpoints" / f"{entry['key']}@{entry['offset']}"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]

    # The evaluation report; per device, the stream's prequential MAE of the champion and
    # of persistence equals the offline evaluation's (same code, same readings).
    assert (out / "report" / "report.md").exists()
    offline = demo_summary.offline_mae(out / "report" / "metrics.csv")
    assert sorted(s["devices"]) == watched
    for device, d in s["devices"].items():
        assert d["champion"], device
        champion = offline[(device, d["champion"], "0")]
        assert d["champion_mae"] == pytest.approx(champion, rel=1e-9, abs=1e-12), device
        baseline = offline[(device, "persistence", "0")]
        assert d["baseline_mae"] == pytest.approx(baseline, rel=1e-9, abs=1e-12), device
    assert s["agreement"] == {"prometheus": True, "manifests": True, "evaluation": True}

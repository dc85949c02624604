"""Run the whole local stack, replay a generated week through it, and show it working.

    iotcast demo                      # a day of 3 devices, replayed in about 3 minutes
    iotcast demo --days 7             # the week (on a 2-core machine with moto: most of an hour)
    iotcast demo --days 0.25 --speed 0   # six hours of data, as fast as the pipeline goes
    iotcast demo --hold               # keep the stack up afterwards (Ctrl-C stops it)

On 127.0.0.1 it starts the moto server (Kinesis, S3, DynamoDB), mosquitto and
Prometheus (with the rule files of monitoring/prometheus/rules), then the
bridge and two stream processors as child processes; it generates the
readings (``--days``, ``--devices``, ``--seed``), replays them through MQTT
(``--speed``: times real time, 0 = as fast as possible), waits until the
processors have accounted for every reading the bridge forwarded, runs the
offline evaluation of the same file, and stops every process it started,
cleanly (also on Ctrl-C or an error).  While it runs, a live view shows the
figures scraped from the parts' /metrics pages.  At the end it prints where
the evaluation report, the model checkpoints and the Prometheus data are, the
final figures, and writes them to ``<out>/summary.json``.

It refuses to start, saying why, when a port it needs is taken (defaults:
mosquitto 1883, moto 5000, Prometheus 9090, metrics 9101-9103; each has a
flag) or a component is missing (with how to install it).  Exit codes: 0 done,
1 failed or stalled (the message names the part and its log), 2 refused,
130 interrupted.

>>> [(name, port) for name, port, _ in Ports().named()]
[('mosquitto', 1883), ('moto server', 5000), ('prometheus', 9090), ('bridge /metrics', 9101), ('processor 1 /metrics', 9102), ('processor 2 /metrics', 9103)]
>>> check_ports(Ports(), in_use=lambda port: port == 1883)
Traceback (most recent call last):
...
iotcast.demo.command.DemoRefused: cannot start the demo:
  port 1883 (mosquitto) on 127.0.0.1 is taken: stop what listens there or choose another with --mqtt-port
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.live import Live
from rich.table import Table

from iotcast import stack
from iotcast.live import Parsed, Snapshot, aggregate, progress_line, render, scrape
from iotcast.settings import Settings
from iotcast.stack import HOST, ComponentMissing, ManagedProcess, port_in_use

__all__ = [
    "HELP",
    "DemoFailed",
    "DemoRefused",
    "Ports",
    "ProcessList",
    "add_arguments",
    "check_components",
    "check_ports",
    "diagnose_stall",
    "pipeline_done",
    "prometheus_config",
    "run",
]

HELP = "run the whole local stack, replay a generated week through it, and show it live"

DEFAULT_OUT = "demo-output"
DEFAULT_REPLAY_SECONDS = 180.0  # the default --speed replays the data in about this long
COMPONENTS = ("moto_server", "mosquitto", "prometheus")
STACK_NAMES = ("moto_server", "mosquitto", "prometheus")  # ManagedProcess names of the stack
RULES_DIR = Path(__file__).resolve().parent.parent / "monitoring" / "prometheus" / "rules"
SCRAPE_INTERVAL = "1s"
SHARDS = 2
BRIDGE_FLUSH_SECONDS = 10  # the bridge's flush on SIGTERM, well inside STOP_GRACE
STOP_GRACE = 30.0  # seconds an iotcast child has to stop on SIGTERM before SIGKILL


class DemoRefused(RuntimeError):
    """Nothing was started: a port is taken (the message says which and the flag to change it).

    >>> str(DemoRefused("port 1883 is taken"))
    'port 1883 is taken'
    """


class DemoFailed(RuntimeError):
    """A part failed or stalled; the message names it and where its log is.

    >>> str(DemoFailed("bridge exited"))
    'bridge exited'
    """


@dataclass(frozen=True)
class Ports:
    """The fixed ports of the demo's stack on 127.0.0.1 (each overridable by a flag).

    >>> Ports(processors=(9202,)).named()[-1]
    ('processor 1 /metrics', 9202, '--processor-metrics-ports')
    """

    mqtt: int = 1883
    moto: int = 5000
    prometheus: int = 9090
    bridge: int = 9101
    processors: tuple[int, ...] = (9102, 9103)

    def named(self) -> list[tuple[str, int, str]]:
        """(what, port, flag that changes it) for every port."""
        return [
            ("mosquitto", self.mqtt, "--mqtt-port"),
            ("moto server", self.moto, "--moto-port"),
            ("prometheus", self.prometheus, "--prometheus-port"),
            ("bridge /metrics", self.bridge, "--bridge-metrics-port"),
        ] + [
            (f"processor {i} /metrics", port, "--processor-metrics-ports")
            for i, port in enumerate(self.processors, 1)
        ]


def check_ports(ports: Ports, in_use: Callable[[int], bool] = port_in_use) -> None:
    """Raise :class:`DemoRefused` naming every port that is taken or given twice."""
    problems: list[str] = []
    seen: dict[int, str] = {}
    for name, port, flag in ports.named():
        if port in seen:
            problems.append(
                f"port {port} is given to both {seen[port]} and {name}: choose another with {flag}"
            )
        elif in_use(port):
            problems.append(
                f"port {port} ({name}) on {HOST} is taken: stop what listens there "
                f"or choose another with {flag}"
            )
        seen.setdefault(port, name)
    if problems:
        raise DemoRefused("cannot start the demo:\n  " + "\n  ".join(problems))


def check_components(require: Callable[[str], str] | None = None) -> dict[str, str]:
    """Paths of the component binaries; :class:`ComponentMissing` lists every one missing.

    >>> check_components(require=lambda name: "/usr/bin/" + name)["mosquitto"]
    '/usr/bin/mosquitto'
    """
    require = require or stack.require
    found: dict[str, str] = {}
    missing: list[str] = []
    for binary in COMPONENTS:
        try:
            found[binary] = require(binary)
        except ComponentMissing as exc:
            missing.append(str(exc))
    if missing:
        raise ComponentMissing("cannot start the demo:\n  " + "\n  ".join(missing))
    return found


def rule_files(rules_dir: Path = RULES_DIR) -> tuple[list[Path], dict[str, str]]:
    """The rule files Prometheus can load, and those ``promtool`` rejects (file -> why)."""
    files = sorted(rules_dir.glob("*.yml")) if rules_dir.is_dir() else []
    try:
        promtool = stack.require("promtool")
    except ComponentMissing:
        return files, {}
    good: list[Path] = []
    bad: dict[str, str] = {}
    for path in files:
        check = subprocess.run(
            [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
        )
        if check.returncode == 0:
            good.append(path)
        else:
            bad[str(path)] = (check.stderr or check.stdout).strip()
    return good, bad


def prometheus_config(path: Path, ports: Ports, rules: list[Path]) -> Path:
    """Write a Prometheus config scraping the demo's bridge and processors every second.

    Jobs are named as in monitoring/prometheus/prometheus.yml, so the rules apply.
    The file is JSON, which is YAML.

    >>> import tempfile
    >>> cfg = prometheus_config(Path(tempfile.mkdtemp()) / "p.yml", Ports(), [])
    >>> json.loads(cfg.read_text())["scrape_configs"][1]["static_configs"][0]["targets"]
    ['127.0.0.1:9102', '127.0.0.1:9103']
    """
    config = {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "scrape_timeout": SCRAPE_INTERVAL,
            "evaluation_interval": SCRAPE_INTERVAL,
            "external_labels": {"system": "iotcast", "stack": "demo"},
        },
        "rule_files": [str(p) for p in rules],
        "scrape_configs": [
            {
                "job_name": "iotcast-bridge",
                "static_configs": [{"targets": [f"{HOST}:{ports.bridge}"]}],
            },
            {
                "job_name": "iotcast-processor",
                "static_configs": [{"targets": [f"{HOST}:{p}" for p in ports.processors]}],
            },
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def pipeline_done(snap: Snapshot, replayed: int, replay_finished: bool) -> bool:
    """True when every replayed reading was forwarded or dead-lettered and the processors
    took a decision (learned, duplicate, late, glitch) on every forwarded one.

    >>> up = dict(bridge_up=True)
    >>> pipeline_done(Snapshot(forwarded=10, dead_lettered=1, learned=9, glitches=1, **up), 11, True)
    True
    >>> pipeline_done(Snapshot(forwarded=10, learned=9, **up), 10, True)
    False
    """
    return (
        replay_finished
        and snap.bridge_up
        and snap.forwarded + snap.dead_lettered >= replayed
        and snap.buffered == 0
        and snap.accounted >= snap.forwarded
    )


def diagnose_stall(snap: Snapshot, replayed: int, total: int | None, seconds: float) -> str:
    """Say which stage stopped moving, for the message of a stalled demo.

    >>> diagnose_stall(Snapshot(forwarded=10, learned=4), 10, 10, 60)
    'nothing moved for 60 s: the processors accounted for 4 of 10 forwarded readings (see logs/processor-*.log)'
    """
    head = f"nothing moved for {seconds:.0f} s: "
    if total is not None and replayed < total:
        return (
            head + f"the replay published {replayed} of {total} readings (see stack/mosquitto.log)"
        )
    if snap.forwarded + snap.dead_lettered < replayed:
        return head + (
            f"the bridge forwarded {snap.forwarded} and dead-lettered {snap.dead_lettered} "
            f"of {replayed} replayed readings (see logs/bridge.log)"
        )
    return head + (
        f"the processors accounted for {snap.accounted} of {snap.forwarded} forwarded readings "
        f"(see logs/processor-*.log)"
    )


class ProcessList:
    """Every process the demo started, stopped in reverse order: SIGTERM, bounded wait, SIGKILL.

    >>> procs = ProcessList()
    >>> procs.stop_all()
    {}
    """

    def __init__(self) -> None:
        self.processes: list[ManagedProcess] = []
        self.stop_seconds: dict[str, float] = {}
        self.killed: list[str] = []
        self.on_change: Callable[[], None] | None = None

    def start(self, proc: ManagedProcess, **start_kwargs: Any) -> ManagedProcess:
        """Keep ``proc``, then start it (an interrupt while it starts still finds it listed)."""
        self.processes.append(proc)
        try:
            proc.start(**start_kwargs)
        finally:
            self._changed()
        return proc

    def adopt(self, start: Callable[[], ManagedProcess]) -> ManagedProcess:
        """Keep a process started by one of :mod:`iotcast.stack`'s launchers.

        An interrupt is held back until the launcher returns (it does not hand out
        the process before it is ready), so the process is listed and stopped too.
        """
        with INTERRUPTS.deferred():
            proc = start()
            self.processes.append(proc)
            self._changed()
        return proc

    def _changed(self) -> None:
        if self.on_change:
            self.on_change()

    def pids(self) -> dict[str, int]:
        return {p.name: p.proc.pid for p in self.processes if p.proc is not None}

    def get(self, name: str) -> ManagedProcess | None:
        return next((p for p in self.processes if p.name == name), None)

    def stop(self, names: list[str], grace: float) -> dict[str, int | None]:
        """Stop the named processes together: SIGTERM to all, wait up to ``grace`` seconds,
        SIGKILL those still running.  Returns the exit code of each process stopped here;
        ``stop_seconds`` and ``killed`` record how long each took and which needed SIGKILL."""
        procs = [p for p in reversed(self.processes) if p.name in names and p.alive() and p.proc]
        began = time.monotonic()
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):  # it has just exited by itself
                proc.proc.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        errors: list[str] = []
        for proc in procs:
            try:
                proc.proc.wait(max(0.0, grace - (time.monotonic() - began)))
            except subprocess.TimeoutExpired:
                self.killed.append(proc.name)
                proc.proc.kill()
                try:
                    proc.proc.wait(10)
                except subprocess.TimeoutExpired as exc:
                    errors.append(f"{proc.name} (pid {proc.proc.pid}) survives SIGKILL: {exc}")
                    continue
            codes[proc.name] = proc.proc.returncode
            self.stop_seconds[proc.name] = round(time.monotonic() - began, 2)
        if errors:
            raise DemoFailed("could not stop: " + "; ".join(errors))
        return codes

    def stop_all(self, grace: float = 15.0) -> dict[str, int | None]:
        return self.stop([p.name for p in self.processes], grace)

    def running(self) -> list[str]:
        return [p.name for p in self.processes if p.alive()]


class Interrupts:
    """SIGINT and SIGTERM as :class:`KeyboardInterrupt`, held back or ignored where needed.

    While a child is being started, an interrupt waits until the child is in the
    process list (so it is stopped too); during the shutdown, interrupts are
    ignored (a second Ctrl-C must not cut it short).

    >>> interrupts = Interrupts()
    >>> with interrupts.ignored():
    ...     interrupts.handle(signal.SIGINT, None)
    >>> try:
    ...     with interrupts.deferred():
    ...         interrupts.handle(signal.SIGINT, None)
    ...         print("the child is started and listed")
    ... except KeyboardInterrupt as exc:
    ...     print("then:", exc)
    the child is started and listed
    then: signal 2
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.mode = "raise"
        self.pending: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        self._previous = {s: signal.signal(s, self.handle) for s in self.SIGNALS}

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def handle(self, signum: int, frame: object) -> None:
        if self.mode == "raise":
            raise KeyboardInterrupt(f"signal {signum}")
        if self.mode == "defer":
            self.pending = signum

    @contextlib.contextmanager
    def _mode(self, mode: str) -> Iterator[None]:
        previous, self.mode = self.mode, mode
        try:
            yield
        finally:
            self.mode = previous
        if self.mode == "raise" and self.pending is not None:
            signum, self.pending = self.pending, None
            raise KeyboardInterrupt(f"signal {signum}")

    def deferred(self) -> contextlib.AbstractContextManager[None]:
        return self._mode("defer") if self.mode == "raise" else contextlib.nullcontext()

    def ignored(self) -> contextlib.AbstractContextManager[None]:
        return self._mode("ignore")


INTERRUPTS = Interrupts()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


# Run as ``python -c REAPER <parent pid> <children.json>`` in its own session: when the
# parent is gone (it is re-parented), SIGTERM the children still running the same command
# line, give them 15 s, then SIGKILL.  The parent stops it with SIGTERM when it is done.
REAPER = """
import json, os, signal, sys, time
parent, registry = int(sys.argv[1]), sys.argv[2]
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
print("reaper: watching", parent, flush=True)
while os.getppid() == parent:
    time.sleep(0.5)
def same(c):
    try:
        with open(f"/proc/{c['pid']}/cmdline", "rb") as f:
            return f.read().decode(errors="replace") == c["cmdline"]
    except OSError:
        return False
try:
    with open(registry) as f:
        children = [c for c in json.load(f) if same(c)]
except (OSError, ValueError) as exc:
    sys.exit(f"reaper: parent {parent} died; cannot read {registry}: {exc}")
print("reaper: parent", parent, "died; stopping", [c["name"] for c in children], flush=True)
def kill(c, sig):
    try:
        os.kill(c["pid"], sig)
    except ProcessLookupError:
        pass  # it has just exited
for c in children:
    kill(c, signal.SIGTERM)
deadline = time.monotonic() + 15
while time.monotonic() < deadline and any(same(c) for c in children):
    time.sleep(0.2)
for c in children:
    if same(c):
        print("reaper: killing", c["name"], flush=True)
        kill(c, signal.SIGKILL)
"""


def _http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    return check


def _get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def _parse_rfc3339(text: str) -> float:
    # Prometheus gives nanoseconds; datetime takes microseconds.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
    return datetime.fromisoformat(text).timestamp()


PROMETHEUS_QUERIES = {
    "received": "sum(iotcast_bridge_messages_received_total)",
    "forwarded": "sum(iotcast_bridge_readings_forwarded_total)",
    "dead_lettered": "sum(iotcast_bridge_dead_letters_total)",
    "learned": "sum(iotcast_readings_learned_total)",
    "duplicates": "sum(iotcast_readings_duplicate_total)",
    "late": "sum(iotcast_readings_late_total)",
    "glitches": "sum(iotcast_readings_glitch_total)",
    "learned_by_device": "sum by (device) (iotcast_readings_learned_total)",
}


@dataclass
class Options:
    """The demo's own flags (the connection flags are the stack's, not the user's)."""

    out: Path = Path(DEFAULT_OUT)
    days: float = 1.0
    devices: int = 3
    seed: int = 1
    speed: float | None = None
    ports: Ports = field(default_factory=Ports)
    stall_timeout: float = 60.0
    evaluate_timeout: float = 900.0
    horizon: str = "0"
    baseline: str = "persistence"
    hold: bool = False
    evaluate: bool = True
    json: bool = False
    progress_every: float = 5.0
    live: bool | None = None  # None: when stdout is a terminal


class Demo:
    """One run of the demo: the stack, the replay, the watch, the shutdown and the summary."""

    def __init__(self, settings: Settings, opts: Options, console: Console) -> None:
        self.opts = opts
        self.console = console
        self.out = opts.out.resolve()
        self.logs = self.out / "logs"
        self.stack_dir = self.out / "stack"
        self.csv = self.out / "readings.csv"
        self.report = self.out / "report"
        self.checkpoints = self.out / "checkpoints"
        self.ports = opts.ports
        self.settings = settings.replace(
            endpoint_url=f"http://{HOST}:{self.ports.moto}",
            mqtt_url=f"mqtt://{HOST}:{self.ports.mqtt}",
            mqtt_ca_file=None,
            kinesis_endpoint_url=None,
            metrics_port=None,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        self.procs = ProcessList()
        self.procs.on_change = self._write_pids
        self.cancel = threading.Event()
        self.replayed = 0
        self.total: int | None = None
        self.replay_thread: threading.Thread | None = None
        self.replay_error: BaseException | None = None
        self.replay_result: int | None = None
        self.snapshot = Snapshot()
        self.last_pages: dict[str, Parsed] = {}
        self.history: collections.deque[tuple[float, int]] = collections.deque()
        self.summary: dict[str, Any] = {}
        self.started = time.monotonic()

    # ------------------------------------------------------------------ urls
    @property
    def bridge_url(self) -> str:
        return f"http://{HOST}:{self.ports.bridge}/metrics"

    @property
    def processor_urls(self) -> list[str]:
        return [f"http://{HOST}:{p}/metrics" for p in self.ports.processors]

    @property
    def prometheus_url(self) -> str:
        return f"http://{HOST}:{self.ports.prometheus}"

    def urls(self) -> dict[str, Any]:
        return {
            "bridge_metrics": self.bridge_url,
            "processor_metrics": self.processor_urls,
            "prometheus": self.prometheus_url,
            "moto": self.settings.endpoint_url,
            "mqtt": self.settings.mqtt_url,
        }

    def say(self, message: str) -> None:
        self.console.print(message, highlight=False)

    def _write_pids(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "pids.json").write_text(json.dumps(self.procs.pids(), indent=2) + "\n")
        children = [
            {"name": name, "pid": pid, "cmdline": _cmdline(pid)}
            for name, pid in self.procs.pids().items()
            if name != "reaper"
        ]
        tmp = self.out / "children.json.tmp"
        tmp.write_text(json.dumps(children) + "\n")
        tmp.replace(self.out / "children.json")

    def start_reaper(self) -> None:
        """A watchdog that stops every child if this process dies without its shutdown
        (SIGKILL, out of memory): it polls its parent and acts on ``children.json``."""
        argv = [sys.executable, "-c", REAPER, str(os.getpid()), str(self.out / "children.json")]
        proc = ManagedProcess("reaper", argv, 0, self.logs / "reaper.log")
        self.procs.start(proc, ready=lambda: "watching" in proc.log_tail())

    # ----------------------------------------------------------------- steps
    def prepare(self) -> None:
        """Clear what a previous run left in the output directory (only the demo's own names)."""
        self.out.mkdir(parents=True, exist_ok=True)
        for name in ("stack", "checkpoints", "report", "logs"):
            shutil.rmtree(self.out / name, ignore_errors=True)
        for name in ("summary.json", "pids.json", "readings.csv"):
            (self.out / name).unlink(missing_ok=True)
        self.logs.mkdir(parents=True)
        self.stack_dir.mkdir(parents=True)

    def child_env(self) -> dict[str, str]:
        """The children's environment: the user's IOTCAST_*/AWS_* never leak past the flags."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IOTCAST_"))}
        env.update(
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION=self.settings.region,
            IOTCAST_PREDICTIONS_STREAM=self.settings.predictions_stream,
            PYTHONUNBUFFERED="1",
        )
        if self.settings.hmac_key:
            env["IOTCAST_HMAC_KEY"] = self.settings.hmac_key
        return env

    def iotcast(self, command: str, *extra: str) -> list[str]:
        s = self.settings
        argv = [
            sys.executable, "-m", "iotcast.cli", command,
            "--endpoint-url", str(s.endpoint_url), "--region", s.region,
            "--mqtt-url", s.mqtt_url, "--stream", s.stream, "--bucket", s.bucket,
            "--app", s.app, "--log-level", s.log_level,
        ]  # fmt: skip
        if s.models_file:
            argv += ["--models-file", s.models_file]
        return argv + list(extra)

    def start_stack(self) -> None:
        rules, rejected = rule_files()
        for path, why in rejected.items():
            self.say(f"[yellow]warning:[/] {path} fails `promtool check rules`, not loaded: {why}")
        self.summary["rule_files"] = [str(p) for p in rules]
        self.summary["rule_files_rejected"] = rejected
        config = prometheus_config(self.stack_dir / "prometheus.yml", self.ports, rules)
        self.say(f"starting moto server on :{self.ports.moto}, mosquitto on :{self.ports.mqtt}, "
                 f"Prometheus on :{self.ports.prometheus}")  # fmt: skip
        work = self.stack_dir
        self.procs.adopt(lambda: stack.start_moto(work, self.ports.moto))
        self.procs.adopt(lambda: stack.start_mosquitto(work, self.ports.mqtt))
        self.procs.adopt(lambda: stack.start_prometheus(work, config, self.ports.prometheus))
        env = self.child_env()
        self.say(f"starting the bridge (/metrics on :{self.ports.bridge}) and "
                 f"{len(self.ports.processors)} processors")  # fmt: skip
        bridge = ManagedProcess(
            "bridge",
            self.iotcast("bridge", "--create-stream", "--shards", str(SHARDS),
                         "--stop-timeout", str(BRIDGE_FLUSH_SECONDS),
                         "--metrics-port", str(self.ports.bridge)),
            self.ports.bridge, self.logs / "bridge.log", env=env,
        )  # fmt: skip
        health = f"http://{HOST}:{self.ports.bridge}/healthz"
        self.procs.start(bridge, ready=_http_ok(health), timeout=90)
        for i, port in enumerate(self.ports.processors, 1):
            proc = ManagedProcess(
                f"processor-{i}",
                self.iotcast("process", "--create-resources", "--shards", str(SHARDS),
                             "--checkpoint-seconds", "5",
                             "--metrics-port", str(port)),
                port, self.logs / f"processor-{i}.log", env=env,
            )  # fmt: skip
            self.procs.start(proc, ready=_http_ok(f"http://{HOST}:{port}/metrics"), timeout=90)

    def generate(self) -> int:
        from telemetry.csvfile import write_csv
        from telemetry.generate import generate

        opts = self.opts
        self.say(f"generating {opts.days} day(s) of {opts.devices} devices (seed {opts.seed}) "
                 f"into {self.csv}")  # fmt: skip
        count = 0

        def counted() -> Iterator:
            nonlocal count
            for reading in generate(opts.days, opts.seed, devices=opts.devices):
                count += 1
                yield reading

        write_csv(self.csv, counted())
        self.total = count
        return count

    def start_evaluation(self) -> None:
        proc = ManagedProcess(
            "evaluate",
            self.iotcast("evaluate", "--csv", str(self.csv), "--out", str(self.report), "--no-progress"),
            0, self.logs / "evaluate.log", env=self.child_env(),
        )  # fmt: skip
        self.procs.start(proc, ready=lambda: True)

    def speed(self) -> float:
        if self.opts.speed is not None:
            return self.opts.speed
        return self.opts.days * 86400 / DEFAULT_REPLAY_SECONDS

    def start_replay(self) -> None:
        from telemetry.csvfile import read_csv
        from telemetry.replay import replay

        def feed() -> Iterator:
            for reading in read_csv(self.csv):
                if self.cancel.is_set():
                    return
                yield reading
                self.replayed += 1

        def target() -> None:
            try:
                self.replay_result = replay(self.settings.mqtt, feed(), speed=self.speed(), qos=1)
            except Exception as exc:  # handed to the main thread, which raises it
                self.replay_error = exc

        speed = self.speed()
        self.say(f"replaying {self.total} readings through MQTT at "
                 f"{'full speed' if speed == 0 else f'{speed:.0f}x real time'}")  # fmt: skip
        self.replay_thread = threading.Thread(target=target, name="replay", daemon=True)
        self.replay_thread.start()

    def replay_finished(self) -> bool:
        return self.replay_thread is not None and not self.replay_thread.is_alive()

    def check_children(self) -> None:
        for proc in self.procs.processes:
            if proc.proc is not None and proc.proc.poll() is not None and proc.name != "evaluate":
                raise DemoFailed(
                    f"{proc.name} exited with code {proc.proc.returncode}; "
                    f"last lines of {proc.log_path}:\n{proc.log_tail()}"
                )
        evaluate = self.procs.get("evaluate")
        if evaluate and evaluate.proc and evaluate.proc.poll() not in (None, 0):
            raise DemoFailed(
                f"the evaluation exited with code {evaluate.proc.returncode}; "
                f"last lines of {evaluate.log_path}:\n{evaluate.log_tail()}"
            )
        if self.replay_error is not None:
            raise DemoFailed(f"the replay failed: {self.replay_error}") from self.replay_error

    def collect(self) -> Snapshot:
        """Scrape every part; a page that does not answer counts with its last figures."""
        urls = [self.bridge_url, *self.processor_urls]
        pages = [scrape(u) for u in urls]
        up = [p is not None for p in pages]
        for url, page in zip(urls, pages, strict=True):
            if page is not None:
                self.last_pages[url] = page
        known = [self.last_pages.get(u) for u in urls]
        snap = aggregate(
            known[0], known[1:], horizon=self.opts.horizon, baseline=self.opts.baseline
        )
        self.snapshot = dataclasses.replace(snap, bridge_up=up[0], processors_up=tuple(up[1:]))
        return self.snapshot

    def footer(self) -> str:
        return (
            f"Prometheus {self.prometheus_url}   bridge {self.bridge_url}   processors "
            + " ".join(self.processor_urls)
            + f"   elapsed {time.monotonic() - self.started:.0f} s   Ctrl-C stops everything"
        )

    def rate(self) -> float:
        """Readings the processors accounted for per second, over the last ~10 s."""
        now = time.monotonic()
        self.history.append((now, self.snapshot.accounted))
        while len(self.history) > 2 and now - self.history[0][0] > 10:
            self.history.popleft()
        (t0, n0), (t1, n1) = self.history[0], self.history[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def view(self, title: str) -> Any:
        title = f"{title}   {self.rate():.0f} readings/s"
        return render(self.snapshot, self.replayed, self.total, title=title, footer=self.footer())

    def watch(
        self, until: Callable[[], bool], title: str, live: Live | None, stall: float | None = None
    ) -> None:
        """Scrape and show until ``until()``; raise :class:`DemoFailed` on a stall or a dead part."""
        last_print = 0.0
        last_change = time.monotonic()
        last_state: tuple = ()
        tick = 0.5 if live else 1.0
        while True:
            self.check_children()
            snap = self.collect()
            state = (
                self.replayed,
                snap.received,
                snap.forwarded,
                snap.dead_lettered,
                snap.accounted,
            )
            now = time.monotonic()
            if state != last_state:
                last_state, last_change = state, now
            if live:
                live.update(self.view(title))
            elif now - last_print >= self.opts.progress_every:
                self.say(f"{progress_line(snap, self.replayed, self.total)}  ({self.rate():.0f}/s)")
                last_print = now
            if until():
                return
            if stall is not None and now - last_change > stall:
                raise DemoFailed(
                    diagnose_stall(snap, self.replayed, self.total, now - last_change)
                    + f"; logs are in {self.logs}"
                )
            time.sleep(tick)

    def wait_processed(self, live: Live | None) -> None:
        stable = {"n": 0}

        def done() -> bool:
            if (
                self.replay_finished()
                and self.replay_error is None
                and self.replay_result is not None
            ):
                self.replayed = self.replay_result
            ok = pipeline_done(self.snapshot, self.replayed, self.replay_finished())
            stable["n"] = stable["n"] + 1 if ok else 0
            return stable["n"] >= 2  # the same answer on two scrapes in a row

        self.watch(done, "iotcast demo: replaying", live, stall=self.opts.stall_timeout)

    def wait_evaluation(self, live: Live | None) -> None:
        evaluate = self.procs.get("evaluate")
        if evaluate is None or evaluate.proc is None:
            return
        deadline = time.monotonic() + self.opts.evaluate_timeout
        if evaluate.alive():
            self.say("waiting for the offline evaluation to finish")

        def done() -> bool:
            if time.monotonic() > deadline:
                raise DemoFailed(
                    f"the evaluation did not finish in {self.opts.evaluate_timeout:.0f} s; "
                    f"see {evaluate.log_path}"
                )
            return not evaluate.alive()

        self.watch(done, "iotcast demo: evaluating offline", live)

    def query_prometheus(self, since: float, timeout: float = 20.0) -> dict[str, Any]:
        """Prometheus' figures once it has scraped every target after ``since`` (epoch s)."""
        deadline = time.monotonic() + timeout
        fresh = False
        while not fresh and time.monotonic() < deadline:
            try:
                targets = _get_json(f"{self.prometheus_url}/api/v1/targets")["data"]
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                targets = {}  # a busy Prometheus: ask again until the deadline
            active = targets.get("activeTargets") or []
            fresh = bool(active) and all(
                t.get("health") == "up" and _parse_rfc3339(t["lastScrape"]) > since for t in active
            )
            if not fresh:
                time.sleep(0.5)
        result: dict[str, Any] = {"scraped_after_done": fresh}
        for name, query in PROMETHEUS_QUERIES.items():
            q = urllib.parse.urlencode({"query": query})
            data = _get_json(f"{self.prometheus_url}/api/v1/query?{q}", timeout=30)["data"][
                "result"
            ]
            if name == "learned_by_device":
                result[name] = {
                    r["metric"].get("device", ""): int(float(r["value"][1])) for r in data
                }
            else:
                result[name] = int(float(data[0]["value"][1])) if data else 0
        return result

    def download_checkpoints(self) -> dict[str, Any]:
        """Copy the shard manifests and each device's newest checkpoint out of moto."""
        import boto3

        s3 = boto3.client("s3", **self.settings.boto_kwargs())
        return download_checkpoints(s3, self.settings.bucket, self.settings.app, self.checkpoints)

    # ------------------------------------------------------------- the run
    def run(self) -> None:
        self.prepare()
        self.start_reaper()
        self.start_stack()
        self.generate()
        if self.opts.evaluate:
            self.start_evaluation()
        self.start_replay()
        use_live = self.opts.live if self.opts.live is not None else self.console.is_terminal
        live_ctx = (
            Live(self.view("iotcast demo"), console=self.console, refresh_per_second=4)
            if use_live
            else contextlib.nullcontext()
        )
        with live_ctx as live:
            self.wait_processed(live)
            done_at = time.time()
            final = self.snapshot
            self.summary["prometheus"] = self.query_prometheus(done_at)
            self.wait_evaluation(live)
            self.snapshot = final
            if live:
                live.update(self.view("iotcast demo: done"))
        self.summary["stream"] = final.figures()
        offline = offline_mae(self.report / "metrics.csv") if self.opts.evaluate else {}
        h = self.opts.horizon
        self.summary["devices"] = {
            d.device: {
                "learned": d.learned,
                "champion": d.champion,
                "champion_mae": d.champion_mae,
                "baseline_mae": d.baseline_mae,
                "champion_rolling_mae": d.champion_rolling_mae,
                "baseline_rolling_mae": d.baseline_rolling_mae,
                "offline_champion_mae": offline.get((d.device, d.champion or "", h)),
                "offline_baseline_mae": offline.get((d.device, self.opts.baseline, h)),
            }
            for d in final.devices
        }
        if self.opts.hold:
            self.hold()

    def operator_flags(self) -> str:
        """The flags that point an operator command at this stack."""
        s, d = self.settings, Settings()
        flags = f"--endpoint-url {s.endpoint_url}"
        for name in ("stream", "bucket", "app"):
            if getattr(s, name) != getattr(d, name):
                flags += f" --{name} {getattr(s, name)}"
        return flags

    def hold(self) -> None:
        scrapes = " ".join(f"--scrape {u}" for u in [self.bridge_url, *self.processor_urls])
        self.say(
            f"the stack keeps running: Prometheus {self.prometheus_url}, "
            f"metrics {self.bridge_url} {' '.join(self.processor_urls)}, "
            f"AWS endpoint {self.settings.endpoint_url}, MQTT {self.settings.mqtt_url}\n"
            f"in another terminal:\n"
            f"  .venv/bin/iotcast status {self.operator_flags()} {scrapes}\n"
            f"  .venv/bin/iotcast models list {self.operator_flags()}\n"
            "Ctrl-C here stops everything."
        )
        while True:
            self.check_children()
            time.sleep(1)

    def shutdown(self) -> None:
        """Stop everything this run started; keep the checkpoints out of moto first."""
        with INTERRUPTS.ignored():
            self.cancel.set()
            iotcast = [
                p.name for p in self.procs.processes if p.name not in (*STACK_NAMES, "reaper")
            ]
            if self.procs.processes:
                self.say(f"stopping {len(self.procs.processes)} processes")
            codes: dict[str, int | None] = {}
            errors: list[str] = []
            try:
                codes.update(self.procs.stop(iotcast, grace=STOP_GRACE))
            except DemoFailed as exc:
                errors.append(str(exc))
            moto = self.procs.get("moto_server")
            if moto is not None and moto.alive():
                try:
                    self.summary["checkpoints"] = self.download_checkpoints()
                except (BotoCoreError, ClientError, OSError, ValueError, KeyError) as exc:
                    errors.append(f"could not copy the checkpoints out of moto: {exc}")
            try:
                codes.update(self.procs.stop_all(grace=10))
            except DemoFailed as exc:
                errors.append(str(exc))
            if self.replay_thread is not None:
                self.replay_thread.join(5)
            self.summary["exit_codes"] = codes
            self.summary["stop_seconds"] = self.procs.stop_seconds
            self.summary["killed_after_grace"] = self.procs.killed
            for name in self.procs.killed:
                self.say(f"[yellow]warning:[/] {name} did not stop on SIGTERM in time: killed")
            self.summary["pids"] = self.procs.pids()
            self.summary["still_running"] = self.procs.running()
            if errors:
                self.summary["shutdown_errors"] = errors
                for error in errors:
                    self.say(f"[red]error:[/] {error}")

    # -------------------------------------------------------------- summary
    def finish(self, outcome: str, message: str | None = None) -> dict[str, Any]:
        s = self.summary
        s.update(
            outcome=outcome,
            message=message,
            elapsed_seconds=round(time.monotonic() - self.started, 1),
            out=str(self.out),
            csv=str(self.csv),
            generated=self.total,
            replayed=self.replayed,
            speed=self.speed(),
            report=str(self.report),
            checkpoints_dir=str(self.checkpoints),
            checkpoints_s3=f"s3://{self.settings.bucket}/models/{self.settings.app}/",
            prometheus_data=str(self.stack_dir / "prometheus-data"),
            logs=str(self.logs),
            urls=self.urls(),
            horizon=self.opts.horizon,
            baseline=self.opts.baseline,
        )
        if "stream" not in s:  # failed or interrupted: the last figures seen
            s["stream"] = self.snapshot.figures()
            s["stream_complete"] = False
        else:
            s["stream_complete"] = True
        s["agreement"] = (
            agreement(s)
            if s["stream_complete"]
            else {"prometheus": None, "manifests": None, "evaluation": None}
        )
        (self.out / "summary.json").write_text(json.dumps(s, indent=2, default=str) + "\n")
        return s


def _s3_keys(s3: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", ())


def download_checkpoints(s3: Any, bucket: str, app: str, dest: Path) -> dict[str, Any]:
    """Copy ``checkpoints/<app>/*/manifest.json`` and every device's newest model out of S3.

    Returns ``{"shards": {shard: manifest}, "devices": {device: {...}}}`` where a device's
    entry is its shard manifest's (version, key, sha256, samples, ...) plus ``sha256_ok``
    (the downloaded artifact's digest against the manifest's).
    """
    import hashlib

    def fetch(key: str) -> bytes:
        if ".." in Path(key).parts or Path(key).is_absolute():  # keys come from manifests in S3
            raise ValueError(f"refusing to copy S3 key {key!r}: it would land outside {dest}")
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        path = dest / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        return body

    shards: dict[str, Any] = {}
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket"):
            return {"shards": {}, "devices": {}, "note": f"bucket {bucket} was never created"}
        raise
    for obj in _s3_keys(s3, bucket, f"checkpoints/{app}/"):
        if obj["Key"].endswith("manifest.json"):
            manifest = json.loads(fetch(obj["Key"]))
            shards[manifest.get("shard_id") or obj["Key"].split("/")[-2]] = manifest
    devices: dict[str, Any] = {}
    for shard, manifest in sorted(shards.items()):
        for device, entry in (manifest.get("devices") or {}).items():
            entry = dict(entry, shard=shard)
            if device in devices and devices[device].get("samples", 0) >= entry.get("samples", 0):
                continue
            key = entry.get("key")
            if key:
                artifact = fetch(key)
                entry["sha256_ok"] = hashlib.sha256(artifact).hexdigest() == entry.get("sha256")
                sibling = key.rsplit("/", 1)[0] + "/manifest.json"
                with contextlib.suppress(s3.exceptions.NoSuchKey):
                    fetch(sibling)
            devices[device] = entry
    return {"shards": shards, "devices": devices}


def offline_mae(metrics_csv: Path) -> dict[tuple[str, str, str], float]:
    r"""(device, model, horizon) -> MAE over the whole file, from the evaluation's metrics.csv.

    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "metrics.csv"
    >>> _ = f.write_text("kind,device,model,horizon,scenario,metric,value\n"
    ...                  "error,a,persistence,0,all,mae,0.25\nerror,a,persistence,0,night,mae,0.3\n")
    >>> offline_mae(f)
    {('a', 'persistence', '0'): 0.25}
    """
    import csv

    out: dict[tuple[str, str, str], float] = {}
    with metrics_csv.open(newline="") as f:
        for row in csv.DictReader(f):
            if (row["kind"], row["scenario"], row["metric"]) == ("error", "all", "mae") and row[
                "value"
            ].strip():  # empty: nothing scored
                out[(row["device"], row["model"], row["horizon"])] = float(row["value"])
    return out


def agreement(summary: dict[str, Any]) -> dict[str, bool | None]:
    """Do the stream's figures agree with Prometheus' and with the checkpoint manifests?

    ... and the stream's prequential MAE with the offline evaluation's (same code, same
    readings per device: equal to float precision)?

    >>> agreement({"stream": {"learned": 3, "learned_by_device": {"a": 3}},
    ...            "prometheus": {"learned": 3, "learned_by_device": {"a": 3}},
    ...            "checkpoints": {"devices": {"a": {"samples": 3}}},
    ...            "devices": {"a": {"champion_mae": 0.1, "offline_champion_mae": 0.1,
    ...                              "baseline_mae": 0.2, "offline_baseline_mae": 0.2}}})
    {'prometheus': True, 'manifests': True, 'evaluation': True}
    """
    stream = summary.get("stream") or {}
    prom = summary.get("prometheus")
    ckpt = summary.get("checkpoints")
    out: dict[str, bool | None] = {"prometheus": None, "manifests": None, "evaluation": None}
    if stream and prom:
        out["prometheus"] = all(
            prom.get(k) == stream.get(k)
            for k in ("forwarded", "dead_lettered", "learned", "duplicates", "late", "glitches",
                      "learned_by_device")
            if k in prom
        )  # fmt: skip
    if stream and ckpt:
        samples = {d: v.get("samples") for d, v in (ckpt.get("devices") or {}).items()}
        out["manifests"] = samples == stream.get("learned_by_device")
    pairs = [
        (d.get(f"{which}_mae"), d.get(f"offline_{which}_mae"))
        for d in (summary.get("devices") or {}).values()
        for which in ("champion", "baseline")
    ]
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    if pairs:
        out["evaluation"] = all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) for a, b in pairs)
    return out


def print_summary(console: Console, s: dict[str, Any]) -> None:
    stream = s.get("stream") or {}
    console.print(
        f"\n[bold]iotcast demo: {s['outcome']}[/] in {s['elapsed_seconds']} s", highlight=False
    )
    if s.get("message"):
        console.print(s["message"], highlight=False)
    if stream:
        console.print(
            f"generated {s.get('generated')}  replayed {s.get('replayed')}  "
            f"forwarded {stream.get('forwarded')}  dead-lettered {stream.get('dead_lettered')}  "
            f"learned {stream.get('learned')}  duplicates {stream.get('duplicates')}  "
            f"late {stream.get('late')}  glitches {stream.get('glitches')}",
            highlight=False,
        )
    devices = s.get("devices") or {}
    if devices:
        table = Table(
            title=f"per device, horizon {s['horizon']} s (prequential MAE over the whole run, °C)",
            title_justify="left", show_edge=False,
        )  # fmt: skip
        for column in ("device", "learned", "checkpoint samples", "champion", "champion MAE",
                       f"{s['baseline']} MAE", "offline: champion", s["baseline"]):  # fmt: skip
            table.add_column(column)
        manifests = (s.get("checkpoints") or {}).get("devices") or {}
        for device, d in devices.items():
            table.add_row(
                device, str(d["learned"]), str((manifests.get(device) or {}).get("samples", "-")),
                d["champion"] or "-", _fmt(d["champion_mae"]), _fmt(d["baseline_mae"]),
                _fmt(d.get("offline_champion_mae")), _fmt(d.get("offline_baseline_mae")),
            )  # fmt: skip
        console.print(table)
    agree = s.get("agreement") or {}
    checks = "  ".join(
        f"{what}: {'agree' if ok else 'DISAGREE' if ok is False else 'not checked'}"
        for what, ok in agree.items()
    )
    console.print(f"figures vs {checks}", highlight=False)
    console.print(
        f"evaluation report:  {s['report']}\n"
        f"model checkpoints:  {s['checkpoints_s3']} (gone with moto; copied to {s['checkpoints_dir']})\n"
        f"Prometheus data:    {s['prometheus_data']}\n"
        f"logs:               {s['logs']}\n"
        f"summary:            {Path(s['out']) / 'summary.json'}\n"
        f"while it ran:       Prometheus {s['urls']['prometheus']}, bridge {s['urls']['bridge_metrics']}, "
        f"processors {' '.join(s['urls']['processor_metrics'])}",
        highlight=False,
    )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _ports_list(text: str) -> tuple[int, ...]:
    try:
        ports = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected ports separated by commas, got {text!r}"
        ) from exc
    if not ports:
        raise argparse.ArgumentTypeError("give at least one processor port")
    return ports


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("demo")
    g.add_argument(
        "--out",
        type=Path,
        default=Path(DEFAULT_OUT),
        help=f"output directory (default ./{DEFAULT_OUT})",
    )
    g.add_argument(
        "--days",
        type=float,
        default=1.0,
        help="days of readings to generate (default 1; 7 = the week)",
    )
    g.add_argument("--devices", type=int, default=3, help="devices to generate (default 3)")
    g.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    g.add_argument(
        "--speed",
        type=float,
        default=None,
        help="replay speed, times real time; 0 = as fast as possible "
        f"(default: the data in about {DEFAULT_REPLAY_SECONDS:.0f} s)",
    )
    g.add_argument(
        "--horizon",
        default="0",
        help="horizon (seconds) the device rows show; 0 = nowcast (default)",
    )
    g.add_argument(
        "--baseline",
        default="persistence",
        help="model shown beside the champion (default persistence)",
    )
    g.add_argument(
        "--stall-timeout",
        type=float,
        default=60.0,
        help="fail when nothing moves for this many seconds (default 60)",
    )
    g.add_argument(
        "--evaluate-timeout",
        type=float,
        default=900.0,
        help="fail when the offline evaluation takes longer (default 900 s)",
    )
    g.add_argument(
        "--no-evaluate",
        action="store_true",
        help="skip the offline evaluation of the generated file",
    )
    g.add_argument(
        "--hold", action="store_true", help="keep the stack running after the replay, until Ctrl-C"
    )
    g.add_argument(
        "--json",
        action="store_true",
        help="print the summary (also in <out>/summary.json) as JSON on stdout; "
        "progress goes to stderr",
    )
    g.add_argument(
        "--no-live",
        action="store_true",
        help="print a progress line every few seconds instead of the live view",
    )
    g.add_argument(
        "--progress-every",
        type=float,
        default=5.0,
        help="seconds between progress lines without the live view (default 5)",
    )
    p = parser.add_argument_group("ports of the demo's stack on 127.0.0.1")
    p.add_argument("--mqtt-port", type=int, default=Ports.mqtt, help="mosquitto (default 1883)")
    p.add_argument(
        "--moto-port",
        type=int,
        default=Ports.moto,
        help="moto server: Kinesis, S3, DynamoDB (default 5000)",
    )
    p.add_argument(
        "--prometheus-port", type=int, default=Ports.prometheus, help="Prometheus (default 9090)"
    )
    p.add_argument(
        "--bridge-metrics-port",
        type=int,
        default=Ports.bridge,
        help="the bridge's /metrics (default 9101)",
    )
    p.add_argument("--processor-metrics-ports", type=_ports_list, default=Ports.processors,
                   help="the processors' /metrics, one per processor (default 9102,9103)")  # fmt: skip


def options_from(args: argparse.Namespace) -> Options:
    return Options(
        out=args.out,
        days=args.days,
        devices=args.devices,
        seed=args.seed,
        speed=args.speed,
        ports=Ports(
            mqtt=args.mqtt_port,
            moto=args.moto_port,
            prometheus=args.prometheus_port,
            bridge=args.bridge_metrics_port,
            processors=tuple(args.processor_metrics_ports),
        ),
        stall_timeout=args.stall_timeout,
        evaluate_timeout=args.evaluate_timeout,
        horizon=str(args.horizon),
        baseline=args.baseline,
        hold=args.hold,
        evaluate=not args.no_evaluate,
        json=args.json,
        progress_every=args.progress_every,
        live=False if args.no_live else None,
    )


def run(settings: Settings, args: argparse.Namespace) -> int:
    opts = options_from(args)
    console = Console(stderr=opts.json)
    try:
        if opts.days <= 0 or opts.devices < 1:
            raise DemoRefused("--days must be positive and --devices at least 1")
        check_components()
        check_ports(opts.ports)
    except (DemoRefused, ComponentMissing) as exc:
        print(f"iotcast demo: {exc}", file=sys.stderr)
        return 2
    demo = Demo(settings, opts, console)
    INTERRUPTS.install()
    outcome, message, code = "done", None, 0
    try:
        try:
            demo.run()
        except KeyboardInterrupt:
            outcome, message, code = "interrupted", "interrupted: stopped everything", 130
        except ImportError as exc:
            outcome, code = "failed", 1
            message = f"failed: a part of iotcast is not installed or not built yet: {exc}"
        except (DemoFailed, RuntimeError, OSError) as exc:
            outcome, message, code = "failed", f"failed: {exc}", 1
        except Exception as exc:  # a bug: reported with its traceback, the summary still written
            import traceback

            traceback.print_exc()
            outcome, message, code = "failed", f"failed: {type(exc).__name__}: {exc}", 1
        finally:
            demo.shutdown()
    finally:
        INTERRUPTS.restore()
    if demo.summary.get("still_running"):
        outcome, code = "failed", 1
        message = (message or "") + f"; still running: {', '.join(demo.summary['still_running'])}"
    summary = demo.finish(outcome, message)
    if opts.json:
        print(json.dumps(summary, indent=2, default=str))
    print_summary(console, summary)
    return code

"""The demo's local stack on fixed ports: checked, configured, started, supervised.

Before anything starts, :func:`check_ports` and :func:`check_components`
refuse (saying which flag or package fixes it) a taken port or a missing
binary.  :class:`DemoStack` then starts, in a :class:`~iotcast.supervisor.ProcessList`,
the local AWS stack (kinesalite for Kinesis, the moto server for S3 and
DynamoDB), mosquitto, Prometheus with the rule files ``promtool`` accepts
(:func:`rule_files`, :func:`prometheus_config`), the bridge and the processor
workers (one ``iotcast process --workers N --watch <the showcased devices>``) as
``iotcast`` child processes.

>>> [(name, port) for name, port, _ in Ports().named()]
[('mosquitto', 1883), ('kinesalite', 4567), ('moto server', 5000), ('prometheus', 9090), ('bridge /metrics', 9101), ('processor worker 1 /metrics', 9102), ('processor worker 2 /metrics', 9103)]
>>> check_ports(Ports(), in_use=lambda port: port == 1883)
Traceback (most recent call last):
...
iotcast.demo.stack.DemoRefused: cannot start the demo:
  port 1883 (mosquitto) on 127.0.0.1 is taken: stop what listens there or choose another with --mqtt-port
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from iotcast import stack
from iotcast.cli import command_line, local_env
from iotcast.settings import Settings
from iotcast.stack import HOST, ComponentMissing, ManagedProcess, http_ready, port_in_use
from iotcast.supervisor import ProcessList

__all__ = [
    "DemoRefused",
    "DemoStack",
    "Ports",
    "check_components",
    "check_ports",
    "prometheus_config",
    "rule_files",
]

COMPONENTS = ("moto_server", "mosquitto", "prometheus", "kinesalite")
# ManagedProcess names of the stack
STACK_NAMES = ("kinesalite", "moto_server", "mosquitto", "prometheus")
RULES_DIR = Path(__file__).resolve().parents[2] / "monitoring" / "prometheus" / "rules"
SCRAPE_INTERVAL = "1s"
# Three shards: the three devices' ids hash to three different shards, so two workers
# share them as one device against two (with two shards, one carried two devices and
# ~74 % of the readings: the day took that worker's time).
SHARDS = 3
# Presence and fair sharing every second (default: a quarter of the session timeout,
# 15 s): the second worker gets its share while the replay starts, not 15 s into it.
HEARTBEAT_SECONDS = 1
BRIDGE_FLUSH_SECONDS = 10  # the bridge's flush on SIGTERM, well inside STOP_GRACE
STOP_GRACE = 30.0  # seconds an iotcast child has to stop on SIGTERM before SIGKILL


class DemoRefused(RuntimeError):
    """Nothing was started: a port is taken (the message says which and the flag to change it).

    >>> str(DemoRefused("port 1883 is taken"))
    'port 1883 is taken'
    """


@dataclass(frozen=True)
class Ports:
    """The fixed ports of the demo's stack on 127.0.0.1 (each overridable by a flag).

    The processor's ``workers`` serve /metrics on ``processor``, ``processor + 1``, ...
    (``iotcast process --workers N --metrics-port P``).

    >>> Ports(processor=9202, workers=1).named()[-1]
    ('processor worker 1 /metrics', 9202, '--processor-metrics-port')
    """

    mqtt: int = 1883
    kinesis: int = 4567
    moto: int = 5000
    prometheus: int = 9090
    bridge: int = 9101
    processor: int = 9102
    workers: int = 2

    @property
    def processors(self) -> tuple[int, ...]:
        """The /metrics port of each processor worker."""
        return tuple(self.processor + i for i in range(self.workers))

    def named(self) -> list[tuple[str, int, str]]:
        """(what, port, flag that changes it) for every port."""
        return [
            ("mosquitto", self.mqtt, "--mqtt-port"),
            ("kinesalite", self.kinesis, "--kinesis-port"),
            ("moto server", self.moto, "--moto-port"),
            ("prometheus", self.prometheus, "--prometheus-port"),
            ("bridge /metrics", self.bridge, "--bridge-metrics-port"),
        ] + [
            (f"processor worker {i} /metrics", port, "--processor-metrics-port")
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
    require = require or _require
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


def _require(component: str) -> str:
    if component == "kinesalite":  # an npm module run by node, not a binary
        return str(stack.require_kinesalite()[1])
    return stack.require(component)


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


@dataclass
class DemoStack:
    """The demo's processes: where they listen, how they are started, and their list.

    ``settings`` point at the stack (the moto server and mosquitto on ``ports``);
    ``work`` holds the components' data and logs, ``logs`` the iotcast children's;
    the processors watch the devices of ``watch`` (their per-device series).
    """

    settings: Settings
    ports: Ports
    procs: ProcessList
    work: Path
    logs: Path
    rule_files: list[Path] = field(default_factory=list)
    rules_rejected: dict[str, str] = field(default_factory=dict)
    watch: tuple[str, ...] = ()

    @property
    def bridge_url(self) -> str:
        return f"http://{HOST}:{self.ports.bridge}/metrics"

    @property
    def processor_urls(self) -> list[str]:
        return [f"http://{HOST}:{p}/metrics" for p in self.ports.processors]

    @property
    def prometheus_url(self) -> str:
        return f"http://{HOST}:{self.ports.prometheus}"

    def urls(self) -> dict[str, object]:
        return {
            "bridge_metrics": self.bridge_url,
            "processor_metrics": self.processor_urls,
            "prometheus": self.prometheus_url,
            "kinesis": self.settings.endpoint("kinesis"),
            "moto": self.settings.endpoint("s3"),
            "mqtt": self.settings.mqtt_url,
        }

    def env(self) -> dict[str, str]:
        """The children's environment: the user's IOTCAST_*/AWS_* never leak past the flags."""
        return local_env(self.settings)

    def iotcast(self, name: str, command: str, *extra: str, port: int = 0) -> ManagedProcess:
        """An ``iotcast <command>`` child pointed at the stack, logging to ``logs/<name>.log``."""
        argv = command_line(self.settings, command, *extra)
        return ManagedProcess(name, argv, port, self.logs / f"{name}.log", env=self.env())

    def load_rules(self, say: Callable[[str], None]) -> None:
        """The alert rule files Prometheus will load; those ``promtool`` rejects are said."""
        self.rule_files, self.rules_rejected = rule_files()
        for path, why in self.rules_rejected.items():
            say(f"[yellow]warning:[/] {path} fails `promtool check rules`, not loaded: {why}")

    def start(self, say: Callable[[str], None]) -> None:
        """The components, then the bridge and the processor together, waited for until ready."""
        config = prometheus_config(self.work / "prometheus.yml", self.ports, self.rule_files)
        ports, work = self.ports, self.work
        say(f"starting kinesalite on :{ports.kinesis}, moto server on :{ports.moto}, "
            f"mosquitto on :{ports.mqtt}, Prometheus on :{ports.prometheus}")  # fmt: skip
        self.procs.adopt(lambda: stack.start_kinesalite(work, ports.kinesis))
        self.procs.adopt(lambda: stack.start_moto(work, ports.moto))
        self.procs.adopt(lambda: stack.start_mosquitto(work, ports.mqtt))
        self.procs.adopt(lambda: stack.start_prometheus(work, config, ports.prometheus))
        say(f"starting the bridge (/metrics on :{ports.bridge}) and the processor "
            f"({ports.workers} workers, /metrics on :{ports.processor}"
            f"{f'-{ports.processors[-1]}' if ports.workers > 1 else ''})")  # fmt: skip
        bridge = self.iotcast(
            "bridge", "bridge", "--create-stream", "--shards", str(SHARDS),
            "--stop-timeout", str(BRIDGE_FLUSH_SECONDS), "--metrics-port", str(ports.bridge),
            port=ports.bridge,
        )  # fmt: skip
        health = http_ready(f"http://{HOST}:{ports.bridge}/healthz")
        proc = self.iotcast(
            "processor", "process", "--create-resources", "--shards", str(SHARDS),
            "--checkpoint-seconds", "5", "--heartbeat", str(HEARTBEAT_SECONDS),
            "--workers", str(ports.workers), *self.watch_flags(),
            "--metrics-port", str(ports.processor), port=ports.processor,
        )  # fmt: skip
        every_worker = [http_ready(url) for url in self.processor_urls]
        self.procs.start_together(
            [(bridge, health), (proc, lambda: all(up() for up in every_worker))], timeout=90
        )

    def watch_flags(self) -> list[str]:
        """``iotcast process``'s flags for the watch list (none when it is empty).

        >>> DemoStack(Settings(), Ports(), ProcessList(), Path("w"), Path("l"),
        ...           watch=("a", "b")).watch_flags()
        ['--watch', 'a,b']
        """
        return ["--watch", ",".join(self.watch)] if self.watch else []

    def operator_command(self, command: str) -> str:
        """The command line of an operator command (``status``, ``models list``) pointed at
        this stack: nothing to add on the default ports (the defaults are this stack)."""
        s, d = self.settings, Settings()
        env = ""
        if s.endpoint("kinesis") != d.endpoint("kinesis"):
            env = f"AWS_ENDPOINT_URL_KINESIS={s.endpoint('kinesis')} "
        flags = "" if s.endpoint_url == d.endpoint_url else f" --endpoint-url {s.endpoint_url}"
        for name in ("stream", "bucket", "app"):
            if getattr(s, name) != getattr(d, name):
                flags += f" --{name} {getattr(s, name)}"
        return f"{env}.venv/bin/iotcast {command}{flags}"

    def children(self) -> list[str]:
        """The iotcast children (bridge, processors, evaluation): stopped before the stack."""
        return [p.name for p in self.procs.processes if p.name not in (*STACK_NAMES, "reaper")]

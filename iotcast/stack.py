"""Start and stop the real local components on 127.0.0.1.

Used by the test fixtures, the benchmarks and ``iotcast demo``: mosquitto,
the moto server (Kinesis, S3 and DynamoDB on one endpoint), Prometheus and
kinesalite, each a child process on a free port, waited for until it
answers, and stopped (SIGTERM, then SIGKILL after a grace period).

>>> port = free_port()
>>> 1024 < port < 65536
True
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ComponentMissing",
    "ManagedProcess",
    "free_port",
    "http_ready",
    "port_in_use",
    "require",
    "require_kinesalite",
    "start_kinesalite",
    "start_mosquitto",
    "start_moto",
    "start_prometheus",
]

HOST = "127.0.0.1"

_HOW_TO_GET = {
    "mosquitto": "apt-get install -y mosquitto  (Debian package)",
    "prometheus": "apt-get install -y prometheus  (Debian package)",
    "promtool": "apt-get install -y prometheus  (Debian package, ships promtool)",
    "moto_server": "pip install 'moto[server]'  (into the project's .venv: ./dev setup)",
    "kinesalite": "npm ci  (in the repository root, from package-lock.json; ./dev setup does it)",
    "node": "apt-get install -y nodejs npm  (Debian packages; ./dev setup does it)",
}


class ComponentMissing(RuntimeError):
    """A component binary is not installed; the message says how to get it."""


def require(binary: str) -> str:
    """Return the path of ``binary`` or raise :class:`ComponentMissing` saying how to install it."""
    venv_bin = Path(sys.executable).parent / binary
    if venv_bin.exists():  # ours first: a moto_server elsewhere on PATH may be another version
        return str(venv_bin)
    found = shutil.which(binary)
    if found is None:
        for extra in ("/usr/sbin", "/usr/local/sbin"):
            candidate = Path(extra) / binary
            if candidate.exists():
                return str(candidate)
        raise ComponentMissing(
            f"{binary} is not installed; get it with: {_HOW_TO_GET.get(binary, binary)}"
        )
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


@dataclass
class ManagedProcess:
    """A child process we started, with its log file and a stop that always works."""

    name: str
    argv: list[str]
    port: int
    log_path: Path
    env: dict[str, str] | None = None
    cwd: str | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(
        self, ready: Callable[[], bool] | None = None, timeout: float = 30.0
    ) -> ManagedProcess:
        """:meth:`spawn`, then :meth:`wait_ready`."""
        self.spawn()
        return self.wait_ready(ready, timeout)

    def spawn(self) -> ManagedProcess:
        """Start the process and return at once (its port must be free)."""
        if port_in_use(self.port):
            raise RuntimeError(
                f"cannot start {self.name}: port {self.port} on {HOST} is already taken "
                f"(stop what listens there or choose another port)"
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its life
        self.proc = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        log.close()
        return self

    def wait_ready(
        self, ready: Callable[[], bool] | None = None, timeout: float = 30.0
    ) -> ManagedProcess:
        """Until ``ready()`` (default: its port answers); fail if it exits or takes longer
        than ``timeout`` seconds (then it is stopped)."""
        assert self.proc is not None, "spawn() first"
        check = ready or (lambda: port_in_use(self.port))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {self.proc.returncode} while starting; "
                    f"see {self.log_path}:\n{self.log_tail()}"
                )
            try:
                if check():
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"{self.name} did not become ready in {timeout:.0f}s; see {self.log_path}"
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def http_ready(url: str, timeout: float = 2.0) -> Callable[[], bool]:
    """A readiness check for :meth:`ManagedProcess.start`: ``url`` answers 200."""

    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                return r.status == 200
        except OSError:
            return False

    return check


def _http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                return r.status < 500
        except OSError:
            return False

    return check


def start_mosquitto(
    workdir: Path,
    port: int | None = None,
    *,
    persistence: bool = True,
    extra_conf: str = "",
    allow_anonymous: bool = True,
) -> ManagedProcess:
    """Start Debian's mosquitto on 127.0.0.1 with persistence under ``workdir``.

    Run as root, mosquitto drops to the ``mosquitto`` user: its persistence
    directory is handed to that user (DESIGN.md, known behaviour).
    """
    binary = require("mosquitto")
    port = port or free_port()
    workdir = Path(workdir)
    data = workdir / "mosquitto-data"
    data.mkdir(parents=True, exist_ok=True)
    conf = workdir / "mosquitto.conf"
    lines = [
        f"listener {port} {HOST}",
        f"allow_anonymous {'true' if allow_anonymous else 'false'}",
        "max_queued_messages 0",
        "max_inflight_messages 0",
        "max_keepalive 65535",
        "persistent_client_expiration 1d",
    ]
    if persistence:
        lines += ["persistence true", f"persistence_location {data}/", "autosave_interval 1"]
    if os.geteuid() == 0:
        lines.append("user root")
    conf.write_text("\n".join(lines) + "\n" + extra_conf)
    return ManagedProcess(
        "mosquitto", [binary, "-c", str(conf)], port, workdir / "mosquitto.log"
    ).start()


def start_moto(workdir: Path, port: int | None = None) -> ManagedProcess:
    """Start ``moto_server`` (Kinesis, S3, DynamoDB on one endpoint) on 127.0.0.1."""
    binary = require("moto_server")
    port = port or free_port()
    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    proc = ManagedProcess(
        "moto_server",
        [binary, "-H", HOST, "-p", str(port)],
        port,
        Path(workdir) / "moto.log",
        env=env,
    )
    return proc.start(ready=_http_ok(f"http://{HOST}:{port}/moto-api/"), timeout=60)


def start_prometheus(
    workdir: Path, config_file: Path, port: int | None = None, *, retention: str = "1d"
) -> ManagedProcess:
    """Start the Debian Prometheus server on 127.0.0.1 with ``config_file``."""
    binary = require("prometheus")
    port = port or free_port()
    data = Path(workdir) / "prometheus-data"
    data.mkdir(parents=True, exist_ok=True)
    argv = [
        binary,
        f"--config.file={config_file}",
        f"--storage.tsdb.path={data}",
        f"--storage.tsdb.retention.time={retention}",
        f"--web.listen-address={HOST}:{port}",
        "--web.enable-lifecycle",
    ]
    proc = ManagedProcess("prometheus", argv, port, Path(workdir) / "prometheus.log")
    return proc.start(ready=_http_ok(f"http://{HOST}:{port}/-/ready"), timeout=60)


def require_kinesalite() -> tuple[str, Path]:
    """node and the kinesalite module, or :class:`ComponentMissing` saying how to get them."""
    node = require("node")
    module = Path(__file__).resolve().parent.parent / "node_modules" / "kinesalite"
    if not module.exists():
        raise ComponentMissing(
            f"kinesalite is not installed; get it with: {_HOW_TO_GET['kinesalite']}"
        )
    return node, module


def start_kinesalite(
    workdir: Path, port: int | None = None, *, shard_limit: int = 1000
) -> ManagedProcess:
    """Start kinesalite (Kinesis only, in memory; reshards correctly, unlike moto) on 127.0.0.1.

    It is the npm package in the repository's (gitignored) ``node_modules``, which
    ``./dev setup`` installs; it is started through node so that it listens on
    127.0.0.1 only (its own command line binds every interface).
    """
    node, module = require_kinesalite()
    port = port or free_port()
    # kinesalite 3.3.3 rethrows a request's error from its handler ("aborted",
    # ECONNRESET: a client killed while it sent), which ends the process and every
    # test or demo on it; such an error is said in the log and the server goes on
    # (tests/test_stack.py).  Any other uncaught error still ends it.
    script = (
        "process.on('uncaughtException', e => { if (e.code === 'ECONNRESET') {"
        " console.error('kinesalite: a client aborted its request:', e.code); return }"
        " console.error(e); process.exit(1) });"
        "require(process.argv[1])({createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0,"
        " shardLimit: +process.argv[3]}).listen(+process.argv[2], '127.0.0.1')"
    )
    argv = [node, "-e", script, str(module), str(port), str(shard_limit)]
    return ManagedProcess("kinesalite", argv, port, Path(workdir) / "kinesalite.log").start(
        timeout=60
    )

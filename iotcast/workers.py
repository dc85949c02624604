"""``iotcast process --workers N``: N processor processes on one host, one supervisor.

A Python process learns on one core; a host's other cores serve the stream
only through more processes.  The supervisor (the ``iotcast process``
process itself) starts N workers, each an ordinary ``iotcast process`` with
the same command line plus ``--workers 1``: they share the stream's shards
through the leases in DynamoDB exactly as processes on different hosts do
(fair sharing, hand-over, takeover), so nothing new sits on the hot path.

- **Ports.** Worker ``i`` (0-based) serves its own ``/metrics`` on
  ``--metrics-port + i``: one Prometheus target per worker, each process's
  figures (its shards' lag, its devices) apart, as for processes on different
  hosts.  One aggregated endpoint would have to merge per-shard gauges and
  per-device gauges across processes and hide which worker is behind; the
  ports are checked free before any worker starts.
- **Stop.** SIGTERM or Ctrl-C: every worker gets SIGTERM and writes its final
  checkpoint; the supervisor exits when the last one has, 0 if all exited 0.
- **A dying worker.** Any worker that exits while nothing asked it to is
  reported (its exit code or signal), the others are stopped gracefully
  (final checkpoints) and the supervisor exits 1.  It does not restart it:
  the shards of a worker that crashed are held by its lease until the
  session timeout whoever restarts, and a crash loop is better seen by the
  service manager that restarts the whole command (systemd, ECS, the demo)
  than hidden by a restart inside it.
- **An orphan.** Each worker is asked (``PR_SET_PDEATHSIG``) to get SIGTERM
  if the supervisor dies without its shutdown (SIGKILL, out of memory): it
  stops gracefully rather than keeps leases for nobody.

>>> worker_ports(9102, 3), worker_ports(None, 2)
([9102, 9103, 9104], [None, None])
>>> 1 <= available_cores() <= (os.cpu_count() or 1)
True
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["WorkerPool", "available_cores", "check_ports_free", "worker_ports"]

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
POLL_SECONDS = 0.2


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup CPU quota
    (a container's ``--cpus``, an ECS task's vCPUs), at least 1."""
    cores = len(os.sched_getaffinity(0))
    for path, parse in (
        ("/sys/fs/cgroup/cpu.max", lambda t: t.split()),  # cgroup v2: "quota period"
        ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", lambda t: [t.strip(), "100000"]),  # v1
    ):
        try:
            quota, period = parse(Path(path).read_text())[:2]
            if path.endswith("quota_us"):
                period = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text().strip()
            if quota not in ("max", "-1"):
                cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
            break
        except (OSError, ValueError):
            continue
    return max(1, cores)


def worker_ports(base: int | None, count: int) -> list[int | None]:
    """The /metrics port of each worker: ``base``, ``base + 1``, ... (None: no /metrics)."""
    return [None if base is None else base + i for i in range(count)]


def check_ports_free(ports: Sequence[int | None]) -> list[int]:
    """The ports among ``ports`` that something already listens on (any interface).

    Bound as the /metrics server binds them (``SO_REUSEADDR``): a port whose last
    connections linger in TIME_WAIT is free to it.
    """
    taken = []
    for port in ports:
        if port is None:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                taken.append(port)
    return taken


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, before exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def describe_exit(code: int) -> str:
    """``exit code 3`` or ``signal SIGKILL``, from a ``Popen.returncode``.

    >>> describe_exit(-9), describe_exit(1)
    ('signal SIGKILL', 'exit code 1')
    """
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"


class WorkerPool:
    """The workers of one ``iotcast process --workers N`` (see the module docstring).

    ``argv(i)`` is the command line of worker ``i``.  :meth:`run` starts them, watches
    them until SIGTERM/SIGINT or a worker's death, stops the rest and returns the exit code.
    """

    def __init__(self, argv: Sequence[Sequence[str]], ports: Sequence[int | None]) -> None:
        self.argv = [list(a) for a in argv]
        self.ports = list(ports)
        self.procs: list[subprocess.Popen] = []
        self.stopping = False
        self.died: list[tuple[int, int]] = []  # (worker index, return code) not asked to exit

    def _signal(self, signum: int, frame: object) -> None:
        if not self.stopping:
            log.info("%s: stopping %d workers (final checkpoints)", signal.Signals(signum).name,
                     len(self.procs))  # fmt: skip
        self.stopping = True

    def start(self) -> None:
        for i, argv in enumerate(self.argv):
            proc = subprocess.Popen(argv, preexec_fn=_die_with_parent)  # noqa: PLW1509
            self.procs.append(proc)
            where = f", /metrics on :{self.ports[i]}" if self.ports[i] is not None else ""
            log.info("worker %d/%d: pid %d%s", i + 1, len(self.argv), proc.pid, where)

    def run(self) -> int:
        previous = {s: signal.signal(s, self._signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            self._watch()
            return self._stop()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _watch(self) -> None:
        """Until asked to stop or a worker exits by itself."""
        while not self.stopping:
            for i, proc in enumerate(self.procs):
                code = proc.poll()
                if code is not None:
                    self.died.append((i, code))
                    log.error(
                        "worker %d/%d (pid %d) exited by itself (%s): stopping the others; "
                        "iotcast process exits 1 (restart it: the dead worker's shards are "
                        "taken over after the session timeout)",
                        i + 1, len(self.procs), proc.pid, describe_exit(code),
                    )  # fmt: skip
                    self.stopping = True
            if not self.stopping:
                time.sleep(POLL_SECONDS)

    def _stop(self) -> int:
        """SIGTERM every worker still running; wait for each (its final checkpoint)."""
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass  # it has just exited
        began = time.monotonic()
        codes: dict[int, int] = {}
        said = began
        while len(codes) < len(self.procs):
            for i, proc in enumerate(self.procs):
                if i in codes or (code := proc.poll()) is None:
                    continue
                codes[i] = code
                log.info("worker %d/%d (pid %d) exited (%s) %.1f s after the stop",
                         i + 1, len(self.procs), proc.pid, describe_exit(code),
                         time.monotonic() - began)  # fmt: skip
                if code != 0 and not any(d == i for d, _ in self.died):
                    log.error("worker %d/%d (pid %d) stopped with %s",
                              i + 1, len(self.procs), proc.pid, describe_exit(code))  # fmt: skip
            if time.monotonic() - said >= 10:
                said = time.monotonic()
                log.info("waiting for %d worker(s): final checkpoints, %.0f s so far",
                         len(self.procs) - len(codes), said - began)  # fmt: skip
            time.sleep(POLL_SECONDS / 4)
        if self.died or any(codes.values()):
            return 1
        log.info("all %d workers stopped cleanly", len(self.procs))
        return 0


def worker_argv(raw: Sequence[str], index: int, count: int, port: int | None) -> list[str]:
    """Worker ``index``'s command line: this command's own (``raw``, after the program name)
    with ``--workers 1``, the worker's place and its /metrics port appended (argparse keeps
    the last value of a repeated flag).

    >>> worker_argv(["process", "--workers", "2", "--metrics-port", "9102"], 1, 2, 9103)[3:]
    ['process', '--workers', '2', '--metrics-port', '9102', '--workers', '1', '--worker', '2/2', '--metrics-port', '9103']
    """
    argv = [sys.executable, "-m", "iotcast.cli", *raw, "--workers", "1"]
    argv += ["--worker", f"{index + 1}/{count}"]
    if port is not None:
        argv += ["--metrics-port", str(port)]
    return argv

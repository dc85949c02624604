"""Supervising the processes a run starts: the list, the interrupts, the reaper.

Used by ``iotcast demo`` and ``bench/soak.py``, which start a whole local
stack (mosquitto, moto, Prometheus, the bridge, processors) and must leave
nothing running behind them:

- :class:`ProcessList` keeps every process started (also one being started
  when an interrupt comes) and stops them in reverse order: SIGTERM, a
  bounded wait, SIGKILL.  With a ``registry`` directory it writes
  ``pids.json`` and ``children.json`` there on every change, for a person
  and for the reaper;
- :class:`Interrupts` turns SIGINT and SIGTERM into :class:`KeyboardInterrupt`,
  held back while a child is being started and ignored during the shutdown;
- the reaper (:meth:`ProcessList.start_reaper`) is a watchdog process that
  stops every child if the supervising process dies without its shutdown
  (SIGKILL, out of memory).

>>> procs = ProcessList()
>>> procs.stop_all(), procs.running()
({}, [])
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from iotcast.stack import ManagedProcess

__all__ = ["INTERRUPTS", "Interrupts", "ProcessList", "StopFailed"]


class StopFailed(RuntimeError):
    """A child survived SIGKILL; the message names it."""


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


class ProcessList:
    """Every process a run started, stopped in reverse order: SIGTERM, bounded wait, SIGKILL.

    ``registry``: a directory to keep ``pids.json`` and ``children.json`` in (the
    reaper's list), rewritten whenever a process is added.
    """

    def __init__(self, registry: Path | None = None) -> None:
        self.registry = registry
        self.processes: list[ManagedProcess] = []
        self.stop_seconds: dict[str, float] = {}
        self.killed: list[str] = []

    def start(self, proc: ManagedProcess, **start_kwargs: Any) -> ManagedProcess:
        """Keep ``proc``, then start it (an interrupt while it starts still finds it listed)."""
        self.processes.append(proc)
        try:
            proc.start(**start_kwargs)
        finally:
            self._changed()
        return proc

    def start_together(
        self, procs: list[tuple[ManagedProcess, Callable[[], bool]]], timeout: float
    ) -> None:
        """Keep and start every process at once, then wait until each is ``ready()``
        (their start-ups overlap: a Python child spends seconds importing)."""
        self.processes.extend(proc for proc, _ in procs)
        try:
            for proc, _ in procs:
                proc.spawn()
        finally:
            self._changed()
        for proc, ready in procs:
            proc.wait_ready(ready, timeout)

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

    def pids(self) -> dict[str, int]:
        return {p.name: p.proc.pid for p in self.processes if p.proc is not None}

    def get(self, name: str) -> ManagedProcess | None:
        return next((p for p in self.processes if p.name == name), None)

    def stop(self, names: list[str], grace: float) -> dict[str, int | None]:
        """Stop the named processes together: SIGTERM to all, wait up to ``grace`` seconds,
        SIGKILL those still running.  Returns the exit code of each process stopped here;
        ``stop_seconds`` and ``killed`` record how long each took and which needed SIGKILL.
        Raises :class:`StopFailed` when one survives SIGKILL."""
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
            raise StopFailed("could not stop: " + "; ".join(errors))
        return codes

    def stop_all(self, grace: float = 15.0) -> dict[str, int | None]:
        return self.stop([p.name for p in self.processes], grace)

    def running(self) -> list[str]:
        return [p.name for p in self.processes if p.alive()]

    # ----------------------------------------------------------- registry, reaper
    def _changed(self) -> None:
        if self.registry is None:
            return
        self.registry.mkdir(parents=True, exist_ok=True)
        (self.registry / "pids.json").write_text(json.dumps(self.pids(), indent=2) + "\n")
        children = [
            {"name": name, "pid": pid, "cmdline": _cmdline(pid)}
            for name, pid in self.pids().items()
            if name != "reaper"
        ]
        tmp = self.registry / "children.json.tmp"
        tmp.write_text(json.dumps(children) + "\n")
        tmp.replace(self.registry / "children.json")

    def start_reaper(self, log_path: Path) -> ManagedProcess:
        """A watchdog that stops every child if this process dies without its shutdown
        (SIGKILL, out of memory): it polls its parent and acts on ``children.json``."""
        if self.registry is None:
            raise ValueError("a reaper needs the registry directory of its children")
        registry = str(self.registry / "children.json")
        argv = [sys.executable, "-c", REAPER, str(os.getpid()), registry]
        proc = ManagedProcess("reaper", argv, 0, log_path)
        return self.start(proc, ready=lambda: "watching" in proc.log_tail())


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

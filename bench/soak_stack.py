"""The soak's stack: the components and the real bridge and processors, supervised, stopped.

On 127.0.0.1 (ports from :func:`iotcast.stack.free_port`): mosquitto, a moto
server (Kinesis, S3, DynamoDB; with ``--moto-fix`` through ``bench/moto_fast.py``,
its Kinesis shards O(1) per record), one ``iotcast bridge`` (it subscribes with
one fixed client id and no shared subscription, so two bridges would each
forward every message) and ``--processors`` ``iotcast process`` processes over
a ``--shards`` stream.  They are the shell's children as in ``iotcast demo``:
the same command lines and environment (:func:`iotcast.cli.command_line`,
:func:`iotcast.cli.local_env`) and the same supervision
(:class:`iotcast.supervisor.ProcessList`, with its reaper: a soak killed
mid-run leaves nothing running).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from iotcast.cli import command_line, local_env
from iotcast.settings import Settings
from iotcast.stack import HOST, ManagedProcess, free_port, http_ready, start_mosquitto, start_moto
from iotcast.supervisor import ProcessList

__all__ = ["SoakStack"]

ROOT = Path(__file__).resolve().parents[1]


class SoakStack:
    """The processes of one soak (see the module docstring)."""

    def __init__(self, args: argparse.Namespace, work: Path, say: Callable[[str], None]) -> None:
        self.args = args
        self.work = work
        self.say = say
        self.procs = ProcessList(registry=work)
        self.settings = Settings()

    def get(self, name: str) -> ManagedProcess:
        proc = self.procs.get(name)
        assert proc is not None, name
        return proc

    def processors(self) -> list[ManagedProcess]:
        return [p for p in self.procs.processes if p.name.startswith("processor-")]

    def running(self) -> list[ManagedProcess]:
        """The processes to sample (the reaper is not part of the pipeline)."""
        return [p for p in self.procs.processes if p.name != "reaper" and p.proc is not None]

    # ------------------------------------------------------------------ start
    def _start_moto(self) -> ManagedProcess:
        if not self.args.moto_fix:
            return start_moto(self.work)
        port = free_port()
        argv = [sys.executable, str(ROOT / "bench" / "moto_fast.py"), "-H", HOST, "-p", str(port)]
        moto = ManagedProcess(
            "moto_server", argv, port, self.work / "moto.log", env=local_env(Settings())
        )
        return moto.start(ready=http_ready(f"{moto.url}/moto-api/"), timeout=60)

    def _iotcast(self, name: str, command: str, *extra: str, ready_path: str) -> ManagedProcess:
        port = free_port()
        argv = command_line(self.settings, command, "--metrics-port", str(port), *extra)
        proc = ManagedProcess(
            name, argv, port, self.work / f"{name}.log", env=local_env(self.settings), cwd=str(ROOT)
        )
        return self.procs.start(
            proc, ready=http_ready(f"http://{HOST}:{port}{ready_path}"), timeout=90
        )

    def start(self) -> None:
        a = self.args
        self.say(f"work dir {self.work}; starting moto and mosquitto")
        self.procs.start_reaper(self.work / "reaper.log")
        moto = self.procs.adopt(self._start_moto)
        mosquitto = self.procs.adopt(lambda: start_mosquitto(self.work))
        mqtt_url = f"mqtt://{HOST}:{mosquitto.port}"
        self.settings = Settings.of(
            endpoint_url=moto.url, mqtt_url=mqtt_url, bucket="iotcast-soak", app="soak"
        )
        shards = ("--shards", str(a.shards))
        self._iotcast(
            "bridge", "bridge", "--create-stream", *shards, *a.bridge_arg, ready_path="/healthz"
        )
        for i in range(1, a.processors + 1):
            self._iotcast(
                f"processor-{i}", "process", "--create-resources", *shards, *a.processor_arg,
                ready_path="/metrics?name[]=iotcast_shard_owned",
            )  # fmt: skip
        self.say(
            "started: " + ", ".join(f"{p.name} pid {p.proc.pid} :{p.port}" for p in self.running())
        )

    def wait_for_shards(self, owned: Callable[[ManagedProcess], float], notes: list[str]) -> None:
        """Wait until every shard is owned and each processor holds at least one
        (``owned(processor)``: the shards it says it owns)."""
        timeout = self.args.balance_timeout
        deadline = time.monotonic() + timeout
        counts: list[float] = []
        while time.monotonic() < deadline:
            counts = [owned(p) for p in self.processors()]
            if sum(counts) >= self.args.shards and min(counts) >= 1:
                self.say(f"shards owned per processor: {counts}")
                return
            time.sleep(1)
        notes.append(f"shards not balanced before publishing: owned {counts}")
        self.say(f"warning: shards owned per processor {counts} after {timeout:.0f}s; going on")

    # ------------------------------------------------------------------- stop
    def stop_bridge(self) -> int | None:
        """SIGTERM the bridge: it flushes what it holds and acknowledges it."""
        return self.get("bridge").stop(grace=60)

    def stop_processors(self, notes: list[str]) -> tuple[dict[str, int | None], float]:
        """SIGTERM every processor at once (final checkpoints), SIGKILL after ``--stop-grace``;
        returns the exit codes and the seconds the stop took."""
        t0 = time.monotonic()
        names = [p.name for p in self.processors()]
        codes = {p.name: p.proc.returncode for p in self.processors() if not p.alive()}
        codes.update(self.procs.stop(names, self.args.stop_grace))
        for name in self.procs.killed:
            notes.append(
                f"{name} did not stop within {self.args.stop_grace:.0f} s of SIGTERM: killed"
            )
        return codes, time.monotonic() - t0

    def stop_all(self) -> None:
        self.procs.stop_all(grace=30)

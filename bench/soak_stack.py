"""The soak's stack: the components and the real bridge and processors, supervised, stopped.

On 127.0.0.1 (ports from :func:`iotcast.stack.free_port`): the local AWS stack
(kinesalite for Kinesis, a moto server for S3 and DynamoDB), mosquitto,
``--bridges`` ``iotcast bridge`` processes (one: ``bridge``, the default set-up,
its own client id and a plain subscription; several: ``bridge-0``, ``bridge-1``,
... with ``--bridge-id 0``, ``1``, ..., each its own client id and persistent
session, sharing the devices' topics through the shared subscription
``$share/<app>/iot/+/telemetry``: :func:`bridge_names`) and one
``iotcast process --workers N`` over a ``--shards`` stream, its workers
serving /metrics on consecutive ports (:class:`Worker`: each is polled and
sampled on its own) and watching ``--watch`` devices spread over the fleet
(:func:`watched`: their per-device series sample the publish -> learned
latency).  They are the shell's children as in ``iotcast demo``: the same
command lines and environment (:func:`iotcast.cli.command_line`,
:func:`iotcast.cli.local_env`) and the same supervision
(:class:`iotcast.supervisor.ProcessList`, with its reaper: a soak killed
mid-run leaves nothing running).
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.soak_load import make_devices
from iotcast.cli import command_line, local_env
from iotcast.settings import Settings
from iotcast.stack import (
    HOST,
    ManagedProcess,
    free_port,
    http_ready,
    port_in_use,
    start_kinesalite,
    start_mosquitto,
    start_moto,
)
from iotcast.supervisor import ProcessList
from monitoring.metrics import MAX_WATCHED

__all__ = ["SoakStack", "Worker", "bridge_client_id", "bridge_names", "watched"]

ROOT = Path(__file__).resolve().parents[1]


def watched(devices: int, count: int) -> list[str]:
    """``count`` device ids (at most :data:`MAX_WATCHED`) spread evenly over the fleet.

    >>> watched(1000, 3)
    ['02:50:00:00:00:00', '02:50:00:00:01:4d', '02:50:00:00:02:9a']
    """
    count = max(0, min(count, devices, MAX_WATCHED))
    ids = [d.id for d in make_devices(devices)]
    return [ids[i * devices // count] for i in range(count)]


def bridge_names(count: int) -> list[str]:
    """The soak's bridge processes: ``bridge`` alone, or ``bridge-<id>`` for several.

    >>> bridge_names(1), bridge_names(2)
    (['bridge'], ['bridge-0', 'bridge-1'])
    """
    return ["bridge"] if count == 1 else [f"bridge-{i}" for i in range(count)]


def bridge_client_id(app: str, name: str) -> str:
    """The MQTT client id of bridge ``name`` (as ``iotcast bridge`` builds it).

    >>> bridge_client_id("soak", "bridge"), bridge_client_id("soak", "bridge-1")
    ('iotcast-bridge-soak', 'iotcast-bridge-soak-1')
    """
    return f"iotcast-bridge-{app}" + ("" if name == "bridge" else f"-{name.split('-', 1)[1]}")


@dataclass(frozen=True)
class Worker:
    """One processor worker: its name (``processor-<i>``), /metrics port and pid."""

    name: str
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def free_ports(count: int) -> int:
    """A port ``p`` with ``p`` ... ``p + count - 1`` free (the workers' /metrics)."""
    while True:
        p = free_port()
        if p + count < 65536 and not any(port_in_use(p + i) for i in range(1, count)):
            return p


class SoakStack:
    """The processes of one soak (see the module docstring)."""

    def __init__(self, args: argparse.Namespace, work: Path, say: Callable[[str], None]) -> None:
        self.args = args
        self.work = work
        self.say = say
        self.procs = ProcessList(registry=work)
        self.settings = Settings()
        self.workers: list[Worker] = []

    def get(self, name: str) -> ManagedProcess:
        proc = self.procs.get(name)
        assert proc is not None, name
        return proc

    def bridges(self) -> list[ManagedProcess]:
        """The bridge processes, in order (one, or ``--bridges`` on a shared subscription)."""
        return [self.get(name) for name in bridge_names(self.args.bridges)]

    def bridge_client_ids(self) -> list[str]:
        return [bridge_client_id(self.settings.app, n) for n in bridge_names(self.args.bridges)]

    def processors(self) -> list[Worker]:
        """The processor workers (each polled and sampled on its own)."""
        return self.workers

    def running(self) -> list[tuple[str, int]]:
        """(name, pid) of the processes to sample: the stack, the bridge, the processor's
        supervisor and each worker (the reaper is not part of the pipeline)."""
        procs = [p for p in self.procs.processes if p.name != "reaper" and p.proc is not None]
        return [(p.name, p.proc.pid) for p in procs] + [(w.name, w.pid) for w in self.workers]

    # ------------------------------------------------------------------ start
    def _iotcast(
        self, name: str, command: str, *extra: str, ready: Callable[[int], bool], ports: int = 1
    ) -> ManagedProcess:
        port = free_ports(ports)
        argv = command_line(self.settings, command, "--metrics-port", str(port), *extra)
        proc = ManagedProcess(
            name, argv, port, self.work / f"{name}.log", env=local_env(self.settings), cwd=str(ROOT)
        )
        return self.procs.start(proc, ready=lambda: ready(port), timeout=90)

    def _workers_of(self, proc: ManagedProcess) -> list[Worker]:
        found = re.findall(
            r"worker (\d+)/\d+: pid (\d+), /metrics on :(\d+)", proc.log_path.read_text()
        )
        return [Worker(f"processor-{i}", int(port), int(pid)) for i, pid, port in found]

    def start(self) -> None:
        a = self.args
        self.say(f"work dir {self.work}; starting kinesalite, moto and mosquitto")
        self.procs.start_reaper(self.work / "reaper.log")
        kinesalite = self.procs.adopt(lambda: start_kinesalite(self.work))
        moto = self.procs.adopt(lambda: start_moto(self.work))
        mosquitto = self.procs.adopt(lambda: start_mosquitto(self.work))
        mqtt_url = f"mqtt://{HOST}:{mosquitto.port}"
        self.settings = Settings.of(
            endpoint_url=moto.url,
            endpoints={"kinesis": kinesalite.url},
            mqtt_url=mqtt_url,
            bucket="iotcast-soak",
            app="soak",
        )
        shards = ("--shards", str(a.shards))
        for i, name in enumerate(bridge_names(a.bridges)):
            ident = () if name == "bridge" else ("--bridge-id", str(i))
            create = ("--create-stream", *shards) if i == 0 else ()  # the first one creates it
            self._iotcast(
                name, "bridge", *create, *ident, *a.bridge_arg,
                ready=lambda port: http_ready(f"http://{HOST}:{port}/healthz")(),
            )  # fmt: skip
        path = "/metrics?name[]=iotcast_shard_owned"
        watch = watched(a.devices, a.watch)
        supervisor = self._iotcast(
            "processor", "process", "--create-resources", *shards, "--workers", str(a.workers),
            *(["--watch", ",".join(watch)] if watch else []), *a.processor_arg, ports=a.workers,
            ready=lambda port: all(
                http_ready(f"http://{HOST}:{port + i}{path}")() for i in range(a.workers)
            ),
        )  # fmt: skip
        self.workers = self._workers_of(supervisor)
        assert len(self.workers) == a.workers, supervisor.log_tail()
        self.say("started: " + ", ".join(f"{n} pid {pid}" for n, pid in self.running()))

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
    def stop_bridges(self) -> dict[str, int | None]:
        """SIGTERM each bridge in turn: it flushes what it holds and acknowledges it; their
        exit codes by name."""
        return {b.name: b.stop(grace=60) for b in self.bridges()}

    def stop_processors(self, notes: list[str]) -> tuple[dict[str, int | None], float]:
        """SIGTERM the processor (its workers write their final checkpoints), SIGKILL after
        ``--stop-grace``; returns the exit code and the seconds the stop took."""
        t0 = time.monotonic()
        supervisor = self.get("processor")
        codes = {} if supervisor.alive() else {"processor": supervisor.proc.returncode}
        codes.update(self.procs.stop(["processor"], self.args.stop_grace))
        for name in self.procs.killed:
            notes.append(
                f"{name} did not stop within {self.args.stop_grace:.0f} s of SIGTERM: killed"
            )
        return codes, time.monotonic() - t0

    def stop_all(self) -> None:
        self.procs.stop_all(grace=30)

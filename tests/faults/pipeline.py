"""The whole pipeline as child processes, for the fault tests: start, kill, restart, probe.

:class:`Pipeline` runs ``iotcast bridge`` and ``iotcast process`` processes
(:mod:`tests.support`) against the test's mosquitto and moto server, replays
generated readings over MQTT in the background, kills and restarts parts on
request, and measures how long the pipeline takes to recover from a fault
with :class:`Probes`: one reading of a fresh device published the moment a
fault ends; recovered = the probe is learned by a processor (``learned``) and
is in a committed S3 manifest (``committed``).  :meth:`Pipeline.audit` then
balances the books (:mod:`tests.faults.books`).

>>> Probe("probe-00", sent=10.0, learned=11.5).learned_after
1.5
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iotcast.settings import Settings
from iotcast.stack import ManagedProcess, port_in_use
from stream.lease_table import lease_table_name
from telemetry.generate import expected_rows, generate
from telemetry.reading import Reading
from telemetry.replay import BackgroundReplay, replay
from tests import support
from tests.faultproxy import FaultProxy
from tests.faults.books import Ledger, StreamContents, audit, wait_drained, wait_until

__all__ = ["Pipeline", "Probe", "Probes", "make_readings"]

HOOKS = str(Path(__file__).with_name("hooks.py"))
PROBE_TS = 1_594_512_000.0

PROCESSOR_FLAGS = (
    *("--checkpoint-seconds", "1", "--checkpoint-every", "2000"),
    *("--session-timeout", "4", "--shard-refresh", "5"),
    # Prediction records would quadruple the writes to moto, whose PutRecords slows as a
    # shard fills (DESIGN.md); the models predict and score all the same.
    *("--predictions", "none"),
)


def make_readings(n: int, devices: int = 8, seed: int = 11) -> list[Reading]:
    """``n`` generated readings of ``devices`` devices in arrival order (with the generator's
    planted duplicates, out-of-order readings and glitches)."""
    per_day = expected_rows(1.0, devices, seed)
    days = max(0.01, n / per_day * 1.2 + 0.01)
    return list(itertools.islice(generate(days, seed, devices), n))


@dataclass
class Probe:
    """One reading of a fresh device, published when a fault ends; times to learned/committed."""

    device: str
    sent: float
    learned: float | None = None
    committed: float | None = None

    @property
    def learned_after(self) -> float | None:
        return None if self.learned is None else self.learned - self.sent

    @property
    def committed_after(self) -> float | None:
        return None if self.committed is None else self.committed - self.sent


class Probes:
    """Probes published so far, watched on a thread: learned (a processor's metric names the
    device) and committed (a shard manifest lists it)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.probes: list[Probe] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def send(self) -> Probe:
        k = len(self.probes)
        reading = Reading(
            PROBE_TS + k, f"probe-{k:02d}", 0.005, 50.0, False, 0.007, False, 0.02, 21.5
        )
        sent = time.monotonic()
        self.pipeline.replayed += replay(self.pipeline.settings.mqtt, [reading], speed=0, qos=1)
        self.pipeline.ledger.published.append(reading)
        probe = Probe(reading.device, sent)
        self.probes.append(probe)
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="probes", daemon=True)
            self._thread.start()
        return probe

    def _open(self) -> list[Probe]:
        return [p for p in self.probes if p.learned is None or p.committed is None]

    def _watch(self) -> None:
        last_manifests = 0.0
        while not self._stop.is_set():
            open_probes = self._open()
            if any(p.learned is None for p in open_probes):
                learned = self.pipeline.metric("iotcast_readings_learned_total")
                now = time.monotonic()
                for p in open_probes:
                    if p.learned is None and learned.get(f'device="{p.device}"', 0) > 0:
                        p.learned = now
            if open_probes and time.monotonic() - last_manifests >= 0.5:
                last_manifests = time.monotonic()
                self._committed(open_probes)
            self._stop.wait(0.2)

    def _committed(self, open_probes: list[Probe]) -> None:
        try:
            manifests = support.manifests(self.pipeline.settings)
            devices = {d for m in manifests.values() for d in m.devices}
        except Exception:  # noqa: BLE001 - S3 may be the fault under test; retried
            devices = set()
        now = time.monotonic()
        for p in open_probes:
            if p.committed is None and p.device in devices:
                p.committed = now
                if p.learned is None:
                    p.learned = now

    def wait(self, timeout: float) -> None:
        wait_until(
            lambda: all(p.committed is not None for p in self.probes),
            timeout,
            "every probe to be learned and checkpointed",
        )

    def figures(self) -> list[dict[str, Any]]:
        return [
            {"device": p.device, "learned_s": p.learned_after, "committed_s": p.committed_after}
            for p in self.probes
        ]

    def stop(self) -> None:
        self._stop.set()


class Pipeline:
    """Bridge and processors as child processes, a background replay, probes and the audit.

    ``settings`` names the test's stream, bucket and app, its mosquitto and
    its local AWS stack (kinesalite, moto); ``bridge_via`` puts a fault proxy in
    front of every service the bridge reaches, ``processor_via`` in front of the
    processors' S3 and DynamoDB (their Kinesis reads go straight to the stack unless
    ``processor_kinesis_via``).
    """

    def __init__(
        self,
        settings: Settings,
        workdir: Path,
        *,
        shards: int = 2,
        bridge_via: FaultProxy | None = None,
        processor_via: FaultProxy | None = None,
        processor_kinesis_via: bool = False,
    ) -> None:
        self.settings = settings
        self.workdir = Path(workdir)
        self.shards = shards
        self.bridge_settings = bridge_via.route(settings) if bridge_via else settings
        kinesis_via = processor_via is not None and processor_kinesis_via
        self.processor_settings = settings.with_endpoints(
            kinesis=processor_via.url if kinesis_via else settings.endpoint("kinesis"),
            s3=processor_via.url if processor_via else None,
            dynamodb=processor_via.url if processor_via else None,
        )
        self.bridge: ManagedProcess | None = None
        self.processors: list[ManagedProcess | None] = []
        self.ledger = Ledger()
        self.replayed = 0
        self.probes = Probes(self)
        self.restarts: Counter = Counter()
        self._replay: BackgroundReplay | None = None

    # ------------------------------------------------------------- processes
    def create_resources(self) -> None:
        support.create_stream(self.settings, self.shards)
        support.create_bucket(self.settings)

    def start_bridge(self, *, wait_subscribed: bool = True) -> ManagedProcess:
        log = self.workdir / "bridge.log"
        before = support.subscriptions(log)

        def ready(proc: ManagedProcess) -> bool:
            up = port_in_use(proc.port)
            return up and (not wait_subscribed or support.subscriptions(log) > before)

        self.bridge = support.start_bridge(
            self.bridge_settings, self.workdir, "--retry-seconds", "600", ready=ready, log=log
        )
        self.restarts["bridge"] += 1
        return self.bridge

    def start_processor(
        self,
        index: int | None = None,
        *,
        slow_flag: Path | None = None,
        slow_ms: float = 0.0,
        extra: tuple[str, ...] = (),
    ) -> ManagedProcess:
        """Start processor ``index`` (a new one if None); ``slow_flag``: the test-only hook
        (tests/faults/hooks.py) sleeps ``slow_ms`` per record while that file exists."""
        program: tuple[str, ...] = (support.IOTCAST,)
        if slow_flag is not None:
            program = (sys.executable, HOOKS, str(slow_flag), str(slow_ms / 1000.0))
        if index is None:
            index = len(self.processors)
            self.processors.append(None)
        where = self.processor_settings
        name, log = f"processor-{index}", self.workdir / f"processor-{index}.log"
        proc = support.start_processor(
            where, self.workdir, *PROCESSOR_FLAGS, *extra, name=name, program=program, log=log
        )
        self.processors[index] = proc
        self.restarts["processor"] += 1
        return proc

    def kill_bridge(self) -> None:
        assert self.bridge is not None
        self.bridge.kill()

    def kill_processor(self, index: int) -> None:
        proc = self.processors[index]
        assert proc is not None
        proc.kill()

    def live_processors(self) -> list[ManagedProcess]:
        return [p for p in self.processors if p is not None and p.alive()]

    # ---------------------------------------------------------------- figures
    def metric(self, name: str) -> dict[str, float]:
        """``{labels: value}`` summed over the live processors."""
        total: Counter = Counter()
        for p in self.live_processors():
            try:
                total.update(support.metric_values(support.scrape(p), name))
            except OSError:
                continue
        return dict(total)

    def learned_total(self) -> float:
        return sum(self.metric("iotcast_readings_learned_total").values())

    def leases(self) -> dict[str, tuple[str | None, float, str | None]]:
        """shard -> (owner ref, heartbeat ts, sequence) from the lease table ({} before it exists)."""
        ddb = self.settings.client("dynamodb")
        try:
            table = lease_table_name(self.settings.app)
            items = ddb.scan(TableName=table, ConsistentRead=True)["Items"]
        except ddb.exceptions.ResourceNotFoundException:
            return {}
        return {
            it["shard_id"]["S"]: (
                it.get("ref", {}).get("S"),
                float(it.get("ts", {}).get("N", 0)),
                it.get("sequence", {}).get("S"),
            )
            for it in items
            if it["shard_id"]["S"].startswith("shardId-")
        }

    def wait_leased(self, timeout: float = 90) -> dict[str, str]:
        """Until every shard is leased, spread over all live processors; returns the owners."""
        want = min(len(self.live_processors()), self.shards)

        def spread() -> dict[str, str] | None:
            owners = {s: ref for s, (ref, _, _) in self.leases().items() if ref}
            if len(owners) == self.shards and len(set(owners.values())) == want:
                return owners
            return None

        what = f"{self.shards} shards leased by {want} processes"
        return wait_until(spread, timeout, what, interval=0.5)

    # ---------------------------------------------------------------- readings
    def replay_in_background(self, readings: list[Reading], speed: float = 0.0) -> None:
        """Publish ``readings`` from a thread: as fast as possible, or at ``speed`` times
        their event time."""
        self.ledger.published.extend(readings)
        self._replay = BackgroundReplay(self.settings.mqtt, readings, speed=speed, qos=1).start()

    def join_replay(self, timeout: float) -> None:
        assert self._replay is not None
        try:
            self.replayed += self._replay.join(timeout)
        except TimeoutError as exc:
            raise AssertionError(str(exc)) from None

    def probe(self) -> Probe:
        """Publish one reading of a new device now; its learning is watched in the background."""
        return self.probes.send()

    def put_poison(self, data: bytes, partition_key: str) -> str:
        """Put ``data`` straight into the telemetry stream (bypassing the bridge)."""
        kinesis = self.settings.client("kinesis")
        resp = kinesis.put_record(
            StreamName=self.settings.stream, Data=data, PartitionKey=partition_key
        )
        self.ledger.poison.append(data)
        return resp["SequenceNumber"]

    # ------------------------------------------------------------ the books
    def wait_drained(self, timeout: float) -> StreamContents:
        return wait_drained(self.settings, self.ledger, timeout)

    def audit(self, contents: StreamContents | None = None) -> dict[str, Any]:
        return {
            "replayed": self.replayed,
            **audit(self.settings, self.ledger, contents),
            "probes": self.probes.figures(),
            "restarts": dict(self.restarts),
        }

    def close(self) -> None:
        """SIGKILL what is still running (the audit is done; a graceful stop is not under test)."""
        self.probes.stop()
        for proc in [self.bridge, *self.processors]:
            if proc is not None:
                proc.kill()

    def logs(self) -> str:
        out = []
        for path in sorted(self.workdir.glob("*.log")):
            out.append(
                f"--- {path.name}\n"
                + "\n".join(path.read_text(errors="replace").splitlines()[-15:])
            )
        return "\n".join(out)

"""The whole pipeline as child processes, for the fault tests, and the books that prove nothing was lost.

:class:`Pipeline` runs ``iotcast bridge`` and ``iotcast process`` processes
against the test's mosquitto and moto server, replays generated readings over
MQTT in the background, kills and restarts parts on request, and measures how
long the pipeline takes to recover from a fault with *probes*: one reading of
a fresh device published the moment a fault ends; recovered = the probe is
learned by a processor (``learned``) and is in a committed S3 manifest
(``committed``).

:meth:`Pipeline.audit` then reads the whole telemetry stream, the processor's
dead letters and the shard manifests and balances the books:

- every replayed reading is in the stream, or (moto restart) was accepted by
  the moto that was lost (``lost`` counts the rest);
- per device, replaying the stream's records in shard order through the
  processor's rules (a reading not newer than the device's last learned one
  is a duplicate or late, a glitch is skipped, the rest is learned) gives the
  number of readings that must have been learned; the manifest's sample count
  must equal it (``learned_twice`` counts the excess, ``missed`` the shortfall);
- every record that is not a reading is in the processor's dead letter with a
  reason (``dead_lettered``).

>>> expected_outcomes([("d", 1.0, False), ("d", 1.0, False), ("d", 0.5, False), ("d", 2.0, True)])
{'d': {'learned': 1, 'duplicate': 1, 'late': 1, 'glitch': 1}}
"""

from __future__ import annotations

import base64
import itertools
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import orjson
from botocore.config import Config
from botocore.exceptions import ClientError

from iotcast.settings import Settings
from iotcast.stack import ManagedProcess, free_port, port_in_use
from telemetry.generate import expected_rows, generate
from telemetry.reading import InvalidReading, Reading, decode_payload, is_glitch
from telemetry.replay import replay
from tests.processor_support import manifests, metric_values, scrape

__all__ = [
    "Pipeline",
    "Probe",
    "StreamContents",
    "expected_outcomes",
    "make_readings",
    "read_stream",
]

BIN = Path(sys.executable).parent
IOTCAST = str(BIN / "iotcast")
HOOKS = str(Path(__file__).with_name("hooks.py"))
PROBE_TS = 1_594_512_000.0

PROCESSOR_FLAGS = (
    "--checkpoint-seconds",
    "1",
    "--checkpoint-every",
    "2000",
    "--session-timeout",
    "4",
    "--shard-refresh",
    "5",
    # Prediction records would quadruple the writes to moto, whose PutRecords slows as a
    # shard fills (DESIGN.md); the models predict and score all the same.
    "--predictions",
    "none",
)


def make_readings(n: int, devices: int = 8, seed: int = 11) -> list[Reading]:
    """``n`` generated readings of ``devices`` devices in arrival order (with the generator's
    planted duplicates, out-of-order readings and glitches)."""
    per_day = expected_rows(1.0, devices, seed)
    days = max(0.01, n / per_day * 1.2 + 0.01)
    return list(itertools.islice(generate(days, seed, devices), n))


def expected_outcomes(rows: Iterable[tuple[str, float, bool]]) -> dict[str, dict[str, int]]:
    """Per device, what the processor must do with (device, ts, glitch) rows in stream order."""
    last: dict[str, float] = {}
    out: dict[str, dict[str, int]] = {}
    for device, ts, glitch in rows:
        counts = out.setdefault(device, {"learned": 0, "duplicate": 0, "late": 0, "glitch": 0})
        prev = last.get(device)
        if prev is not None and ts <= prev:
            counts["duplicate" if ts == prev else "late"] += 1
        elif glitch:
            counts["glitch"] += 1
        else:
            counts["learned"] += 1
            last[device] = ts
    return out


@dataclass
class StreamContents:
    """Every record of a stream, per shard in sequence order: (sequence, data)."""

    shards: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.shards.values())

    def last_sequence(self) -> dict[str, str]:
        return {s: recs[-1][0] for s, recs in self.shards.items() if recs}


class StreamReader:
    """Reads every shard of a stream from the start, incrementally (cheap to poll).

    moto answers GetRecords with HTTP 500 now and then under load ("OrderedDict
    mutated during iteration"): such a poll stops early with ``complete`` False
    and the next one carries on from the same iterator.
    """

    def __init__(self, settings: Settings) -> None:
        self.kinesis = boto3.client(
            "kinesis",
            config=Config(retries={"max_attempts": 10, "mode": "standard"}),
            **settings.kinesis_kwargs(),
        )
        self.complete = False
        self.stream = settings.stream
        self.iterators: dict[str, str] = {}
        self.contents = StreamContents()
        self.keys: set[tuple[str, float] | None] = set()  # (device, ts) of every record read

    def poll(self) -> int:
        try:
            self._poll()
            self.complete = True
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) < 500:
                raise
            self.complete = False
        return self.contents.count

    def _poll(self) -> None:
        for shard in self.kinesis.list_shards(StreamName=self.stream)["Shards"]:
            sid = shard["ShardId"]
            if sid not in self.iterators:
                self.iterators[sid] = self.kinesis.get_shard_iterator(
                    StreamName=self.stream, ShardId=sid, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
                self.contents.shards[sid] = []
            while True:
                resp = self.kinesis.get_records(ShardIterator=self.iterators[sid], Limit=10000)
                self.iterators[sid] = resp["NextShardIterator"]
                self.contents.shards[sid].extend(
                    (r["SequenceNumber"], r["Data"]) for r in resp["Records"]
                )
                self.keys.update(_key_of_data(r["Data"]) for r in resp["Records"])
                if not resp["Records"] or not resp.get("MillisBehindLatest"):
                    break


def read_stream(settings: Settings) -> StreamContents:
    reader = StreamReader(settings)
    wait_until(lambda: reader.poll() >= 0 and reader.complete, 60, "the whole stream read")
    return reader.contents


def dead_letters(settings: Settings) -> list[dict[str, Any]]:
    s3 = boto3.client("s3", **settings.boto_kwargs())
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=settings.bucket, Prefix="dead-letter/"
    ):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=settings.bucket, Key=obj["Key"])["Body"].read()
            out.extend(orjson.loads(line) for line in body.splitlines() if line)
    return out


def wait_until(condition: Any, timeout: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


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


class Pipeline:
    """Bridge and processors as child processes, a background replay, probes and the audit.

    ``settings`` names the test's stream, bucket and app, its mosquitto and
    moto; ``bridge_endpoint``/``processor_endpoint`` put a fault proxy in front
    of moto for one side (Kinesis reads of the processor always go to moto).
    """

    def __init__(
        self,
        settings: Settings,
        workdir: Path,
        *,
        shards: int = 2,
        bridge_endpoint: str | None = None,
        processor_endpoint: str | None = None,
    ) -> None:
        self.settings = settings
        self.workdir = Path(workdir)
        self.shards = shards
        self.bridge_endpoint = bridge_endpoint or settings.endpoint_url
        self.processor_endpoint = processor_endpoint or settings.endpoint_url
        self.bridge: ManagedProcess | None = None
        self.processors: list[ManagedProcess | None] = []
        self.replayed = 0
        self.published: list[Reading] = []
        self.probes: list[Probe] = []
        self.poison: list[bytes] = []
        self.restarts = Counter()
        self._replay: threading.Thread | None = None
        self._replay_error: BaseException | None = None
        self._monitor_stop = threading.Event()
        self._monitor: threading.Thread | None = None
        self.accepted_before_loss: list[bytes] = []  # moto restart: what the lost moto held

    # ------------------------------------------------------------- resources
    def create_resources(self) -> None:
        kinesis = boto3.client("kinesis", **self.settings.kinesis_kwargs())
        kinesis.create_stream(StreamName=self.settings.stream, ShardCount=self.shards)
        kinesis.get_waiter("stream_exists").wait(
            StreamName=self.settings.stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100}
        )
        boto3.client("s3", **self.settings.boto_kwargs()).create_bucket(Bucket=self.settings.bucket)

    # ---------------------------------------------------------------- bridge
    def start_bridge(self, *, wait_subscribed: bool = True) -> ManagedProcess:
        s = self.settings
        port = free_port()
        argv = [
            IOTCAST,
            "bridge",
            "--mqtt-url",
            s.mqtt_url,
            "--endpoint-url",
            str(self.bridge_endpoint),
            "--region",
            s.region,
            "--stream",
            s.stream,
            "--bucket",
            s.bucket,
            "--app",
            s.app,
            "--metrics-port",
            str(port),
            "--retry-seconds",
            "600",
        ]
        log = self.workdir / "bridge.log"
        before = _count_lines(log, ("MQTT: subscribed", "MQTT: resumed session"))

        def ready() -> bool:
            if not port_in_use(port):
                return False
            return (
                not wait_subscribed
                or _count_lines(log, ("MQTT: subscribed", "MQTT: resumed session")) > before
            )

        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.bridge = ManagedProcess("bridge", argv, port, log, env=env)  # close() kills it
        self.bridge.start(ready, timeout=90)
        self.restarts["bridge"] += 1
        return self.bridge

    def kill_bridge(self) -> None:
        assert self.bridge is not None
        self.bridge.kill()

    # ------------------------------------------------------------ processors
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
        s = self.settings
        port = free_port()
        prefix = [IOTCAST]
        if slow_flag is not None:
            prefix = [sys.executable, HOOKS, str(slow_flag), str(slow_ms / 1000.0)]
        argv = [
            *prefix,
            "process",
            "--endpoint-url",
            str(self.processor_endpoint),
            "--kinesis-endpoint-url",
            str(s.kinesis_endpoint_url or s.endpoint_url),
            "--region",
            s.region,
            "--stream",
            s.stream,
            "--bucket",
            s.bucket,
            "--app",
            s.app,
            "--metrics-port",
            str(port),
            *PROCESSOR_FLAGS,
            *extra,
        ]
        if index is None:
            index = len(self.processors)
            self.processors.append(None)
        env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
        log = self.workdir / f"processor-{index}.log"
        proc = self.processors[index] = ManagedProcess(
            f"processor-{index}", argv, port, log, env=env
        )
        proc.start(lambda: port_in_use(port), timeout=120)  # registered first: close() kills it
        self.restarts["processor"] += 1
        return proc

    def kill_processor(self, index: int) -> None:
        proc = self.processors[index]
        assert proc is not None
        proc.kill()

    def live_processors(self) -> list[ManagedProcess]:
        return [p for p in self.processors if p is not None and p.alive()]

    def metric(self, name: str) -> dict[str, float]:
        """``{labels: value}`` summed over the live processors."""
        total: Counter = Counter()
        for p in self.live_processors():
            try:
                total.update(metric_values(scrape(p), name))
            except OSError:
                continue
        return dict(total)

    @property
    def lease_table(self) -> str:
        return f"kinesis-checkpoints-{self.settings.app}"

    def leases(self) -> dict[str, tuple[str | None, float, str | None]]:
        """shard -> (owner ref, heartbeat ts, sequence) from the lease table ({} before it exists)."""
        ddb = boto3.client("dynamodb", **self.settings.boto_kwargs())
        try:
            items = ddb.scan(TableName=self.lease_table, ConsistentRead=True)["Items"]
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

        return wait_until(spread, timeout, f"{self.shards} shards leased by {want} processes", 0.5)

    def learned_total(self) -> float:
        return sum(self.metric("iotcast_readings_learned_total").values())

    # ---------------------------------------------------------------- replay
    def replay_in_background(self, readings: list[Reading]) -> None:
        def run() -> None:
            try:
                self.replayed += replay(self.settings.mqtt, readings, speed=0, qos=1)
            except BaseException as exc:  # noqa: BLE001 - re-raised by join_replay
                self._replay_error = exc

        self.published.extend(readings)
        self._replay = threading.Thread(target=run, name="replay", daemon=True)
        self._replay.start()

    def join_replay(self, timeout: float) -> None:
        assert self._replay is not None
        self._replay.join(timeout)
        if self._replay.is_alive():
            raise AssertionError(f"the replay did not finish within {timeout:.0f}s")
        if self._replay_error is not None:
            raise self._replay_error

    def replay_running(self) -> bool:
        return self._replay is not None and self._replay.is_alive()

    # ----------------------------------------------------------------- probes
    def probe(self) -> Probe:
        """Publish one reading of a new device now; its learning is watched in the background."""
        k = len(self.probes)
        reading = Reading(
            PROBE_TS + k, f"probe-{k:02d}", 0.005, 50.0, False, 0.007, False, 0.02, 21.5
        )
        sent = time.monotonic()
        self.replayed += replay(self.settings.mqtt, [reading], speed=0, qos=1)
        self.published.append(reading)
        probe = Probe(reading.device, sent)
        self.probes.append(probe)
        if self._monitor is None:
            self._monitor = threading.Thread(target=self._watch, name="probes", daemon=True)
            self._monitor.start()
        return probe

    def _watch(self) -> None:
        last_manifests = 0.0
        while not self._monitor_stop.is_set():
            open_probes = [p for p in self.probes if p.learned is None or p.committed is None]
            if open_probes:
                if any(p.learned is None for p in open_probes):
                    learned = self.metric("iotcast_readings_learned_total")
                    now = time.monotonic()
                    for p in open_probes:
                        if p.learned is None and learned.get(f'device="{p.device}"', 0) > 0:
                            p.learned = now
                if time.monotonic() - last_manifests >= 0.5:
                    last_manifests = time.monotonic()
                    try:
                        devices = {d for m in manifests(self.settings).values() for d in m.devices}
                    except Exception:  # noqa: BLE001 - S3 may be the fault under test; retried
                        devices = set()
                    now = time.monotonic()
                    for p in open_probes:
                        if p.committed is None and p.device in devices:
                            p.committed = now
                            if p.learned is None:
                                p.learned = now
            self._monitor_stop.wait(0.2)

    def wait_probes(self, timeout: float) -> None:
        wait_until(
            lambda: all(p.committed is not None for p in self.probes),
            timeout,
            "every probe to be learned and checkpointed",
        )

    # ----------------------------------------------------------------- poison
    def put_poison(self, data: bytes, partition_key: str) -> str:
        """Put ``data`` straight into the telemetry stream (bypassing the bridge)."""
        kinesis = boto3.client("kinesis", **self.settings.kinesis_kwargs())
        resp = kinesis.put_record(
            StreamName=self.settings.stream, Data=data, PartitionKey=partition_key
        )
        self.poison.append(data)
        return resp["SequenceNumber"]

    # ------------------------------------------------------------------ drain
    def wait_drained(self, timeout: float) -> StreamContents:
        """Every replayed reading in the stream (or accepted by a lost moto), the stream quiet
        for 1.5 s, and every shard's manifest at the shard's last sequence number."""
        want = {_key_of(r) for r in self.published}
        before = {_key_of_data(d) for d in self.accepted_before_loss}
        reader = StreamReader(self.settings)
        deadline = time.monotonic() + timeout

        def forwarded() -> bool:
            reader.poll()
            return reader.complete and want <= reader.keys | before

        wait_until(
            forwarded, max(1.0, deadline - time.monotonic()), "every reading in the stream", 1.0
        )
        quiet_since, count = time.monotonic(), reader.contents.count
        while time.monotonic() - quiet_since < 1.5:
            time.sleep(0.5)
            if reader.poll() != count or not reader.complete:
                quiet_since, count = time.monotonic(), reader.contents.count

        def committed() -> bool:
            last = reader.contents.last_sequence()
            try:
                got = {s: m.sequence for s, m in manifests(self.settings).items()}
            except Exception:  # noqa: BLE001 - S3 may still be recovering: poll again
                return False
            return all(
                got.get(s) is not None and int(got[s]) >= int(seq) for s, seq in last.items()
            )

        wait_until(
            committed, max(1.0, deadline - time.monotonic()), "manifests at the stream's end", 1.0
        )
        return reader.contents

    # ------------------------------------------------------------------ audit
    def audit(self, contents: StreamContents | None = None) -> dict[str, Any]:
        """Balance the books (module docstring); returns the figures for the results table."""
        contents = contents or read_stream(self.settings)
        sent = Counter(_key_of(r) for r in self.published)
        rows: list[tuple[str, float, bool]] = []
        in_stream: Counter = Counter()
        not_readings = 0
        for recs in contents.shards.values():
            for _, data in recs:
                try:
                    r = decode_payload(data)
                except InvalidReading:
                    not_readings += 1
                    continue
                rows.append((r.device, r.ts, is_glitch(r)))
                in_stream[(r.device, r.ts)] += 1
        before = Counter(_key_of_data(d) for d in self.accepted_before_loss)
        lost_upstream = sum(1 for k in sent if k not in in_stream and k not in before)
        expected = expected_outcomes(rows)
        samples: dict[str, int] = {}
        for m in manifests(self.settings).values():
            for device, entry in m.devices.items():
                samples[device] = max(samples.get(device, 0), entry.samples)
        learned_twice = sum(
            max(0, samples.get(d, 0) - c["learned"]) for d, c in expected.items()
        ) + sum(n for d, n in samples.items() if d not in expected)
        missed = sum(max(0, c["learned"] - samples.get(d, 0)) for d, c in expected.items())
        # The same readings in replay order, no fault: what reordering cost (late, not learned).
        reference = expected_outcomes(
            (r.device, r.ts, is_glitch(r))
            for r in self.published
            if not before or _key_of(r) in in_stream
        )
        letters = [d for d in dead_letters(self.settings) if d.get("source") == "processor"]
        lettered = Counter(base64.b64decode(d["payload_b64"]) for d in letters)
        poison_missing = sum(1 for p in self.poison if p not in lettered)
        totals = Counter()
        for c in expected.values():
            totals.update(c)
        return {
            "replayed": self.replayed,
            "distinct_replayed": len(sent),
            "records_in_stream": contents.count,
            "redelivered": sum(max(0, n - sent[k]) for k, n in in_stream.items()),
            "accepted_by_lost_moto": sum(1 for k in sent if k in before and k not in in_stream),
            "lost": lost_upstream + missed + poison_missing,
            "lost_upstream": lost_upstream,
            "missed_by_processor": missed,
            "learned_twice": learned_twice,
            "learned": sum(samples.get(d, 0) for d in expected),
            "duplicates_dropped": totals["duplicate"],
            "late": totals["late"],
            "late_by_reordering": sum(c["learned"] for c in reference.values()) - totals["learned"],
            "glitches": totals["glitch"],
            "dead_lettered": len(letters),
            "poison_missing": poison_missing,
            "dead_letter_reasons": sorted({d["reason"] for d in letters}),
            "probes": [
                {"device": p.device, "learned_s": p.learned_after, "committed_s": p.committed_after}
                for p in self.probes
            ],
            "restarts": dict(self.restarts),
        }

    # ------------------------------------------------------------------- stop
    def close(self) -> None:
        """SIGKILL what is still running (the audit is done; a graceful stop is not under test)."""
        self._monitor_stop.set()
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


def _key_of(r: Reading) -> tuple[str, float]:
    return (r.device, r.ts)


def _key_of_data(data: bytes) -> tuple[str, float] | None:
    try:
        return _key_of(decode_payload(data))
    except InvalidReading:
        return None


def _count_lines(path: Path, needles: tuple[str, ...]) -> int:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return 0
    return sum(text.count(n) for n in needles)

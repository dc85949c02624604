"""Soak: the whole pipeline at a sustained publish rate, measured from outside.

Starts on 127.0.0.1 (ports from ``iotcast.stack.free_port``): mosquitto, a
moto server (Kinesis, S3, DynamoDB), the real ``iotcast bridge`` (one: it
subscribes with one fixed client id and no shared subscription, so two
bridges would each forward every message) and ``--processors`` real
``iotcast process`` processes over a ``--shards`` stream.  Then ``--devices``
synthetic devices publish (paho, QoS 1, ``--publishers`` clients in threads)
at ``--rate`` readings/s in total for ``--duration`` seconds.

Readings: the values of the three calibrated devices of
``telemetry.generate`` (no faults), replayed by device ``k`` from profile
``k % 3`` at an offset with a small temperature shift; ``ts`` is the wall
clock at which the reading is due, so each device's readings are
``devices / rate`` seconds apart; every payload passes
``telemetry.reading.decode_payload`` (checked on the first thousand before
the run).  The publisher records, per (device, ts), when it called publish.

Measured (printed at the end; ``--json FILE`` writes them too):

* publish rate: target vs achieved (PUBACKed), per window and overall;
* throughput held end to end: readings learned per second by the
  processors (their /metrics, polled every ``--poll`` s) per ``--window`` s
  window: min / median / max while publishing;
* latency, two ways: (1) publish -> learned: each poll reads every device's
  ``iotcast_last_reading_timestamp_seconds`` (its newest learned ``ts``) and
  ``iotcast_last_reading_received_timestamp_seconds`` (when it was learned)
  and joins them with the publisher's record (a sample of one reading per
  device per poll); (2) publish -> prediction emitted: the output stream
  ``iot-predictions`` is read after the run (within ``--read-seconds``) and
  each record's ``ApproximateArrivalTimestamp`` joined on (device, ts) with
  the publisher's record (the first record of a reading counts);
* RSS and CPU of each process (bridge, each processor, mosquitto, moto, this
  bench = the publisher) from /proc every ``--sample-every`` s; the RSS slope
  over the second half of the publishing phase (MB/min);
* backlog when the publisher stops (in the broker, the bridge's buffer,
  in Kinesis, MillisBehindLatest) and the time to drain it;
* readings lost: after a graceful stop (bridge, then processors), every
  published reading must be learned (the first ``samples`` readings of its
  device in the S3 shard manifests), or still in Kinesis after its shard
  manifest's sequence number, or still in the broker (read from the bridge's
  persistent session once the bridge is stopped); what is in none of them
  is lost and counted by device.  Duplicates/late/glitches come from the
  processors' /metrics, dead letters from S3.
* CPU per reading of each process and the stream rate at which it would need
  one full core (a Python process does not go past one core).

On this 2-core machine moto is the first wall: moto 5.2's Kinesis costs
O(records in the shard) per record put and per GetRecords (see
``bench/moto_fast.py``), so a long run slows down as the shards fill, the
single-shard ``iot-predictions`` stream (4 records per reading) first.
``--moto-fix`` runs moto with that cost made O(1); the figures then show
the pipeline rather than moto's walk.

Example (a short trial)::

    .venv/bin/python bench/soak.py --duration 60 --rate 300 --devices 200

The full soak (the issue's minimum, about 20 minutes in all)::

    .venv/bin/python bench/soak.py --json /tmp/soak.json
    .venv/bin/python bench/soak.py --moto-fix --rate 300 --json /tmp/soak.json

Exit status 0 when nothing was lost, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from iotcast.settings import Settings  # noqa: E402
from iotcast.stack import HOST, ManagedProcess, free_port, start_mosquitto, start_moto  # noqa: E402
from stream.checkpoint import CheckpointStore  # noqa: E402
from telemetry.generate import Faults, generate  # noqa: E402
from telemetry.reading import Reading, decode_payload, encode, topic_for  # noqa: E402

__all__ = ["main"]

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

PROCESSOR_METRICS = (
    "iotcast_readings_learned_total",
    "iotcast_readings_duplicate_total",
    "iotcast_readings_late_total",
    "iotcast_readings_glitch_total",
    "iotcast_records_poison_total",
    "iotcast_readings_processed_total",
    "iotcast_shard_lag_seconds",
    "iotcast_shard_owned",
    "iotcast_predictions_emitted_total",
    "iotcast_devices_held",
    "iotcast_last_reading_timestamp_seconds",
    "iotcast_last_reading_received_timestamp_seconds",
)


# ------------------------------------------------------------------ metrics text
def parse_metrics(text: str) -> dict[str, dict[str, float]]:
    """``{name: {labels: value}}`` of a Prometheus exposition (comments skipped).

    >>> parse_metrics('a_total{device="x"} 3.0\\nb 1\\n# HELP c d\\n')
    {'a_total': {'device="x"': 3.0}, 'b': {'': 1.0}}
    """
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        head, _, value = line.rpartition(" ")
        name, _, labels = head.partition("{")
        out.setdefault(name, {})[labels.rstrip("}")] = float(value)
    return out


def label(labels: str, key: str) -> str:
    """The value of ``key`` in a label string ``a="x",b="y"``.

    >>> label('device="d1",model="m"', "model")
    'm'
    """
    for part in labels.split(","):
        k, _, v = part.partition("=")
        if k == key:
            return v.strip('"')
    return ""


def fetch(url: str, timeout: float = 20.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def total(metrics: dict[str, dict[str, float]], name: str) -> float:
    return sum(metrics.get(name, {}).values())


# ------------------------------------------------------------------ /proc
def proc_sample(pid: int) -> tuple[float, float] | None:
    """(RSS MiB, CPU seconds user+system) of ``pid``, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/statm") as f:
            rss_pages = int(f.read().split()[1])
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)
    return rss_pages * PAGE / 2**20, cpu


def machine_busy() -> tuple[float, float]:
    """(busy CPU seconds, total CPU seconds) of the whole machine since boot."""
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:]]
    idle = vals[3] + vals[4]
    return (sum(vals) - idle) / CLK_TCK, sum(vals) / CLK_TCK


def slope_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (t seconds, value) in value per minute.

    >>> round(slope_per_min([(0, 1.0), (60, 2.0), (120, 3.0)]), 6)
    1.0
    """
    if len(points) < 3:
        return None
    ts = [p[0] for p in points]
    vs = [p[1] for p in points]
    mt, mv = statistics.fmean(ts), statistics.fmean(vs)
    den = sum((t - mt) ** 2 for t in ts)
    if den == 0:
        return None
    return sum((t - mt) * (v - mv) for t, v in zip(ts, vs, strict=True)) / den * 60


def pct(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1, nearest rank) of ``values``.

    >>> pct([3.0, 1.0, 2.0, 4.0], 0.5), pct([], 0.5)
    (2.0, None)
    """
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


# ------------------------------------------------------------------ readings
def base_series(minutes: float = 120.0) -> list[list[tuple]]:
    """Value tuples (co, humidity, light, lpg, motion, smoke, temp) of the 3 calibrated devices."""
    series: dict[str, list[tuple]] = {}
    for r in generate(days=minutes / 1440, seed=1, faults=Faults.none()):
        series.setdefault(r.device, []).append(
            (r.co, r.humidity, r.light, r.lpg, r.motion, r.smoke, r.temp)
        )
    return [series[d] for d in sorted(series)]


@dataclass
class Device:
    """A synthetic device: an id, a base profile, an offset into it and a temperature shift."""

    index: int
    id: str
    topic: str
    profile: int
    offset: int
    shift: float


def make_devices(n: int) -> list[Device]:
    out = []
    for k in range(n):
        dev = f"02:50:{k >> 24 & 255:02x}:{k >> 16 & 255:02x}:{k >> 8 & 255:02x}:{k & 255:02x}"
        shift = round(((k * 7919) % 41 - 20) / 10, 1)  # -2.0 .. +2.0 °C, deterministic
        out.append(Device(k, dev, topic_for(dev), k % 3, (k * 104729) % 997, shift))
    return out


def reading_for(dev: Device, step: int, ts: float, series: list[list[tuple]]) -> Reading:
    values = series[dev.profile]
    co, hum, light, lpg, motion, smoke, temp = values[(dev.offset + step) % len(values)]
    temp = min(79.0, max(-39.0, round(temp + dev.shift, 1)))
    return Reading(ts, dev.id, co, hum, light, lpg, motion, smoke, temp)


# ------------------------------------------------------------------ publisher
@dataclass
class PubLog:
    """What one publisher thread sent: message i -> device index, ts (due), publish wall time."""

    device: array = field(default_factory=lambda: array("I"))
    ts: array = field(default_factory=lambda: array("d"))
    published: array = field(default_factory=lambda: array("d"))
    acked: int = 0
    errors: int = 0


class Publisher(threading.Thread):
    """One paho client publishing its devices round-robin at ``rate``/s, QoS 1."""

    def __init__(
        self,
        idx: int,
        port: int,
        devices: list[Device],
        rate: float,
        series: list[list[tuple]],
        start_mono: float,
        start_wall: float,
        stop: threading.Event,
        max_outstanding: int = 5000,
    ) -> None:
        super().__init__(name=f"publisher-{idx}", daemon=True)
        self.idx = idx
        self.devices = devices
        self.rate = rate
        self.series = series
        self.start_mono = start_mono
        self.start_wall = start_wall
        self.stop_event = stop
        self.log = PubLog()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"soak-pub-{idx}-{os.getpid()}"
        )
        # No client-side queue: paho walks its whole message table per PUBACK when messages
        # wait for an inflight slot, and message ids wrap at 65,535. Backpressure is ours (run).
        self.client.max_inflight_messages_set(0)
        self.client.max_queued_messages_set(0)
        self.max_outstanding = max_outstanding
        self.waited = 0.0  # seconds spent waiting for PUBACKs (the broker side held us back)
        self.client.on_publish = self._on_publish
        self.client.connect(HOST, port, keepalive=60)
        self.client.loop_start()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self.log.acked += 1

    def ts_of(self, i: int) -> float:
        return self.start_wall + i / self.rate

    def index_of(self, ts: float) -> int:
        return round((ts - self.start_wall) * self.rate)

    def run(self) -> None:
        log, devs, n = self.log, self.devices, len(self.devices)
        i = 0
        while not self.stop_event.is_set():
            due = self.start_mono + i / self.rate
            now = time.monotonic()
            if due > now:
                time.sleep(min(due - now, 0.05))
                continue
            # everything due now, then sleep again (catches up if it fell behind)
            while i < (now - self.start_mono) * self.rate + 1 and not self.stop_event.is_set():
                if i - log.acked >= self.max_outstanding:
                    t = time.monotonic()
                    while i - log.acked >= self.max_outstanding and not self.stop_event.is_set():
                        time.sleep(0.001)
                    self.waited += time.monotonic() - t
                    break
                dev = devs[i % n]
                ts = self.ts_of(i)
                payload = encode(reading_for(dev, i // n, ts, self.series))
                log.published.append(time.time())
                info = self.client.publish(dev.topic, payload, qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    log.errors += 1
                log.device.append(dev.index)
                log.ts.append(ts)
                i += 1

    def finish(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.log.acked < len(self.log.ts) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.client.disconnect()
        self.client.loop_stop()


# ------------------------------------------------------------------ the run
class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.workdir or tempfile.mkdtemp(prefix="soak-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, ManagedProcess] = {}
        self.samples: list[dict[str, Any]] = []  # /proc samples
        self.polls: list[dict[str, Any]] = []  # /metrics polls
        self.latency_learned: list[tuple[float, float]] = []  # (wall time, seconds)
        self.stop_sampling = threading.Event()
        self.publishers: list[Publisher] = []
        self.t_pub_start = self.t_pub_stop = self.t_stop_begin = 0.0  # wall
        self.notes: list[str] = []
        self.report: dict[str, Any] = {"args": vars(args), "workdir": str(self.work)}
        try:
            self.report["git"] = subprocess.run(
                ["git", "-C", str(ROOT), "log", "-1", "--format=%h %cd", "--date=format:%H:%M"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            self.report["git"] = None

    # ---------------------------------------------------------------- stack
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IOTCAST_"))}
        env.update(
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
            PYTHONUNBUFFERED="1",
        )
        return env

    def iotcast(self, command: str, *extra: str) -> list[str]:
        s = self.settings
        return [
            sys.executable, "-m", "iotcast.cli", command,
            "--endpoint-url", str(s.endpoint_url), "--region", s.region,
            "--mqtt-url", s.mqtt_url, "--stream", s.stream, "--bucket", s.bucket,
            "--app", s.app, "--log-level", "INFO", *extra,
        ]  # fmt: skip

    def say(self, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def start_stack(self) -> None:
        a = self.args
        self.say(f"work dir {self.work}; starting moto and mosquitto")
        if a.moto_fix:
            port = free_port()
            moto = ManagedProcess(
                "moto",
                [sys.executable, str(ROOT / "bench" / "moto_fast.py"), "-H", HOST, "-p", str(port)],
                port,
                self.work / "moto.log",
                env=self.env(),
            )
            self.procs["moto"] = moto.start(ready=_ok(f"{moto.url}/moto-api/"), timeout=60)
        else:
            self.procs["moto"] = start_moto(self.work)
        self.procs["mosquitto"] = start_mosquitto(self.work)
        self.settings = Settings.resolve(
            env={},
            toml={},
            flags={
                "endpoint_url": self.procs["moto"].url,
                "mqtt_url": f"mqtt://{HOST}:{self.procs['mosquitto'].port}",
                "stream": "iot-telemetry",
                "bucket": "iotcast-soak",
                "app": "soak",
            },
        )
        port = free_port()
        bridge = ManagedProcess(
            "bridge",
            self.iotcast(
                "bridge", "--create-stream", "--shards", str(a.shards),
                "--metrics-port", str(port), *a.bridge_arg,
            ),
            port, self.work / "bridge.log", env=self.env(), cwd=str(ROOT),
        )  # fmt: skip
        self.procs["bridge"] = bridge.start(ready=_ok(f"http://{HOST}:{port}/healthz"), timeout=90)
        for i in range(1, a.processors + 1):
            port = free_port()
            proc = ManagedProcess(
                f"processor-{i}",
                self.iotcast(
                    "process", "--create-resources", "--shards", str(a.shards),
                    "--metrics-port", str(port), *a.processor_arg,
                ),
                port, self.work / f"processor-{i}.log", env=self.env(), cwd=str(ROOT),
            )  # fmt: skip
            self.procs[proc.name] = proc.start(
                ready=_ok(f"http://{HOST}:{port}/metrics?name[]=iotcast_shard_owned"), timeout=90
            )
        self.say(
            "started: "
            + ", ".join(f"{n} pid {p.proc.pid} :{p.port}" for n, p in self.procs.items())
        )

    def processors(self) -> list[ManagedProcess]:
        return [p for n, p in self.procs.items() if n.startswith("processor-")]

    def wait_for_shards(self, timeout: float) -> None:
        """Wait until every shard is owned and each processor holds at least one."""
        deadline = time.monotonic() + timeout
        owned: list[float] = []
        while time.monotonic() < deadline:
            owned = []
            for p in self.processors():
                try:
                    m = parse_metrics(fetch(p.url + "/metrics?name[]=iotcast_shard_owned"))
                    owned.append(total(m, "iotcast_shard_owned"))
                except OSError:
                    owned.append(0)
            if sum(owned) >= self.args.shards and min(owned) >= 1:
                self.say(f"shards owned per processor: {owned}")
                return
            time.sleep(1)
        self.notes.append(f"shards not balanced before publishing: owned {owned}")
        self.say(f"warning: shards owned per processor {owned} after {timeout:.0f}s; going on")

    # ---------------------------------------------------------------- samplers
    def sample_proc(self) -> None:
        while True:
            row: dict[str, Any] = {"t": time.time(), "machine": machine_busy()}
            with open("/proc/loadavg") as f:
                row["load1"] = float(f.read().split()[0])
            for name, p in [*self.procs.items(), ("publisher (bench)", None)]:
                pid = os.getpid() if p is None else p.proc.pid
                s = proc_sample(pid)
                if s is not None:
                    row[name] = s
            self.samples.append(row)
            if self.stop_sampling.wait(self.args.sample_every):
                return

    def poll_once(self) -> dict[str, Any]:
        row: dict[str, Any] = {"t": time.time()}
        query = "&".join(f"name[]={n}" for n in PROCESSOR_METRICS)
        merged: dict[str, dict[str, float]] = {}
        per: list[dict[str, float]] = []
        for p in self.processors():
            try:
                m = parse_metrics(fetch(f"{p.url}/metrics?{query}"))
            except OSError:
                per.append({})
                continue
            per.append({n: total(m, n) for n in PROCESSOR_METRICS[:10]})
            for name, series in m.items():
                target = merged.setdefault(name, {})
                if name in ("iotcast_shard_lag_seconds", "iotcast_shard_owned"):
                    for k, v in series.items():
                        target[f"{p.name}/{k}"] = v
                elif "timestamp" in name:  # a device moved between processors: newest wins
                    for k, v in series.items():
                        target[k] = max(target.get(k, 0.0), v)
                else:
                    for k, v in series.items():
                        target[k] = target.get(k, 0.0) + v
        for n in PROCESSOR_METRICS[:10]:
            row[n] = total(merged, n)
        row["lag_max"] = max(merged.get("iotcast_shard_lag_seconds", {}).values(), default=None)
        row["per_processor"] = per
        try:
            b = parse_metrics(fetch(self.procs["bridge"].url + "/metrics"))
            row["bridge_received"] = total(b, "iotcast_bridge_messages_received_total")
            row["bridge_forwarded"] = total(b, "iotcast_bridge_readings_forwarded_total")
            row["bridge_dead_letters"] = total(b, "iotcast_bridge_dead_letters_total")
            row["bridge_buffer"] = total(b, "iotcast_bridge_buffer_records")
            row["bridge_oldest_unacked"] = total(b, "iotcast_bridge_oldest_unacked_age_seconds")
            row["bridge_retries"] = total(b, "iotcast_bridge_retries_total")
            row["bridge_put_sum"] = total(b, "iotcast_bridge_put_records_seconds_sum")
            row["bridge_put_count"] = total(b, "iotcast_bridge_put_records_seconds_count")
        except OSError:
            pass
        row["published"] = sum(len(p.log.ts) for p in self.publishers)
        row["acked"] = sum(p.log.acked for p in self.publishers)
        # publish -> learned: each device's newest learned reading, joined with the publisher's log
        last_ts = merged.get("iotcast_last_reading_timestamp_seconds", {})
        received = merged.get("iotcast_last_reading_received_timestamp_seconds", {})
        lat = []
        for labels, ts in last_ts.items():
            got = received.get(labels)
            published = self.published_at(label(labels, "device"), ts)
            if got is not None and published is not None:
                lat.append(got - published)
        row["latency_learned"] = lat
        return row

    def poll(self) -> None:
        while True:
            try:
                self.polls.append(self.poll_once())
            except (OSError, ValueError) as exc:
                self.notes.append(f"poll failed at {time.strftime('%H:%M:%S')}: {exc}")
            if self.stop_sampling.wait(self.args.poll):
                return

    # ---------------------------------------------------------------- publisher
    def published_at(self, device: str, ts: float) -> float | None:
        """Publish wall time of (device, ts), or None if this bench did not publish it."""
        k = self.device_index.get(device)
        if k is None or not self.publishers:
            return None
        pub = self.publishers[k % len(self.publishers)]
        i = pub.index_of(ts)
        if 0 <= i < len(pub.log.published) and pub.log.device[i] == k and pub.log.ts[i] == ts:
            return pub.log.published[i]
        return None

    def publish(self) -> None:
        a = self.args
        series = base_series()
        devices = make_devices(a.devices)
        self.device_index = {d.id: d.index for d in devices}
        for d in devices[:1000]:  # the data contract, on a sample, before the run
            r = reading_for(d, 0, time.time(), series)
            decode_payload(encode(r), d.topic)
        stop = threading.Event()
        n = a.publishers
        start_mono, start_wall = time.monotonic() + 0.5, time.time() + 0.5
        self.publishers = [
            Publisher(
                j,
                self.procs["mosquitto"].port,
                devices[j::n],
                a.rate / n,
                series,
                start_mono,
                start_wall,
                stop,
            )  # fmt: skip
            for j in range(n)
        ]
        self.t_pub_start = start_wall
        self.say(
            f"publishing: {a.devices} devices, {a.rate:g} readings/s in total over {n} "
            f"client(s), for {a.duration:g} s"
        )
        for p in self.publishers:
            p.start()
        next_report = time.monotonic() + 60
        end = start_mono + a.duration
        while time.monotonic() < end:
            time.sleep(min(1.0, end - time.monotonic()) if end > time.monotonic() else 0)
            if time.monotonic() >= next_report:
                next_report += 60
                last = self.polls[-1] if self.polls else {}
                self.say(
                    f"  t={time.time() - start_wall:5.0f}s published {last.get('published', 0):,.0f}"
                    f" bridge fwd {last.get('bridge_forwarded', 0):,.0f}"
                    f" learned {last.get('iotcast_readings_learned_total', 0):,.0f}"
                    f" lag {last.get('lag_max')}"
                )
        stop.set()
        for p in self.publishers:
            p.join(10)
        self.t_pub_stop = time.time()
        for p in self.publishers:
            p.finish(30)
        sent = sum(len(p.log.ts) for p in self.publishers)
        acked = sum(p.log.acked for p in self.publishers)
        waited = [round(p.waited, 1) for p in self.publishers]
        self.report["publisher_waited_for_pubacks_s"] = waited
        self.say(
            f"publisher stopped: {sent:,} published, {acked:,} acknowledged (PUBACK); seconds "
            f"spent waiting for PUBACKs (over {self.publishers[0].max_outstanding} outstanding) "
            f"per client: {waited}"
        )

    # ---------------------------------------------------------------- drain and stop
    def accounted(self, row: dict[str, Any]) -> float:
        return (
            row.get("iotcast_readings_learned_total", 0)
            + row.get("iotcast_readings_duplicate_total", 0)
            + row.get("iotcast_readings_late_total", 0)
            + row.get("iotcast_readings_glitch_total", 0)
            + row.get("bridge_dead_letters", 0)
        )

    def drain(self) -> dict[str, Any]:
        published = sum(p.log.acked for p in self.publishers)
        at_stop = self.poll_once()
        backlog = {
            "published": published,
            "in_broker": max(0, published - at_stop.get("bridge_received", 0)),
            "bridge_buffer": at_stop.get("bridge_buffer"),
            "in_kinesis": at_stop.get("bridge_forwarded", 0)
            - at_stop.get("iotcast_readings_processed_total", 0),
            "millis_behind_latest_max": None
            if at_stop.get("lag_max") is None
            else at_stop["lag_max"] * 1000,
            "not_yet_learned": published - self.accounted(at_stop),
        }
        self.say(f"backlog at publisher stop: {backlog}")
        t0 = time.monotonic()
        last_progress, last_value = t0, self.accounted(at_stop)
        drained_after = None
        while time.monotonic() - t0 < self.args.drain_timeout:
            row = self.polls[-1] if self.polls else at_stop
            value = self.accounted(row)
            if value >= published:
                drained_after = row["t"] - self.t_pub_stop
                break
            if value > last_value:
                last_progress, last_value = time.monotonic(), value
            elif time.monotonic() - last_progress > self.args.stall:
                self.notes.append(f"drain stalled: no progress for {self.args.stall:.0f}s")
                break
            time.sleep(1)
        left = published - self.accounted(self.polls[-1] if self.polls else at_stop)
        self.say(
            "drained in "
            + (f"{drained_after:.1f} s" if drained_after is not None else "NOT drained")
            + f" after the publisher stopped; not yet accounted for: {left:,.0f}"
        )
        return {"at_stop": backlog, "drain_seconds": drained_after, "left_unaccounted": left}

    def stop_pipeline(self) -> dict[str, Any]:
        """SIGTERM the bridge (it flushes), then every processor at once (final checkpoints)."""
        codes: dict[str, Any] = {}
        self.t_stop_begin = time.time()
        final = self.poll_once()  # the bridge's last figures
        self.say("stopping the bridge (SIGTERM), then the processors (final checkpoints)")
        codes["bridge"] = self.procs["bridge"].stop(grace=60)
        after = self.poll_once()  # the processors' last figures, before they go
        final.update({k: v for k, v in after.items() if not k.startswith("bridge_")})
        t0, grace = time.monotonic(), self.args.stop_grace
        for p in self.processors():
            p.proc.send_signal(signal.SIGTERM)  # once: a second one could kill it mid-exit
        for p in self.processors():
            try:
                codes[p.name] = p.proc.wait(max(1.0, grace - (time.monotonic() - t0)))
            except subprocess.TimeoutExpired:
                self.notes.append(f"{p.name} did not stop within {grace:.0f} s of SIGTERM: killed")
                p.kill()
                codes[p.name] = p.proc.returncode
        self.report["processor_stop_seconds"] = round(time.monotonic() - t0, 1)
        self.say(f"stopped in {time.monotonic() - t0:.1f} s: exit codes {codes}")
        return {"exit_codes": codes, "final_poll": final}

    # ---------------------------------------------------------------- accounting
    def drain_broker(self) -> dict[str, set[float]]:
        """Take what the broker still holds for the (stopped) bridge's session: ts by device.

        Connects as the bridge's client id with its session kept, so the broker hands over
        the queued messages; reading them here ends the run's queue (the run is over).
        """
        got: dict[str, set[float]] = {}
        last = [time.monotonic()]

        def on_message(client, userdata, msg) -> None:
            d = orjson.loads(msg.payload)
            got.setdefault(d["device_id"], set()).add(d["ts"])
            last[0] = time.monotonic()

        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"iotcast-bridge-{self.settings.app}",
            protocol=mqtt.MQTTv5,
        )
        c.on_message = on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        c.connect(HOST, self.procs["mosquitto"].port, clean_start=False, properties=props)
        c.loop_start()
        deadline = time.monotonic() + 300
        while time.monotonic() - last[0] < 5 and time.monotonic() < deadline:
            time.sleep(0.5)
        c.disconnect()
        c.loop_stop()
        return got

    def accounting(self, final: dict[str, Any]) -> dict[str, Any]:
        """Every published reading: learned (S3 manifests), dropped as duplicate/late/glitch,
        dead-lettered, still in Kinesis after the manifests, still in the broker, or lost."""
        s = self.settings
        s3 = boto3.client("s3", **s.boto_kwargs())
        kinesis = boto3.client("kinesis", **s.kinesis_kwargs())
        store = CheckpointStore(s3, s.bucket, s.app, s.hmac_key)
        samples: dict[str, int] = {}
        seqs: dict[str, str | None] = {}
        prefix = f"checkpoints/{s.app}/"
        for obj in _list(s3, s.bucket, prefix):
            shard = obj["Key"][len(prefix) :].split("/")[0]
            manifest = store.load_shard_manifest(shard)
            if manifest is None:
                continue
            seqs[shard] = manifest.sequence
            for device, entry in manifest.devices.items():
                samples[device] = max(samples.get(device, 0), entry.samples)
        # records still in Kinesis after each manifest's sequence number, ts by device
        after: dict[str, set[float]] = {}
        in_kinesis = 0
        for shard in kinesis.list_shards(StreamName=s.stream)["Shards"]:
            sid = shard["ShardId"]
            kw: dict[str, Any] = {"ShardIteratorType": "TRIM_HORIZON"}
            if seqs.get(sid):
                kw = {
                    "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                    "StartingSequenceNumber": seqs[sid],
                }
            it = kinesis.get_shard_iterator(StreamName=s.stream, ShardId=sid, **kw)["ShardIterator"]
            while it:
                resp = kinesis.get_records(ShardIterator=it, Limit=10_000)
                in_kinesis += len(resp["Records"])
                for rec in resp["Records"]:
                    d = orjson.loads(rec["Data"])
                    after.setdefault(d["device_id"], set()).add(d["ts"])
                if not resp["Records"] and resp.get("MillisBehindLatest", 0) == 0:
                    break
                it = resp.get("NextShardIterator")
        broker = self.drain_broker()
        in_broker = sum(len(v) for v in broker.values())
        dead = 0
        for obj in _list(s3, s.bucket, "dead-letter/"):
            body = s3.get_object(Bucket=s.bucket, Key=obj["Key"])["Body"].read()
            dead += body.count(b"\n")
        acked = sum(p.log.acked for p in self.publishers)
        sent = sum(len(p.log.ts) for p in self.publishers)
        ids = {v: k for k, v in self.device_index.items()}
        published: dict[str, list[float]] = {}
        for pub in self.publishers:
            for k, ts in zip(pub.log.device, pub.log.ts, strict=True):
                published.setdefault(ids[k], []).append(ts)
        # A device's readings are learned in ts order (older ones are dropped as late): the
        # first ``samples`` of its published readings are the learned ones. The rest must be
        # in Kinesis after the manifest or in the broker; anything else is missing.
        missing: dict[str, int] = {}
        doubled = 0
        for device, tss in published.items():
            tss.sort()
            n = samples.get(device, 0)
            rest = tss[n:]
            k, b = after.get(device, set()), broker.get(device, set())
            gone = [t for t in rest if t not in k and t not in b]
            doubled += len(k & b)
            if gone:
                missing[device] = len(gone)
        over = {d: n - len(published.get(d, [])) for d, n in samples.items()
                if n > len(published.get(d, []))}  # fmt: skip
        learned = sum(samples.values())
        dup = final.get("iotcast_readings_duplicate_total", 0)
        late = final.get("iotcast_readings_late_total", 0)
        glitch = final.get("iotcast_readings_glitch_total", 0)
        return {
            "published_sent": sent,
            "published_acked": acked,
            "learned_in_manifests": learned,
            "learned_metric": final.get("iotcast_readings_learned_total"),
            "duplicates": dup,
            "late": late,
            "glitches": glitch,
            "bridge_forwarded": final.get("bridge_forwarded", 0),
            "dead_lettered_bridge_metric": final.get("bridge_dead_letters", 0),
            "dead_letter_lines_s3": dead,
            "still_in_kinesis_after_manifests": in_kinesis,
            "still_in_broker": in_broker,
            "in_kinesis_and_broker_both": doubled,
            "lost": sum(missing.values()),
            "devices_with_missing": len(missing),
            "missing_examples": dict(list(missing.items())[:5]),
            "devices_learned_more_than_published": over,
        }

    # ---------------------------------------------------------------- predictions
    def read_predictions(self) -> dict[str, Any]:
        s = self.settings
        kinesis = boto3.client("kinesis", **s.kinesis_kwargs())
        first: dict[tuple[str, float], float] = {}
        records = 0
        started = time.monotonic()
        complete = True
        for shard in kinesis.list_shards(StreamName=s.predictions_stream)["Shards"]:
            it = kinesis.get_shard_iterator(
                StreamName=s.predictions_stream,
                ShardId=shard["ShardId"],
                ShardIteratorType="TRIM_HORIZON",
            )["ShardIterator"]
            while it:
                if time.monotonic() - started > self.args.read_seconds:
                    complete = False
                    break
                resp = kinesis.get_records(ShardIterator=it, Limit=10_000)
                for rec in resp["Records"]:
                    d = orjson.loads(rec["Data"])
                    key = (d["device"], d["ts"])
                    arrived = rec["ApproximateArrivalTimestamp"].timestamp()
                    if key not in first or arrived < first[key]:
                        first[key] = arrived
                records += len(resp["Records"])
                if not resp["Records"] and resp.get("MillisBehindLatest", 0) == 0:
                    break
                it = resp.get("NextShardIterator")
        lat: list[tuple[float, float]] = []
        unmatched = 0
        for (device, ts), arrived in first.items():
            published = self.published_at(device, ts)
            if published is None:
                unmatched += 1
            else:
                lat.append((published, arrived - published))
        lat.sort()
        return {
            "records_read": records,
            "readings_with_a_prediction": len(first),
            "complete": complete,
            "read_seconds": round(time.monotonic() - started, 1),
            "unmatched": unmatched,
            "latencies": lat,
        }

    # ---------------------------------------------------------------- main
    def run(self) -> dict[str, Any]:
        a = self.args
        started = time.time()
        threads = []
        try:
            self.start_stack()
            self.wait_for_shards(a.balance_timeout)
            self.device_index: dict[str, int] = {}
            for target in (self.sample_proc, self.poll):
                t = threading.Thread(target=target, daemon=True)
                t.start()
                threads.append(t)
            self.publish()
            drain = self.drain()
            stopped = self.stop_pipeline()
            self.stop_sampling.set()
            for t in threads:
                t.join(30)
            self.say("reading the S3 manifests, dead letters and what is left in Kinesis")
            lost = self.accounting(stopped["final_poll"])
            self.say(f"reading the predictions stream (up to {a.read_seconds:.0f} s)")
            preds = self.read_predictions()
        finally:
            self.stop_sampling.set()
            for p in reversed(list(self.procs.values())):
                p.stop(grace=30)
        self.report.update(
            elapsed_seconds=round(time.time() - started, 1),
            drain=drain,
            exit_codes=stopped["exit_codes"],
            accounting=lost,
        )
        summarize(self, preds)
        return self.report


def _ok(url: str):
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    return check


def _list(s3: Any, bucket: str, prefix: str):
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ figures
def windows(soak: Soak, width: float) -> list[dict[str, Any]]:
    """Per ``width``-second window of the publishing phase: published, forwarded, learned per second."""
    polls = [p for p in soak.polls if "bridge_forwarded" in p]
    out = []
    t = soak.t_pub_start
    while t + width <= soak.t_pub_stop + 1e-6:
        inside = [
            p for p in polls if t - soak.args.poll / 2 <= p["t"] <= t + width + soak.args.poll
        ]
        a = min(inside, key=lambda p: abs(p["t"] - t), default=None)
        b = min(inside, key=lambda p: abs(p["t"] - (t + width)), default=None)
        if a is not None and b is not None and b["t"] - a["t"] > width / 2:
            dt = b["t"] - a["t"]
            lat = [x for p in polls if a["t"] < p["t"] <= b["t"] for x in p["latency_learned"]]
            out.append(
                {
                    "from_s": round(a["t"] - soak.t_pub_start, 1),
                    "to_s": round(b["t"] - soak.t_pub_start, 1),
                    "published_per_s": (b["acked"] - a["acked"]) / dt,
                    "forwarded_per_s": (b["bridge_forwarded"] - a["bridge_forwarded"]) / dt,
                    "learned_per_s": (
                        b["iotcast_readings_learned_total"] - a["iotcast_readings_learned_total"]
                    )
                    / dt,
                    "lag_max_s": b.get("lag_max"),
                    "learned_latency_p50_s": _round(pct(lat, 0.5), 2),
                    "learned_latency_p99_s": _round(pct(lat, 0.99), 2),
                    "broker_backlog": max(0, b["acked"] - b.get("bridge_received", 0)),
                    "kinesis_backlog": b["bridge_forwarded"]
                    - b.get("iotcast_readings_processed_total", 0),
                }
            )
        t += width
    return out


def process_figures(soak: Soak, readings: float) -> dict[str, Any]:
    """RSS and CPU figures per process; ``readings`` = readings learned from publish start to stop."""
    out: dict[str, Any] = {}
    names = (
        [n for n in soak.samples[0] if n not in ("t", "machine", "load1")] if soak.samples else []
    )
    pub = [s for s in soak.samples if soak.t_pub_start <= s["t"] <= soak.t_pub_stop + 1]
    half = soak.t_pub_start + (soak.t_pub_stop - soak.t_pub_start) / 2
    for name in names:
        series = [(s["t"], *s[name]) for s in soak.samples if name in s]
        during = [(t, r, c) for t, r, c in series if soak.t_pub_start <= t <= soak.t_pub_stop + 1]
        if not series:
            continue
        cores = None
        if len(during) >= 2:
            cores = (during[-1][2] - during[0][2]) / (during[-1][0] - during[0][0])
        # CPU per reading: from publish start to the graceful stop, over the readings learned
        work = [(t, c) for t, _, c in series if soak.t_pub_start - 1 <= t <= soak.t_stop_begin]
        ms_per_reading = None
        if len(work) >= 2 and readings:
            ms_per_reading = (work[-1][1] - work[0][1]) / readings * 1000
        out[name] = {
            "cpu_ms_per_reading": _round(ms_per_reading, 3),
            "one_core_ceiling_per_s": _round(1000 / ms_per_reading if ms_per_reading else None, 0),
            "rss_start_mib": round(series[0][1], 1),
            "rss_pub_start_mib": round(during[0][1], 1) if during else None,
            "rss_pub_end_mib": round(during[-1][1], 1) if during else None,
            "rss_max_mib": round(max(r for _, r, _ in series), 1),
            "rss_slope_second_half_mib_per_min": _round(
                slope_per_min([(t, r) for t, r, _ in during if t >= half]), 2
            ),
            "cpu_cores_while_publishing": _round(cores, 2),
            "cpu_seconds_total": round(series[-1][2], 1),
            "rss_series": [(round(t - soak.t_pub_start), round(r, 1)) for t, r, _ in series],
            "cpu_series": [(round(t - soak.t_pub_start), round(c, 1)) for t, _, c in series],
        }
    if len(pub) >= 2:
        busy = pub[-1]["machine"][0] - pub[0]["machine"][0]
        tot = pub[-1]["machine"][1] - pub[0]["machine"][1]
        out["_machine"] = {
            "busy_cores_while_publishing": round(busy / (tot / os.cpu_count()), 2) if tot else None,
            "cores": os.cpu_count(),
            "load1_median": statistics.median(s["load1"] for s in pub),
        }
    return out


def _round(v: float | None, n: int) -> float | None:
    return None if v is None else round(v, n)


def _fmt(v: Any, spec: str = ",.0f") -> str:
    return "-" if v is None else format(v, spec)


def summarize(soak: Soak, preds: dict[str, Any]) -> None:
    a, r = soak.args, soak.report
    dur = soak.t_pub_stop - soak.t_pub_start
    acked = r["accounting"]["published_acked"]
    win = windows(soak, a.window)
    learned_rates = [w["learned_per_s"] for w in win]
    steady = [w["learned_per_s"] for w in win if w["from_s"] >= a.warmup]
    pub_rates = [w["published_per_s"] for w in win]
    lat_l = [
        x for p in soak.polls if soak.t_pub_start + a.warmup <= p["t"] <= soak.t_pub_stop
        for x in p.get("latency_learned", [])
    ]  # fmt: skip
    lat_l_all = [x for p in soak.polls for x in p.get("latency_learned", [])]
    lat_p = [x for _, x in preds["latencies"]]
    lat_p_steady = [x for t, x in preds["latencies"] if t >= soak.t_pub_start + a.warmup]
    learned_by_stop = [
        p["iotcast_readings_learned_total"] for p in soak.polls if p["t"] <= soak.t_stop_begin
    ]
    procs = process_figures(soak, max(learned_by_stop, default=0))
    learned_total = r["accounting"]["learned_in_manifests"]
    r.update(
        publish={
            "target_per_s": a.rate,
            "achieved_per_s": round(acked / dur, 1) if dur else None,
            "seconds": round(dur, 1),
            "window_min_per_s": _round(min(pub_rates, default=None), 1),
            "window_median_per_s": _round(statistics.median(pub_rates) if pub_rates else None, 1),
        },
        throughput={
            "window_seconds": a.window,
            "learned_per_s_min": _round(min(steady or learned_rates, default=None), 1),
            "learned_per_s_median": _round(
                statistics.median(steady or learned_rates) if learned_rates else None, 1
            ),
            "learned_per_s_max": _round(max(learned_rates, default=None), 1),
            "learned_during_publishing_per_s": None,
            "learned_overall_per_s": None,
            "windows": win,
        },
        latency={
            "publish_to_learned": {
                "samples": len(lat_l),
                "p50_s": _round(pct(lat_l, 0.5), 3),
                "p99_s": _round(pct(lat_l, 0.99), 3),
                "max_s": _round(max(lat_l, default=None), 3),
                "p50_all_s": _round(pct(lat_l_all, 0.5), 3),
                "p99_all_s": _round(pct(lat_l_all, 0.99), 3),
                "how": "every poll: each device's newest learned reading (gauges), joined with "
                "the publisher's log; after warm-up, while publishing",
            },
            "publish_to_prediction_emitted": {
                "readings": len(lat_p),
                "p50_s": _round(pct(lat_p_steady or lat_p, 0.5), 3),
                "p99_s": _round(pct(lat_p_steady or lat_p, 0.99), 3),
                "max_s": _round(max(lat_p, default=None), 3),
                "p50_all_s": _round(pct(lat_p, 0.5), 3),
                "p99_all_s": _round(pct(lat_p, 0.99), 3),
                "how": "iot-predictions read after the run; first record per (device, ts); "
                "ApproximateArrivalTimestamp - publish time",
                **{k: v for k, v in preds.items() if k != "latencies"},
            },
        },
        processes=procs,
        notes=soak.notes,
    )
    first_poll = next((p for p in soak.polls if p["t"] >= soak.t_pub_start), None)
    stop_poll = min(soak.polls, key=lambda p: abs(p["t"] - soak.t_pub_stop), default=None)
    if first_poll and stop_poll and stop_poll["t"] > first_poll["t"]:
        r["throughput"]["learned_during_publishing_per_s"] = round(
            (
                stop_poll["iotcast_readings_learned_total"]
                - first_poll["iotcast_readings_learned_total"]
            )
            / (stop_poll["t"] - first_poll["t"]),
            1,
        )
    end = r["drain"]["drain_seconds"]
    if end is not None:
        r["throughput"]["learned_overall_per_s"] = round(learned_total / (dur + end), 1)
    # prediction latency over time: p50 per window
    lat_windows = []
    for w in win:
        t0, t1 = soak.t_pub_start + w["from_s"], soak.t_pub_start + w["to_s"]
        xs = [x for t, x in preds["latencies"] if t0 <= t < t1]
        lat_windows.append((w["from_s"], _round(pct(xs, 0.5), 2), _round(pct(xs, 0.99), 2)))
    r["latency"]["publish_to_prediction_emitted"]["p50_p99_per_window"] = lat_windows
    r["bottleneck"] = bottleneck(soak, win, procs)
    print_report(soak)


def bottleneck(soak: Soak, win: list[dict[str, Any]], procs: dict[str, Any]) -> list[str]:
    """Where the readings piled up, and which process was busy: evidence, in words."""
    a = soak.args
    lines = []
    pub = soak.report["publish"]
    if pub["achieved_per_s"] and pub["achieved_per_s"] < 0.95 * a.rate:
        lines.append(
            f"the publisher itself held only {pub['achieved_per_s']:,.0f}/s of {a.rate:,.0f}/s "
            f"(bench CPU {procs.get('publisher (bench)', {}).get('cpu_cores_while_publishing')} cores)"
        )
    if win:
        last = win[-1]
        lines.append(
            f"at the end of publishing: {last['broker_backlog']:,.0f} readings waiting in the broker "
            f"(bridge behind), {last['kinesis_backlog']:,.0f} in Kinesis (processors behind), "
            f"MillisBehindLatest max {_fmt(last['lag_max_s'], '.1f')} s"
        )
        fwd = statistics.median(w["forwarded_per_s"] for w in win)
        learned = statistics.median(w["learned_per_s"] for w in win)
        lines.append(
            f"median per window: published {statistics.median(w['published_per_s'] for w in win):,.0f}/s, "
            f"bridge forwarded {fwd:,.0f}/s, processors learned {learned:,.0f}/s"
        )
    busy = {
        n: f["cpu_cores_while_publishing"]
        for n, f in procs.items()
        if not n.startswith("_") and f.get("cpu_cores_while_publishing") is not None
    }
    if busy:
        lines.append(
            "CPU cores while publishing: "
            + ", ".join(f"{n} {v:.2f}" for n, v in sorted(busy.items(), key=lambda x: -x[1]))
        )
        hot = [n for n, v in busy.items() if v >= 0.85]
        if hot:
            lines.append(
                "near one full core (a Python process is GIL-bound at ~1.0): " + ", ".join(hot)
            )
    m = procs.get("_machine")
    if m:
        ours = sum(busy.values())
        lines.append(
            f"machine: {m['busy_cores_while_publishing']} of {m['cores']} cores busy "
            f"(everything, other engineers included), load1 median {m['load1_median']}; "
            f"this soak's processes used {ours:.2f} cores of it"
        )
        if (
            m["busy_cores_while_publishing"]
            and m["busy_cores_while_publishing"] >= 0.95 * m["cores"]
        ):
            lines.append(
                "the machine was saturated: every process above got less CPU than it wanted, so "
                "rates are CPU-bound (compare each process's cores with its share)"
            )
    polls = [p for p in soak.polls if p.get("bridge_put_count")]
    if len(polls) >= 2:
        q = len(polls) // 4 or 1
        for part, sel in (("first quarter", polls[:q]), ("last quarter", polls[-q:])):
            if len(sel) >= 2:
                n = sel[-1]["bridge_put_count"] - sel[0]["bridge_put_count"]
                s = sel[-1]["bridge_put_sum"] - sel[0]["bridge_put_sum"]
                if n:
                    lines.append(f"bridge PutRecords mean latency, {part}: {s / n * 1000:.0f} ms")
    return lines


def print_report(soak: Soak) -> None:
    r = soak.report
    a = soak.args
    p, th, acc = r["publish"], r["throughput"], r["accounting"]
    ll, lp = r["latency"]["publish_to_learned"], r["latency"]["publish_to_prediction_emitted"]
    print("\n================ soak: figures ================")
    print(
        f"setup: {a.devices:,} devices, {a.shards} shards, 1 bridge, {a.processors} processors, "
        f"{a.publishers} publisher clients; moto "
        f"{'with O(1) shard puts/gets (bench/moto_fast.py)' if a.moto_fix else 'as released (moto_server)'}"
        f"; git {r.get('git')}; work dir {r['workdir']}"
    )
    print(
        f"publish rate: target {a.rate:,.0f}/s, achieved {_fmt(p['achieved_per_s'], ',.1f')}/s "
        f"over {p['seconds']} s (window min {_fmt(p['window_min_per_s'], ',.1f')}, "
        f"median {_fmt(p['window_median_per_s'], ',.1f')})"
    )
    print(
        f"publisher: seconds spent waiting for PUBACKs per client (more than "
        f"{soak.publishers[0].max_outstanding if soak.publishers else '-'} outstanding): "
        f"{r.get('publisher_waited_for_pubacks_s')}"
    )
    print(
        f"throughput held (readings learned/s per {a.window:g} s window, after {a.warmup:g} s "
        f"warm-up): min {_fmt(th['learned_per_s_min'], ',.1f')}, median "
        f"{_fmt(th['learned_per_s_median'], ',.1f')}, max {_fmt(th['learned_per_s_max'], ',.1f')}; "
        f"while publishing {_fmt(th['learned_during_publishing_per_s'], ',.1f')}/s; "
        f"publish start to drained {_fmt(th['learned_overall_per_s'], ',.1f')}/s"
    )
    print(
        "  window (s)     published/s forwarded/s  learned/s broker backlog kinesis backlog"
        "  lag s  publish->learned p50/p99 s"
    )
    for w in th["windows"]:
        print(
            f"  {w['from_s']:6.0f}-{w['to_s']:<6.0f} {w['published_per_s']:11,.0f} "
            f"{w['forwarded_per_s']:11,.0f} {w['learned_per_s']:10,.0f} {w['broker_backlog']:14,.0f} "
            f"{w['kinesis_backlog']:15,.0f} {_fmt(w['lag_max_s'], '6.1f')}  "
            f"{_fmt(w['learned_latency_p50_s'], '.2f')}/{_fmt(w['learned_latency_p99_s'], '.2f')}"
        )
    print(
        f"latency publish -> learned ({ll['samples']:,} samples, one per device per poll, after "
        f"warm-up): p50 {_fmt(ll['p50_s'], '.3f')} s, p99 {_fmt(ll['p99_s'], '.3f')} s, "
        f"max {_fmt(ll['max_s'], '.3f')} s (whole run: p50 {_fmt(ll['p50_all_s'], '.3f')}, "
        f"p99 {_fmt(ll['p99_all_s'], '.3f')})"
    )
    print(
        f"latency publish -> prediction emitted ({lp['readings']:,} readings joined of "
        f"{lp['readings_with_a_prediction']:,} with a prediction, {lp['records_read']:,} records "
        f"read in {lp['read_seconds']} s, {'all' if lp['complete'] else 'NOT all: time budget'}; "
        f"unmatched {lp['unmatched']}): p50 {_fmt(lp['p50_s'], '.3f')} s, "
        f"p99 {_fmt(lp['p99_s'], '.3f')} s, max {_fmt(lp['max_s'], '.3f')} s (whole run: "
        f"p50 {_fmt(lp['p50_all_s'], '.3f')}, p99 {_fmt(lp['p99_all_s'], '.3f')})"
    )
    print(
        "  per window (from s, p50, p99): "
        + ", ".join(
            f"{f:.0f}: {_fmt(m, '.2f')}/{_fmt(q, '.2f')}" for f, m, q in lp["p50_p99_per_window"]
        )
    )
    print(
        "RSS MiB (first sample / publish start / publish end / max; slope of the 2nd half MiB/min) and CPU:"
    )
    for name, f in r["processes"].items():
        if name.startswith("_"):
            continue
        print(
            f"  {name:18s} {f['rss_start_mib']:8.1f} {_fmt(f['rss_pub_start_mib'], '8.1f')} "
            f"{_fmt(f['rss_pub_end_mib'], '8.1f')} {f['rss_max_mib']:8.1f}  slope "
            f"{_fmt(f['rss_slope_second_half_mib_per_min'], '+.2f')}  CPU "
            f"{_fmt(f['cpu_cores_while_publishing'], '.2f')} cores while publishing, "
            f"{f['cpu_seconds_total']:.0f} s in all, {_fmt(f['cpu_ms_per_reading'], '.2f')} ms "
            f"per reading (one full core at {_fmt(f['one_core_ceiling_per_s'], ',.0f')} readings/s)"
        )
    pipeline = [
        f["cpu_ms_per_reading"]
        for n, f in r["processes"].items()
        if not n.startswith(("_", "publisher")) and f.get("cpu_ms_per_reading")
    ]
    if pipeline:
        ms = sum(pipeline)
        print(
            f"  the pipeline (all but the publisher) spent {ms:.2f} ms CPU per reading at this rate "
            "(fixed per-second costs such as polling included): on "
            f"{os.cpu_count()} dedicated cores at most ~{os.cpu_count() * 1000 / ms:,.0f} readings/s, "
            "and no single-process part beyond its one-core figure above"
        )
    d = r["drain"]
    print(f"backlog when the publisher stopped: {d['at_stop']}")
    print(
        "time to drain after the publisher stopped: "
        + (f"{d['drain_seconds']:.1f} s" if d["drain_seconds"] is not None else
           f"NOT drained within {a.drain_timeout:.0f} s ({d['left_unaccounted']:,.0f} left)")
    )  # fmt: skip
    print(
        f"readings: published {acc['published_acked']:,} (PUBACKed; {acc['published_sent']:,} sent), "
        f"bridge forwarded {acc['bridge_forwarded']:,.0f}, learned {acc['learned_in_manifests']:,} "
        f"(S3 manifests; /metrics {_fmt(acc['learned_metric'])}), duplicates {acc['duplicates']:,.0f}, "
        f"late {acc['late']:,.0f}, glitches {acc['glitches']:,.0f}, dead-lettered "
        f"{acc['dead_lettered_bridge_metric']:,.0f} (S3 lines {acc['dead_letter_lines_s3']}), "
        f"still in Kinesis after the manifests {acc['still_in_kinesis_after_manifests']:,}, "
        f"still in the broker {acc['still_in_broker']:,} (read from the bridge's session after "
        f"the run; {acc['in_kinesis_and_broker_both']:,} of them also in Kinesis: a bridge stopped "
        "between PutRecords and PUBACK, duplicates the processors drop)"
    )
    print(
        f"LOST: {acc['lost']:,} (published readings neither learned (the first S3-manifest "
        "samples of their device), nor in Kinesis after the manifests, nor in the broker); "
        f"devices with missing readings: {acc['devices_with_missing']}"
        f"{' e.g. ' + str(acc['missing_examples']) if acc['missing_examples'] else ''}; "
        f"learned more than published: {acc['devices_learned_more_than_published'] or 'none'}"
    )
    print(f"exit codes: {r['exit_codes']}")
    print("bottleneck evidence:")
    for line in r["bottleneck"]:
        print(f"  - {line}")
    for note in r["notes"]:
        print(f"note: {note}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )  # fmt: skip
    ap.add_argument("--devices", type=int, default=1000, help="devices (default 1000)")
    ap.add_argument("--rate", type=float, default=2000, help="readings/s in total (default 2000)")
    ap.add_argument(
        "--duration", type=float, default=600, help="seconds of publishing (default 600)"
    )
    ap.add_argument("--shards", type=int, default=4, help="telemetry stream shards (default 4)")
    ap.add_argument(
        "--processors", type=int, default=2, help="iotcast process processes (default 2)"
    )
    ap.add_argument(
        "--publishers", type=int, default=2, help="paho clients, one thread each (default 2)"
    )
    ap.add_argument(
        "--poll", type=float, default=5, help="seconds between /metrics polls (default 5)"
    )
    ap.add_argument("--window", type=float, default=30, help="throughput window, s (default 30)")
    ap.add_argument(
        "--warmup", type=float, default=60, help="seconds left out of min/p99 figures (default 60)"
    )
    ap.add_argument(
        "--sample-every", type=float, default=15, help="/proc sampling period, s (default 15)"
    )
    ap.add_argument(
        "--drain-timeout",
        type=float,
        default=300,
        help="wait at most this long for the backlog (default 300)",
    )
    ap.add_argument(
        "--stall",
        type=float,
        default=90,
        help="stop waiting after this long without progress (default 90)",
    )
    ap.add_argument(
        "--read-seconds",
        type=float,
        default=240,
        help="time budget to read iot-predictions (default 240)",
    )
    ap.add_argument(
        "--balance-timeout",
        type=float,
        default=90,
        help="wait for every processor to own a shard (default 90)",
    )
    ap.add_argument(
        "--bridge-arg",
        action="append",
        default=[],
        help="extra flag for iotcast bridge (repeatable, e.g. --bridge-arg=--lanes=4)",
    )
    ap.add_argument(
        "--processor-arg",
        action="append",
        default=[],
        help="extra flag for iotcast process (repeatable)",
    )
    ap.add_argument(
        "--stop-grace",
        type=float,
        default=180,
        help="seconds a processor has after SIGTERM for its final checkpoint (default 180)",
    )
    ap.add_argument(
        "--moto-fix",
        action="store_true",
        help="run moto through bench/moto_fast.py (its Kinesis shard O(1) per record instead of "
        "O(records in the shard)); default: the plain moto_server",
    )
    ap.add_argument("--workdir", help="where logs go (default a new temporary directory, kept)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    soak = Soak(args)
    report = soak.run()
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
        print(f"figures written to {args.json}")
    acc = report["accounting"]
    return 0 if acc["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

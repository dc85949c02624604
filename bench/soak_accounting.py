"""The soak's accounting: the pipeline watched from outside, then every reading found.

While it runs, :class:`Watch` samples RSS and CPU of every process from /proc
(every ``--sample-every`` s) and polls the processors' and the bridge's
/metrics (every ``--poll`` s): the fleet's counters (by shard), lag, and each
watched device's newest learned reading joined with the publisher's log
(publish -> learned latency; only the watched devices have per-device series).

After the publisher stops, :func:`drain` waits for the backlog; after the
graceful stop, :func:`account` finds every published reading: learned (the
first ``samples`` readings of its device in the S3 shard manifests), or still
in Kinesis after its shard manifest's sequence number, or still in the broker
(read from each bridge's persistent session once the bridges are stopped); what
is in none of them is lost and counted by device (the per-device books come
from the manifests, Kinesis and the broker, never from /metrics).
:func:`read_predictions` reads the output stream (packed records: many output
records a Kinesis record), skips its event records (``"kind": "event"``), and joins
each prediction record (one per reading, every horizon) with the publish time of its
reading (publish -> prediction emitted). Telemetry records are read as the processor
reads them (:func:`readings_of`).

>>> parse_metrics('a_total{device="x"} 3.0\\nb 1\\n# HELP c d\\n')
{'a_total': {'device="x"': 3.0}, 'b': {'': 1.0}}
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.soak_load import Load
from bench.soak_stack import SoakStack
from iotcast.settings import Settings
from iotcast.stack import HOST
from stream.checkpoint import CheckpointStore
from stream.records import decode_records
from telemetry.envelope import EnvelopeError, unpack
from telemetry.reading import Reading, decode_message

__all__ = ["Watch", "account", "drain", "is_prediction", "read_predictions", "readings_of"]

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# The fleet's figures (summed over their shard label), then the watched devices' gauges.
FLEET_METRICS = (
    "iotcast_readings_learned_total",
    "iotcast_readings_duplicate_total",
    "iotcast_readings_late_total",
    "iotcast_readings_glitch_total",
    "iotcast_readings_no_target_total",
    "iotcast_records_poison_total",
    "iotcast_readings_processed_total",
    "iotcast_shard_lag_seconds",
    "iotcast_shard_owned",
    "iotcast_predictions_emitted_total",
    "iotcast_devices_held",
    "iotcast_events_total",
)
PROCESSOR_METRICS = (
    *FLEET_METRICS,
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


# ------------------------------------------------------------------ watching
class Watch:
    """RSS and CPU from /proc and the pipeline's /metrics, sampled on two threads."""

    def __init__(
        self, args: argparse.Namespace, stack: SoakStack, load: Load, notes: list[str]
    ) -> None:
        self.args = args
        self.stack = stack
        self.load = load
        self.notes = notes
        self.samples: list[dict[str, Any]] = []  # /proc samples
        self.polls: list[dict[str, Any]] = []  # /metrics polls
        self.stop_sampling = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for target in (self.sample_proc, self.poll):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self.stop_sampling.set()
        for t in self._threads:
            t.join(30)

    def last_poll(self) -> dict[str, Any]:
        return self.polls[-1] if self.polls else {}

    def sample_proc(self) -> None:
        while True:
            row: dict[str, Any] = {"t": time.time(), "machine": machine_busy()}
            with open("/proc/loadavg") as f:
                row["load1"] = float(f.read().split()[0])
            for name, pid in [*self.stack.running(), ("publisher (bench)", os.getpid())]:
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
        for p in self.stack.processors():
            try:
                m = parse_metrics(fetch(f"{p.url}/metrics?{query}"))
            except OSError:
                per.append({})
                continue
            per.append({n: total(m, n) for n in FLEET_METRICS})
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
        for n in FLEET_METRICS:
            row[n] = total(merged, n)
        row["lag_max"] = max(merged.get("iotcast_shard_lag_seconds", {}).values(), default=None)
        row["per_processor"] = per
        try:  # every bridge's figures, summed (the oldest unacknowledged: the worst), or none
            pages = [parse_metrics(fetch(b.url + "/metrics")) for b in self.stack.bridges()]
        except OSError:
            pages = []
        if pages:
            for key, metric in BRIDGE_METRICS.items():
                row[key] = sum(total(b, metric) for b in pages)
            row["bridge_oldest_unacked"] = max(
                total(b, "iotcast_bridge_oldest_unacked_age_seconds") for b in pages
            )
        row["published"] = self.load.sent()
        row["acked"] = self.load.acked()
        # publish -> learned: each watched device's newest learned reading, joined with the
        # publisher's log
        last_ts = merged.get("iotcast_last_reading_timestamp_seconds", {})
        received = merged.get("iotcast_last_reading_received_timestamp_seconds", {})
        lat = []
        for labels, ts in last_ts.items():
            got = received.get(labels)
            published = self.load.published_at(label(labels, "device"), ts)
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


BRIDGE_METRICS = {  # poll row key -> the bridge's metric, summed over the bridges
    "bridge_received": "iotcast_bridge_messages_received_total",
    "bridge_forwarded": "iotcast_bridge_readings_forwarded_total",
    "bridge_dead_letters": "iotcast_bridge_dead_letters_total",
    "bridge_buffer": "iotcast_bridge_buffer_records",
    "bridge_retries": "iotcast_bridge_retries_total",
    "bridge_put_sum": "iotcast_bridge_put_records_seconds_sum",
    "bridge_put_count": "iotcast_bridge_put_records_seconds_count",
}


# ------------------------------------------------------------------ drain
def accounted(row: dict[str, Any]) -> float:
    """Readings the pipeline took a decision on, by one poll's figures (the fleet's)."""
    return (
        row.get("iotcast_readings_learned_total", 0)
        + row.get("iotcast_readings_duplicate_total", 0)
        + row.get("iotcast_readings_late_total", 0)
        + row.get("iotcast_readings_glitch_total", 0)
        + row.get("iotcast_readings_no_target_total", 0)
        + row.get("bridge_dead_letters", 0)
    )


def drain(watch: Watch, say: Callable[[str], None]) -> dict[str, Any]:
    """The backlog when the publisher stopped, and the time the pipeline took to drain it."""
    load, args = watch.load, watch.args
    published = load.acked()
    at_stop = watch.poll_once()
    backlog = {
        "published": published,
        "in_broker": max(0, published - at_stop.get("bridge_received", 0)),
        "bridge_buffer": at_stop.get("bridge_buffer"),
        "in_kinesis": at_stop.get("bridge_forwarded", 0)
        - at_stop.get("iotcast_readings_processed_total", 0),
        "millis_behind_latest_max": None
        if at_stop.get("lag_max") is None
        else at_stop["lag_max"] * 1000,
        "not_yet_learned": published - accounted(at_stop),
    }
    say(f"backlog at publisher stop: {backlog}")
    t0 = time.monotonic()
    last_progress, last_value = t0, accounted(at_stop)
    drained_after = None
    while time.monotonic() - t0 < args.drain_timeout:
        row = watch.polls[-1] if watch.polls else at_stop
        value = accounted(row)
        if value >= published:
            drained_after = row["t"] - load.t_stop
            break
        if value > last_value:
            last_progress, last_value = time.monotonic(), value
        elif time.monotonic() - last_progress > args.stall:
            watch.notes.append(f"drain stalled: no progress for {args.stall:.0f}s")
            break
        time.sleep(1)
    left = published - accounted(watch.polls[-1] if watch.polls else at_stop)
    say(
        "drained in "
        + (f"{drained_after:.1f} s" if drained_after is not None else "NOT drained")
        + f" after the publisher stopped; not yet accounted for: {left:,.0f}"
    )
    return {"at_stop": backlog, "drain_seconds": drained_after, "left_unaccounted": left}


# ------------------------------------------------------------------ accounting
def drain_broker(client_id: str, port: int, got: dict[str, set[float]]) -> None:
    """Take what the broker still holds for a (stopped) bridge's session into ``got``: ts by
    device.

    Connects as the bridge's client id with its session kept, so the broker hands over
    the queued messages; reading them here ends the run's queue (the run is over).
    """
    last = [time.monotonic()]

    def on_message(client, userdata, msg) -> None:
        d = orjson.loads(msg.payload)
        got.setdefault(d["device_id"], set()).add(d["ts"])
        last[0] = time.monotonic()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.on_message = on_message
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    c.connect(HOST, port, clean_start=False, properties=props)
    c.loop_start()
    deadline = time.monotonic() + 300
    while time.monotonic() - last[0] < 5 and time.monotonic() < deadline:
        time.sleep(0.5)
    c.disconnect()
    c.loop_stop()


def account(
    settings: Settings,
    load: Load,
    broker_port: int,
    final: dict[str, Any],
    bridge_client_ids: Sequence[str],
) -> dict[str, Any]:
    """Every published reading: learned (S3 manifests), dropped as duplicate/late/glitch,
    dead-lettered, still in Kinesis after the manifests, still in the broker, or lost."""
    s = settings
    s3 = s.client("s3")
    kinesis = s.client("kinesis")
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
            for rec in resp["Records"]:
                for r in readings_of(sid, rec["Data"]):
                    in_kinesis += 1
                    after.setdefault(r.device, set()).add(r.ts)
            if not resp["Records"] and resp.get("MillisBehindLatest", 0) == 0:
                break
            it = resp.get("NextShardIterator")
    broker: dict[str, set[float]] = {}
    for client_id in bridge_client_ids:  # each bridge's session, in turn
        drain_broker(client_id, broker_port, broker)
    in_broker = sum(len(v) for v in broker.values())
    dead = 0
    for obj in _list(s3, s.bucket, "dead-letter/"):
        body = s3.get_object(Bucket=s.bucket, Key=obj["Key"])["Body"].read()
        dead += body.count(b"\n")
    acked, sent = load.acked(), load.sent()
    ids = {v: k for k, v in load.device_index.items()}
    published: dict[str, list[float]] = {}
    for pub in load.publishers:
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
    no_target = final.get("iotcast_readings_no_target_total", 0)
    return {
        "published_sent": sent,
        "published_acked": acked,
        "learned_in_manifests": learned,
        "learned_metric": final.get("iotcast_readings_learned_total"),
        "duplicates": dup,
        "late": late,
        "glitches": glitch,
        "no_target": no_target,
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


def readings_of(shard: str, data: bytes) -> list[Reading]:
    """The readings the processor reads in record ``data`` of ``shard`` (packed, or one
    message as an older bridge or the IoT rule wrote it; a stray copy addressed to another
    shard holds none for it; parts that are not readings are left out)."""
    try:
        u = unpack(data)
    except EnvelopeError:
        return []
    if u.shard and u.shard != shard:
        return []
    return [p for m in u for p in decode_message(m).parts if isinstance(p, Reading)]


def is_prediction(record: dict[str, Any]) -> bool:
    """A prediction record of the predictions stream (not an event; no kind: an old one).

    >>> is_prediction({"device": "d", "ts": 1.0}), is_prediction({"kind": "event"})
    (True, False)
    """
    return record.get("kind", "prediction") == "prediction"


def read_predictions(settings: Settings, load: Load, seconds: float) -> dict[str, Any]:
    """The predictions stream, first prediction per (device, ts), joined with the publish
    times; its event records are counted by event, not joined."""
    s = settings
    kinesis = s.client("kinesis")
    first: dict[tuple[str, float], float] = {}
    events: dict[str, int] = {}
    records = predictions = 0
    started = time.monotonic()
    complete = True
    for shard in kinesis.list_shards(StreamName=s.predictions_stream)["Shards"]:
        it = kinesis.get_shard_iterator(
            StreamName=s.predictions_stream,
            ShardId=shard["ShardId"],
            ShardIteratorType="TRIM_HORIZON",
        )["ShardIterator"]
        while it:
            if time.monotonic() - started > seconds:
                complete = False
                break
            resp = kinesis.get_records(ShardIterator=it, Limit=10_000)
            for rec in resp["Records"]:
                arrived = rec["ApproximateArrivalTimestamp"].timestamp()
                for d in decode_records(rec["Data"]):  # packed: many a Kinesis record
                    if not is_prediction(d):
                        kind = str(d.get("event", d.get("kind")))
                        events[kind] = events.get(kind, 0) + 1
                        continue
                    predictions += 1
                    key = (d["device"], d["ts"])  # every horizon in one record (version 2)
                    if key not in first or arrived < first[key]:
                        first[key] = arrived
            records += len(resp["Records"])
            if not resp["Records"] and resp.get("MillisBehindLatest", 0) == 0:
                break
            it = resp.get("NextShardIterator")
    lat: list[tuple[float, float]] = []
    unmatched = 0
    for (device, ts), arrived in first.items():
        published = load.published_at(device, ts)
        if published is None:
            unmatched += 1
        else:
            lat.append((published, arrived - published))
    lat.sort()
    return {
        "records_read": records,
        "prediction_records": predictions,
        "records_per_prediction": round(records / predictions, 4) if predictions else None,
        "readings_with_a_prediction": len(first),
        "events": dict(sorted(events.items())),
        "complete": complete,
        "read_seconds": round(time.monotonic() - started, 1),
        "unmatched": unmatched,
        "latencies": lat,
    }


def _list(s3: Any, bucket: str, prefix: str):
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])

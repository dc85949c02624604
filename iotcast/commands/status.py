"""Where the pipeline stands: stream, consumer group, components, the fleet, devices,
operator commands and what happened to devices.

Reads what the parts leave behind, so it needs none of them running:

- stream: Kinesis (status, retention, each shard open or closed, its parents);
- consumer group ``--app``: per shard the lease holder and the age of its heartbeat
  (DynamoDB table ``kinesis-checkpoints-<app>``), the sequence number checkpointed in
  DynamoDB and in the S3 manifest and the manifest's age, and how far the group is behind:
  records after the manifest's sequence number (counted with GetRecords, up to
  ``--count-limit``) and MillisBehindLatest there; live processes (their presence items);
- components: each ``--scrape URL`` (a bridge's or processor's /metrics) or, with
  ``--scrape`` alone, each live processor's (the URL its presence item advertises:
  every worker of ``iotcast process --workers N``), reachable or not, with its key
  figures, among them the sensor values its validation dropped or clipped, by field and
  reason;
- the fleet (with ``--scrape``, summed over the processors scraped): devices held, quiet,
  reset in the last hour, watched; champions per horizon; events by kind; and the worst
  devices now per horizon (served rolling MAE against persistence's, the processors'
  worst-k gauges merged);
- devices (from the manifests): champion per horizon, checkpoint version, samples learned,
  the champion's rolling MAE; with ``--scrape``, the champion the processors hold right
  now, for the watched devices (``iotcast process --watch``: only they have per-device
  series);
- operator commands of the last 24 h (``iotcast models promote|rollback``) and who applied them;
- events (:mod:`stream.events`, written to S3 with each checkpoint): the last ``--events``
  of today (UTC; ``--days`` to look further back); with ``--device X``, every event of X
  in that period, its row and its commands: "what happened to device X today".

Example (local stack: every live processor worker's /metrics; then the bridge's on 9101;
then one device's day, and its last week)::

    iotcast status --scrape
    iotcast status --scrape http://127.0.0.1:9101/metrics
    iotcast status --device sensor-00
    iotcast status --device sensor-00 --days 7

>>> import argparse
>>> p = argparse.ArgumentParser(); add_arguments(p)
>>> p.parse_args(["--json", "--scrape", "http://h:1/metrics"]).scrape, p.parse_args([]).scrape
(['http://h:1/metrics'], None)
>>> a = p.parse_args(["--device", "d1", "--days", "3"]); (a.device, a.days, a.events)
('d1', 3, 20)
>>> live = [{"process": "p1", "metrics": "http://h:9102/metrics", "heartbeat_age_seconds": 3}]
>>> scrape_urls([], live), scrape_urls(["http://b:9101/metrics"], live)
(['http://h:9102/metrics'], ['http://b:9101/metrics'])
>>> figures_from_metrics('iotcast_champion_info{device="d1",model="linear"} 1.0\\n')["champions"]
{'d1': 'linear'}
>>> text = ('iotcast_values_dropped_total{field="co",reason="wrong_type"} 3.0\\n'
...         'iotcast_values_clipped_total{field="humidity",reason="clipped"} 2.0\\n')
>>> figures_from_metrics(text)["values"]
{'co wrong_type': 3.0, 'humidity clipped': 2.0}
>>> text = ('iotcast_shard_owned{shard="s0"} 1.0\\n'
...         'iotcast_worst_device_error_ratio{device="d7",horizon="60",rank="1"} 2.5\\n'
...         'iotcast_worst_device_mae_celsius{device="d7",horizon="60",rank="1"} 0.5\\n')
>>> figures_from_metrics(text)["worst"]
{'60': [{'rank': 1, 'device': 'd7', 'ratio': 2.5, 'mae_celsius': 0.5}]}
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from iotcast.settings import Settings
from online_models.records import ModelAtHorizon
from stream.checkpoint import CheckpointStore, TamperedCheckpoint
from stream.control import ControlLog, age_seconds
from stream.events import read_events
from stream.lease_table import lease_table_name, read_lease_table
from stream.registry import ModelRegistry

__all__ = [
    "HELP",
    "add_arguments",
    "collect",
    "figures_from_metrics",
    "fleet_figures",
    "recent_events",
    "run",
]

LIVE_SECONDS = 300  # a presence item without its session timeout: not scraped when older
DEFAULT_EVENTS = 20

HELP = (
    "the stream, the consumer group's leases and lag, components, the fleet and its worst "
    "devices, per-device champions, commands, recent events; --device X: what happened to X"
)

Samples = dict[str, list[tuple[dict[str, str], float]]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--scrape",
        nargs="*",
        default=None,
        metavar="URL",
        help="check these /metrics URLs (bridges', processors'); with no URL, every live "
        "processor's (as its presence item in the lease table advertises it); shows each "
        "one's figures, the fleet's (devices held, quiet, reset in the last hour, champions, "
        "events) and the worst devices now per horizon; default: none",
    )
    parser.add_argument(
        "--count-limit",
        type=int,
        default=10_000,
        metavar="N",
        help="count at most N records behind per shard (default 10000; 0: do not count)",
    )
    parser.add_argument(
        "--device",
        metavar="DEVICE",
        help="what happened to DEVICE: its checkpoint, its operator commands and every one "
        "of its events (first reading, promotions, drifts, model resets, gone quiet) of the "
        "last --days days, oldest first; default: the whole group and its last --events events",
    )
    parser.add_argument(
        "--events",
        type=int,
        default=DEFAULT_EVENTS,
        metavar="N",
        help=f"show the last N events of the fleet (default {DEFAULT_EVENTS}; 0: do not read "
        "them); with --device, all of the device's are shown",
    )
    parser.add_argument(
        "--days",
        type=int,
        default=1,
        metavar="D",
        help="events of the last D days, today (UTC) included (default 1: today's)",
    )


# ------------------------------------------------------------------------ gathering
def _stream(kinesis: Any, name: str) -> dict[str, Any]:
    try:
        summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            return {"name": name, "status": "MISSING", "shards": []}
        raise
    shards, kwargs = [], {"StreamName": name}
    while True:
        page = kinesis.list_shards(**kwargs)
        shards += page["Shards"]
        if not page.get("NextToken"):
            break
        kwargs = {"NextToken": page["NextToken"]}
    return {
        "name": name,
        "status": summary["StreamStatus"],
        "retention_hours": summary["RetentionPeriodHours"],
        "open_shards": summary.get("OpenShardCount"),
        "shards": [
            {
                "shard_id": s["ShardId"],
                "open": "EndingSequenceNumber" not in s["SequenceNumberRange"],
                "parents": [
                    p for p in (s.get("ParentShardId"), s.get("AdjacentParentShardId")) if p
                ],
            }
            for s in shards
        ],
    }


def _leases(dynamodb: Any, app: str) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    table = read_lease_table(dynamodb, lease_table_name(app))
    now = time.time()

    def age(ts: float | None) -> float | None:
        return round(now - ts, 1) if ts is not None else None

    leases = {
        shard: {
            "owner": lease.owner,
            "lease_age_seconds": age(lease.ts),
            "sequence": lease.sequence,
        }
        for shard, lease in table.leases.items()
    }
    processes = [
        {
            "process": p.process,
            "heartbeat_age_seconds": age(p.ts),
            "session_timeout_seconds": p.session_timeout or float(LIVE_SECONDS),
            "metrics": p.metrics_url,
        }
        for p in table.presences.values()
    ]
    return leases, sorted(processes, key=lambda p: p["process"])


def _behind(
    kinesis: Any, stream: str, shard_id: str, after: str | None, limit: int
) -> dict[str, Any]:
    if limit <= 0:
        return {}
    kwargs: dict[str, Any] = {"StreamName": stream, "ShardId": shard_id}
    if after is None:
        kwargs["ShardIteratorType"] = "TRIM_HORIZON"
    else:
        kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=after)
    iterator = kinesis.get_shard_iterator(**kwargs)["ShardIterator"]
    count, millis = 0, None
    while iterator and count < limit:
        page = kinesis.get_records(ShardIterator=iterator, Limit=min(10_000, limit - count))
        millis = page.get("MillisBehindLatest") if millis is None else millis
        count += len(page["Records"])
        if not page["Records"]:
            break
        iterator = page.get("NextShardIterator")
    return {
        "records_behind": count,
        "records_behind_capped": count >= limit,
        "millis_behind_latest": millis,
    }


# ------------------------------------------------------------------- the processes' figures
def _samples(text: str) -> Samples:
    from prometheus_client.parser import text_string_to_metric_families

    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return samples


def _total(samples: Samples, name: str) -> float:
    return sum(v for _, v in samples.get(name, []))


def figures_from_metrics(text: str) -> dict[str, Any]:
    """Key figures of a bridge's or processor's /metrics exposition."""
    samples = _samples(text)
    owned = sorted(lb["shard"] for lb, v in samples.get("iotcast_shard_owned", []) if v == 1)
    is_processor = bool(owned or samples.get("iotcast_readings_processed_total"))
    is_bridge = (
        _total(samples, "iotcast_bridge_messages_received_total") > 0
        or _total(samples, "iotcast_bridge_mqtt_connected") > 0
    )
    out: dict[str, Any] = {
        "role": "processor" if is_processor else "bridge" if is_bridge else "unknown"
    }
    if is_bridge:
        out.update(_bridge_figures(samples))
    if is_processor or not is_bridge:
        out.update(_processor_figures(samples, owned))
    prefix = "iotcast_bridge_" if is_bridge and not is_processor else "iotcast_"
    out["values"] = _values(samples, prefix)  # dropped or clipped, "field reason" -> count
    # Per-device series exist for the watched devices only (iotcast process --watch).
    out["champions"] = {
        lb["device"]: lb["model"] for lb, v in samples.get("iotcast_champion_info", []) if v == 1
    }
    return out


def _bridge_figures(samples: Samples) -> dict[str, Any]:
    return {
        "mqtt_connected": _total(samples, "iotcast_bridge_mqtt_connected") == 1,
        "kinesis_up": _total(samples, "iotcast_bridge_kinesis_up") == 1,
        "forwarded": _total(samples, "iotcast_bridge_readings_forwarded_total"),
        "dead_letters": _total(samples, "iotcast_bridge_dead_letters_total"),
    }


def _processor_figures(samples: Samples, owned: list[str]) -> dict[str, Any]:
    champions: dict[str, dict[str, float]] = {}
    for lb, v in samples.get("iotcast_champions", []):
        if v:
            champions.setdefault(lb["horizon"], {})[lb["model"]] = v
    return {
        "shards_owned": owned,
        "devices_held": _total(samples, "iotcast_devices_held"),
        "devices_quiet": _total(samples, "iotcast_devices_quiet"),
        "devices_reset_last_hour": _total(samples, "iotcast_devices_reset_last_hour"),
        "watched": _total(samples, "iotcast_watched_devices"),
        "records": _total(samples, "iotcast_records_processed_total"),
        "records_misrouted": _total(samples, "iotcast_records_misrouted_total"),
        "readings": _total(samples, "iotcast_readings_processed_total"),
        "learned": _total(samples, "iotcast_readings_learned_total"),
        "no_target": _total(samples, "iotcast_readings_no_target_total"),
        "lag_seconds": {lb["shard"]: v for lb, v in samples.get("iotcast_shard_lag_seconds", [])},
        "champions_count": _by_horizon(champions),
        "events": {lb["kind"]: v for lb, v in samples.get("iotcast_events_total", []) if v},
        "worst": _worst(samples),
        # the batch versions it forecasts with (--batch-expert): active and shadow, 0 for none
        "batch": {lb["stage"]: int(v) for lb, v in samples.get("iotcast_batch_version", [])},
    }


def _horizon_key(horizon: str) -> tuple[int, str]:
    return (int(horizon), "") if horizon.isdigit() else (sys.maxsize, horizon)


def _by_horizon(by: dict[str, Any]) -> dict[str, Any]:
    return {h: by[h] for h in sorted(by, key=_horizon_key)}


def _worst(samples: Samples) -> dict[str, list[dict[str, Any]]]:
    """The worst-k gauges of one process: horizon -> rows by rank (1 = worst)."""
    mae = {
        (lb["horizon"], lb["device"]): v
        for lb, v in samples.get("iotcast_worst_device_mae_celsius", [])
    }
    out: dict[str, list[dict[str, Any]]] = {}
    for lb, ratio in samples.get("iotcast_worst_device_error_ratio", []):
        row = {
            "rank": int(lb["rank"]),
            "device": lb["device"],
            "ratio": ratio,
            "mae_celsius": mae.get((lb["horizon"], lb["device"])),
        }
        out.setdefault(lb["horizon"], []).append(row)
    return _by_horizon({h: sorted(rows, key=lambda r: r["rank"]) for h, rows in out.items()})


def _values(samples: Samples, prefix: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for kind in ("dropped", "clipped"):
        for lb, v in samples.get(f"{prefix}values_{kind}_total", []):
            if v:
                key = f"{lb['field']} {lb['reason']}"
                values[key] = values.get(key, 0.0) + v
    return dict(sorted(values.items()))


def scrape_urls(given: list[str], processes: list[dict[str, Any]]) -> list[str]:
    """The /metrics to check: those given; none given, each live processor's (advertised;
    a presence item not renewed within its session timeout is a process that died)."""
    if given:
        return list(given)
    return [
        p["metrics"]
        for p in processes
        if p.get("metrics")
        and (p.get("heartbeat_age_seconds") or 0) < p.get("session_timeout_seconds", LIVE_SECONDS)
    ]


def _scrape(url: str) -> dict[str, Any]:
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            text = resp.read().decode()
    except (urllib.error.URLError, OSError) as exc:
        return {"url": url, "reachable": False, "error": str(getattr(exc, "reason", exc))}
    return {
        "url": url,
        "reachable": True,
        "seconds": round(time.monotonic() - t0, 3),
        **figures_from_metrics(text),
    }


# ------------------------------------------------------------------------ the fleet
def fleet_figures(components: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The fleet's figures summed over the processors scraped, and the worst devices now
    (each process's worst-k merged, per horizon); None when no processor was scraped.

    >>> a = {"url": "a", "reachable": True, "role": "processor", "devices_held": 3.0,
    ...      "champions_count": {"0": {"linear": 2.0, "persistence": 1.0}},
    ...      "worst": {"0": [{"rank": 1, "device": "d1", "ratio": 1.5, "mae_celsius": 0.3},
    ...                      {"rank": 2, "device": "d2", "ratio": 1.1, "mae_celsius": 0.2}]}}
    >>> b = {"url": "b", "reachable": True, "role": "processor", "devices_held": 2.0,
    ...      "champions_count": {"0": {"linear": 2.0}},
    ...      "worst": {"0": [{"rank": 1, "device": "d9", "ratio": 2.0, "mae_celsius": 0.2}]}}
    >>> f = fleet_figures([a, b])
    >>> f["devices_held"], f["champions"], [(r["rank"], r["device"]) for r in f["worst"]["0"]]
    (5.0, {'0': {'linear': 4.0, 'persistence': 1.0}}, [(1, 'd9'), (2, 'd1')])
    """
    procs = [c for c in components if c.get("reachable") and c.get("role") == "processor"]
    if not procs:
        return None
    out: dict[str, Any] = {"processors": len(procs)}
    for name in ("devices_held", "devices_quiet", "devices_reset_last_hour", "watched"):
        out[name] = sum(c.get(name, 0.0) for c in procs)
    champions: dict[str, dict[str, float]] = {}
    events: dict[str, float] = {}
    for c in procs:
        for h, models in c.get("champions_count", {}).items():
            for model, n in models.items():
                champions.setdefault(h, {})[model] = champions.get(h, {}).get(model, 0.0) + n
        for kind, n in c.get("events", {}).items():
            events[kind] = events.get(kind, 0.0) + n
    out["champions"] = _by_horizon({h: dict(sorted(m.items())) for h, m in champions.items()})
    out["events"] = dict(sorted(events.items()))
    out["worst"] = _merge_worst(procs)
    return out


def _merge_worst(procs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per horizon, the k worst of all processes' worst-k (k: the most one process shows)."""
    merged: dict[str, list[dict[str, Any]]] = {}
    k: dict[str, int] = {}
    for c in procs:
        for h, rows in c.get("worst", {}).items():
            k[h] = max(k.get(h, 0), len(rows))
            merged.setdefault(h, []).extend({**r, "url": c["url"]} for r in rows)

    def badness(row: dict[str, Any]) -> float:
        ratio = row["ratio"]
        return -math.inf if ratio is None or math.isnan(ratio) else ratio

    out = {}
    for h, rows in merged.items():
        ranked = sorted(rows, key=badness, reverse=True)[: k[h]]
        out[h] = [{**r, "rank": i} for i, r in enumerate(ranked, 1)]
    return _by_horizon(out)


# ----------------------------------------------------------------------------- events
def recent_events(
    s3: Any,
    bucket: str,
    app: str,
    *,
    device: str | None = None,
    days: int = 1,
    limit: int = DEFAULT_EVENTS,
) -> dict[str, Any]:
    """The events of the last ``days`` days (today, UTC, included) as the processors wrote
    them to S3 (:func:`stream.events.read_events`, repeats dropped): ``device``'s all, or the
    fleet's last ``limit`` (0: none read). Oldest first; ``total`` counts them all."""
    found: list[dict[str, Any]] = []
    if device is not None or limit > 0:
        try:
            found = read_events(s3, bucket, app, days=days, device=device)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "NoSuchBucket":
                raise
    found.sort(key=lambda e: (str(e.get("at", "")), e.get("ts") or 0.0))  # a checkpoint's: by ts
    shown = found if device is not None else found[-limit:] if limit > 0 else []
    return {
        "days": days,
        "device": device,
        "limit": None if device is not None else limit,
        "total": len(found),
        "where": f"s3://{bucket}/events/{app}/",
        "events": shown,
    }


# -------------------------------------------------------------------------- collecting
def collect(
    settings: Settings,
    scrape: list[str] | None = None,
    count_limit: int = 10_000,
    *,
    device: str | None = None,
    days: int = 1,
    events: int = DEFAULT_EVENTS,
) -> dict[str, Any]:
    """Everything ``status`` shows, as one JSON-ready dict; with ``device``, its devices,
    commands and events are that device's only."""
    kinesis = settings.client("kinesis")
    s3 = settings.client("s3")
    store = CheckpointStore(s3, settings.bucket, settings.app, settings.hmac_key)
    registry = ModelRegistry(store)
    now = time.time()
    stream = _stream(kinesis, settings.stream)
    leases, processes = _leases(settings.client("dynamodb"), settings.app)
    problems: list[str] = []
    manifests = _manifests(registry, settings.bucket, problems)
    shards = [
        _shard_row(kinesis, settings.stream, s, leases, manifests, now, count_limit)
        for s in stream["shards"]
    ]
    urls = [] if scrape is None else scrape_urls(scrape, processes)
    components = [_scrape(url) for url in urls]
    devices = _device_rows(registry, manifests, components, device)
    commands = _command_rows(ControlLog(store), devices, device)
    happened = recent_events(
        s3, settings.bucket, settings.app, device=device, days=days, limit=events
    )
    if device is not None and not devices and not happened["events"]:
        problems.append(
            f"device {device!r}: no checkpoint names it and it has no event in the last "
            f"{days} day(s)"
        )
    return {
        "at": now,
        "app": settings.app,
        "stream": stream,
        "shards": shards,
        "processes": processes,
        "components": components,
        "fleet": fleet_figures(components),
        "devices": devices,
        "commands": commands,
        "events": happened,
        "batch": batch_figures(s3, settings.bucket, settings.app, problems),
        "problems": problems,
    }


def batch_figures(s3: Any, bucket: str, app: str, problems: list[str]) -> dict[str, Any] | None:
    """The batch models: the current version, its verdict and its last steps (None: none yet)."""
    from stream.batch_registry import BatchRegistry, S3Objects

    try:
        return BatchRegistry(S3Objects(s3, bucket), app).summary()
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NoSuchBucket":  # (said once, for the checkpoints)
            problems.append(f"batch models: {exc}")
        return None
    except ValueError as exc:
        problems.append(f"batch models: {exc}")
        return None


def _manifests(registry: ModelRegistry, bucket: str, problems: list[str]) -> dict[str, Any]:
    try:
        return registry.shard_manifests()
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NoSuchBucket":
            raise
        problems.append(f"bucket {bucket!r} does not exist (no checkpoints yet)")
    except TamperedCheckpoint as exc:
        problems.append(f"a shard manifest fails verification: {exc}")
    return {}


def _shard_row(
    kinesis: Any,
    stream: str,
    s: dict[str, Any],
    leases: dict[str, dict[str, Any]],
    manifests: dict[str, Any],
    now: float,
    count_limit: int,
) -> dict[str, Any]:
    sid = s["shard_id"]
    manifest = manifests.get(sid)
    lease = leases.get(sid, {})
    row = {
        **s,
        "owner": lease.get("owner"),
        "lease_age_seconds": lease.get("lease_age_seconds"),
        "dynamodb_sequence": lease.get("sequence"),
        "checkpoint_sequence": manifest.sequence if manifest else None,
        "checkpoint_age_seconds": round(age_seconds(manifest.created, now), 1)
        if manifest and manifest.created
        else None,
        "finished": bool(manifest and manifest.finished),
        "devices": len(manifest.devices) if manifest else 0,
    }
    if not row["finished"]:
        row.update(_behind(kinesis, stream, sid, row["checkpoint_sequence"], count_limit))
    return row


def _device_rows(
    registry: ModelRegistry,
    manifests: dict[str, Any],
    components: list[dict[str, Any]],
    only: str | None,
) -> list[dict[str, Any]]:
    """Per device, its champions from its current checkpoint; ``live_champion``: the one the
    processors hold now, for a watched device (the only ones with per-device series)."""
    live: dict[str, str] = {}
    for c in components:
        live.update(c.get("champions", {}))
    devices = []
    for device, (shard, entry) in sorted(registry.current(manifests).items()):
        if only is not None and device != only:
            continue
        champion = entry.metrics.get("champion", {})
        figures = entry.metrics.get("models", {})
        devices.append(
            {
                "device": device,
                "shard": shard,
                "version": entry.version,
                "samples": entry.samples,
                "last_ts": entry.metrics.get("last_ts"),
                "champion": champion,
                "champion_rolling_mae": {
                    h: figures.get(str(ModelAtHorizon(m, int(h))), {}).get("rolling_mae")
                    for h, m in champion.items()
                },
                "live_champion": live.get(device),
            }
        )
    return devices


def _command_rows(
    control: ControlLog, devices: list[dict[str, Any]], only: str | None
) -> list[dict[str, Any]]:
    try:
        commands = control.commands()
        acks = control.acks(commands)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NoSuchBucket":
            raise
        commands, acks = [], {}
    current_version = {d["device"]: d["version"] for d in devices}
    rows = []
    for c in commands:
        for device in c.devices:
            if only is not None and device != only:
                continue
            ack = acks.get((c.id, device))
            rows.append(
                {
                    "id": c.id,
                    "kind": c.kind,
                    "device": device,
                    "what": c.describe(),
                    "by": c.by,
                    "at": c.at,
                    "reason": c.reason,
                    "state": _command_state(ack, current_version.get(device, -1)),
                    "process": ack.get("process") if ack else None,
                    "applied_at": ack.get("at") if ack else None,
                    "message": ack.get("message") if ack else None,
                }
            )
    return rows


def _command_state(ack: dict[str, Any] | None, current_version: int) -> str:
    state = "pending" if ack is None else ack["outcome"]
    if ack is not None and state in ("applied", "applying"):
        if int(ack.get("version", 0)) < current_version:
            return "applied, checkpointed"
        if state == "applied":
            return "applied, not yet checkpointed"
    return state


# ------------------------------------------------------------------------- rendering
def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return (
        f"{seconds:.0f}s"
        if seconds < 120
        else f"{seconds / 60:.0f}m"
        if seconds < 7200
        else f"{seconds / 3600:.1f}h"
    )


def escape(text: str) -> str:
    """``text`` shown as it is (a device name or a reason may hold rich markup's brackets)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def render(report: dict[str, Any]) -> None:
    from rich.console import Console

    console = Console(width=160)
    if report["events"]["device"] is not None:
        _render_device(console, report)
        return
    st = report["stream"]
    console.print(
        f"[bold]stream[/] {st['name']}: {st['status']}, retention {st.get('retention_hours', '-')} h, "
        f"{sum(s['open'] for s in st['shards'])} open / {len(st['shards'])} shards"
    )
    console.print(_shards_table(report))
    procs = (
        ", ".join(
            f"{p['process']} (heartbeat {_age(p['heartbeat_age_seconds'])} ago"
            + (f", {p['metrics']})" if p.get("metrics") else ")")
            for p in report["processes"]
        )
        or "none"
    )
    console.print(f"processes: {procs}")
    if report["components"]:
        console.print(_components_table(report["components"]))
    console.print(_devices_table(report["devices"]))
    if report["commands"]:
        console.print(_commands_table(report["commands"]))
    if report["fleet"] is not None:
        _render_fleet(console, report["fleet"])
    _render_events(console, report["events"])
    _render_batch(console, report.get("batch"), report["components"])
    for problem in report["problems"]:
        console.print(f"[red]problem:[/] {escape(problem)}")


def _render_batch(console: Any, batch: dict[str, Any] | None, components: list[dict]) -> None:
    """The batch models: the current version, its verdict, what each process forecasts with."""
    if batch is None:
        return
    verdict = batch["verdict"]
    judged = (
        "not judged yet (in shadow, or no processor with --batch-expert)"
        if verdict is None
        else f"{verdict['outcome']}: {verdict.get('reason', '')}"
    )
    made = batch["made_current"]
    console.print(
        f"[bold]batch model[/] v{batch['current']} current ({made.get('action')} by "
        f"{escape(str(made.get('by')))}); shadow verdict: {escape(judged)}"
    )
    for c in components:
        stages = c.get("batch")
        if stages:
            using = ", ".join(f"{k} v{v}" if v else f"{k} none" for k, v in sorted(stages.items()))
            console.print(f"  {escape(str(c.get('url', '')))} forecasts with: {using}")
    for e in batch["events"]:
        who, why = escape(str(e.get("by"))), escape(str(e.get("reason")))
        console.print(f"  v{batch['current']} {e.get('kind')} ({who}): {why}")


def _render_device(console: Any, report: dict[str, Any]) -> None:
    """``--device X``: its checkpoint, its place among the worst now, its commands, its events."""
    device = report["events"]["device"]
    if report["devices"]:
        console.print(_devices_table(report["devices"]))
    else:
        console.print(f"device {escape(device)}: no checkpoint names it (yet)")
    fleet = report["fleet"] or {}
    for h, rows in fleet.get("worst", {}).items():
        for r in rows:
            if r["device"] == device:
                console.print(
                    f"among the worst devices now at {h} s: rank {r['rank']} of {len(rows)}, "
                    f"served rolling MAE {_num(r['mae_celsius'])} °C = "
                    f"{_num(r['ratio'], 2)} x persistence's"
                )
    if report["commands"]:
        console.print(_commands_table(report["commands"]))
    _render_events(console, report["events"])
    for problem in report["problems"]:
        console.print(f"[red]problem:[/] {escape(problem)}")


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _render_fleet(console: Any, fleet: dict[str, Any]) -> None:
    n = fleet["processors"]
    console.print(
        f"[bold]fleet[/] ({n} processor{'s' if n != 1 else ''} scraped): "
        f"{fleet['devices_held']:,.0f} devices held, {fleet['devices_quiet']:,.0f} quiet, "
        f"{fleet['devices_reset_last_hour']:,.0f} with a model reset in the last hour, "
        f"{fleet['watched']:,.0f} watched"
    )
    champions = "; ".join(
        f"{h} s: " + ", ".join(f"{m} {c:,.0f}" for m, c in models.items())
        for h, models in fleet["champions"].items()
    )
    console.print(f"champions: {escape(champions) or '-'}")
    kinds = ", ".join(f"{k} {c:,.0f}" for k, c in fleet["events"].items())
    console.print(f"events since the processors started: {kinds or 'none'}")
    if not any(fleet["worst"].values()):
        console.print(
            "worst devices now: none ranked yet (no device has scored forecasts of both "
            "its served model and persistence)"
        )
        return
    console.print(_worst_table(fleet["worst"]))


def _worst_table(worst: dict[str, list[dict[str, Any]]]) -> Any:
    table = _table(
        "worst devices now: served rolling MAE against persistence's (rank 1 = worst)",
        ("horizon (s)", "rank", "device", "x persistence", "served MAE (°C)",
         "persistence MAE (°C)", "process"),
        right=("horizon (s)", "rank", "x persistence", "served MAE (°C)", "persistence MAE (°C)"),
    )  # fmt: skip
    for h, rows in worst.items():
        for r in rows:
            ratio, mae = r["ratio"], r["mae_celsius"]
            base = mae / ratio if mae is not None and ratio and math.isfinite(ratio) else None
            table.add_row(
                h, str(r["rank"]), escape(r["device"]), _num(ratio, 2), _num(mae), _num(base),
                r.get("url", "-"),
            )  # fmt: skip
    return table


def _period(days: int) -> str:
    return "today (UTC)" if days <= 1 else f"the last {days} days (UTC, today included)"


def _render_events(console: Any, events: dict[str, Any]) -> None:
    device, rows, total = events["device"], events["events"], events["total"]
    if device is None and events["limit"] == 0:
        return
    if not rows:
        whose = f"device {device}" if device is not None else "the fleet"
        console.print(
            f"events: none of {escape(whose)} {_period(events['days'])} in {events['where']} "
            "(the processors record first readings, promotions, drifts, model resets and "
            "devices gone quiet there with each checkpoint)"
        )
        return
    if device is not None:
        title = f"what happened to {device} {_period(events['days'])}: {total} event(s)"
    else:
        title = f"events {_period(events['days'])}: the last {len(rows)} of {total}"
    table = _table(escape(title), ("at (UTC)", "device", "event", "model", "horizon (s)", "what"))
    for e in rows:
        at = str(e.get("at") or "")
        table.add_row(
            at[11:19] if events["days"] <= 1 else at[:19].replace("T", " "),
            escape(str(e.get("device"))),
            str(e.get("event")),
            escape(str(e.get("model") or "-")),
            "-" if e.get("horizon") is None else str(e["horizon"]),
            escape(_event_words(e)),
        )
    console.print(table)


def _event_words(event: dict[str, Any]) -> str:
    """What happened, in words: the processor's reason, or the kind's own words."""
    if event.get("reason"):
        return str(event["reason"])
    return {
        "first_reading": "its first reading: its models start",
        "quiet": "no reading for more than 10 times its usual interval",
    }.get(str(event.get("event")), str(event.get("event")))


def _table(title: str, columns: tuple[str, ...], right: tuple[str, ...] = ()) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, justify="right" if col in right else "left")
    return table


def _shards_table(report: dict[str, Any]) -> Any:
    table = _table(
        f"consumer group {report['app']}",
        ("shard", "state", "owner", "lease age", "checkpoint seq (S3)", "DynamoDB seq",
         "ckpt age", "devices", "records behind", "ms behind"),
        right=("lease age", "ckpt age", "devices", "records behind", "ms behind"),
    )  # fmt: skip
    for s in report["shards"]:
        state = "open" if s["open"] else "closed, finished" if s["finished"] else "closed"
        behind = (
            "-"
            if "records_behind" not in s
            else f"{s['records_behind']}{'+' if s['records_behind_capped'] else ''}"
        )
        table.add_row(
            s["shard_id"],
            state,
            s["owner"] or "(free)",
            _age(s["lease_age_seconds"]),
            str(s["checkpoint_sequence"] or "-"),
            str(s["dynamodb_sequence"] or "-"),
            _age(s["checkpoint_age_seconds"]),
            str(s["devices"]),
            behind,
            str(s.get("millis_behind_latest", "-")),
        )
    return table


def _components_table(components: list[dict[str, Any]]) -> Any:
    table = _table("components", ("url", "reachable", "role", "figures"))
    for c in components:
        if not c["reachable"]:
            table.add_row(c["url"], "[red]no[/]", "-", c["error"])
            continue
        if c["role"] == "bridge":
            figs = (
                f"mqtt {'up' if c['mqtt_connected'] else 'DOWN'}, kinesis {'up' if c['kinesis_up'] else 'DOWN'}, "
                f"forwarded {c['forwarded']:.0f}, dead letters {c['dead_letters']:.0f}"
            )
        else:
            lag = max(c.get("lag_seconds", {}).values(), default=0.0)
            figs = (
                f"shards {','.join(c.get('shards_owned', [])) or '-'}, devices {c.get('devices_held', 0):.0f}, "
                f"records {c.get('records', 0):.0f} ({c.get('records_misrouted', 0):.0f} misrouted), "
                f"learned {c.get('learned', 0):.0f}, no target {c.get('no_target', 0):.0f}, "
                f"max lag {lag:.1f}s, quiet {c.get('devices_quiet', 0):.0f}, "
                f"reset in the last hour {c.get('devices_reset_last_hour', 0):.0f}"
            )
        if c.get("values"):
            figs += "; values dropped/clipped: " + ", ".join(
                f"{k} {v:.0f}" for k, v in c["values"].items()
            )
        table.add_row(c["url"], "yes", c["role"], figs)
    return table


def _devices_table(devices: list[dict[str, Any]]) -> Any:
    live = any(d["live_champion"] for d in devices)  # watched devices only
    columns = ("device", "shard", "version", "samples", "champion (per horizon, s)",
               "champion rolling MAE (°C)") + (("live champion (watched)",) if live else ())  # fmt: skip
    table = _table("devices (from the checkpoint manifests)", columns, right=("version", "samples"))
    for d in devices:
        horizons = sorted(d["champion"], key=int)
        champions = " ".join(f"{h}:{d['champion'][h]}" for h in horizons)
        maes = " ".join(
            f"{h}:-"
            if d["champion_rolling_mae"].get(h) is None
            else f"{h}:{d['champion_rolling_mae'][h]:.3f}"
            for h in horizons
        )
        cells = [escape(d["device"]), d["shard"], str(d["version"]), str(d["samples"])]
        cells += [escape(champions), maes] + ([d["live_champion"] or "-"] if live else [])
        table.add_row(*cells)
    return table


def _commands_table(commands: list[dict[str, Any]]) -> Any:
    table = _table(
        "operator commands (last 24 h)",
        ("issued (UTC)", "device", "command", "state", "applied by"),
    )
    for c in commands:
        table.add_row(
            c["at"][:19].replace("T", " "), c["device"], c["what"], c["state"], c["process"] or "-"
        )
    return table


def run(settings: Settings, args: argparse.Namespace) -> int:
    try:
        report = collect(
            settings,
            args.scrape,
            args.count_limit,
            device=args.device,
            days=args.days,
            events=args.events,
        )
    except (ClientError, BotoCoreError) as exc:
        print(
            f"iotcast status: cannot read the stack ({settings.describe_endpoints()}): {exc}; "
            "is it running, and are --endpoint-url (or AWS_ENDPOINT_URL_<SERVICE>) and "
            "--region right?",
            file=sys.stderr,
        )
        return 1
    if args.json:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        render(report)
    unreachable = [c for c in report["components"] if not c["reachable"]]
    return 1 if unreachable or report["problems"] else 0

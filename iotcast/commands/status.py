"""Where the pipeline stands: stream, consumer group, components, devices, operator commands.

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
- devices (from the manifests): champion per horizon, checkpoint version, samples learned,
  the champion's rolling MAE; with ``--scrape``, the champion the processors hold right now;
- operator commands of the last 24 h (``iotcast models promote|rollback``) and who applied them.

Example (local stack: every live processor worker's /metrics; then the bridge's on 9101)::

    iotcast status --scrape
    iotcast status --scrape http://127.0.0.1:9101/metrics

>>> import argparse
>>> p = argparse.ArgumentParser(); add_arguments(p)
>>> p.parse_args(["--json", "--scrape", "http://h:1/metrics"]).scrape, p.parse_args([]).scrape
(['http://h:1/metrics'], None)
>>> live = [{"process": "p1", "metrics": "http://h:9102/metrics", "heartbeat_age_seconds": 3}]
>>> scrape_urls([], live), scrape_urls(["http://b:9101/metrics"], live)
(['http://h:9102/metrics'], ['http://b:9101/metrics'])
>>> figures_from_metrics('iotcast_champion_info{device="d1",model="linear"} 1.0\\n')["champions"]
{'d1': 'linear'}
>>> text = ('iotcast_values_dropped_total{field="co",reason="wrong_type"} 3.0\\n'
...         'iotcast_values_clipped_total{field="humidity",reason="clipped"} 2.0\\n')
>>> figures_from_metrics(text)["values"]
{'co wrong_type': 3.0, 'humidity clipped': 2.0}
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from iotcast.settings import Settings
from stream.checkpoint import CheckpointStore, TamperedCheckpoint
from stream.consumer import lease_table
from stream.control import ControlLog, age_seconds
from stream.lease_table import PRESENCE_PREFIX
from stream.registry import ModelRegistry

__all__ = ["HELP", "add_arguments", "collect", "figures_from_metrics", "run"]

LIVE_SECONDS = 300  # a presence item without its session timeout: not scraped when older

HELP = "the stream, the consumer group's leases and lag, components, per-device champions, commands"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--scrape",
        nargs="*",
        default=None,
        metavar="URL",
        help="check these /metrics URLs (bridges', processors'); with no URL, every live "
        "processor's (as its presence item in the lease table advertises it); default: none",
    )
    parser.add_argument(
        "--count-limit",
        type=int,
        default=10_000,
        metavar="N",
        help="count at most N records behind per shard (default 10000; 0: do not count)",
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
    pages = dynamodb.get_paginator("scan").paginate(TableName=lease_table(app), ConsistentRead=True)
    try:
        items = [it for page in pages for it in page.get("Items", [])]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            return {}, []
        raise
    now = time.time()
    leases, processes = {}, []

    def val(item: dict[str, Any], name: str) -> Any:
        cell = item.get(name, {})
        return cell.get("S", cell.get("N"))

    for item in items:
        key = item["shard_id"]["S"]
        ts = val(item, "ts")
        age = round(now - float(ts), 1) if ts is not None else None
        if key.startswith(PRESENCE_PREFIX):
            processes.append(
                {
                    "process": key[len(PRESENCE_PREFIX) :],
                    "heartbeat_age_seconds": age,
                    "session_timeout_seconds": float(val(item, "session") or LIVE_SECONDS),
                    "metrics": val(item, "metrics"),
                }
            )
        else:
            leases[key] = {
                "owner": val(item, "ref"),
                "lease_age_seconds": age,
                "sequence": val(item, "sequence"),
            }
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


def figures_from_metrics(text: str) -> dict[str, Any]:
    """Key figures of a bridge's or processor's /metrics exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))

    def total(name: str) -> float:
        return sum(v for _, v in samples.get(name, []))

    owned = sorted(lb["shard"] for lb, v in samples.get("iotcast_shard_owned", []) if v == 1)
    is_processor = bool(owned or samples.get("iotcast_readings_processed_total"))
    is_bridge = (
        total("iotcast_bridge_messages_received_total") > 0
        or total("iotcast_bridge_mqtt_connected") > 0
    )
    out: dict[str, Any] = {
        "role": "processor" if is_processor else "bridge" if is_bridge else "unknown"
    }
    if is_bridge:
        out.update(
            mqtt_connected=total("iotcast_bridge_mqtt_connected") == 1,
            kinesis_up=total("iotcast_bridge_kinesis_up") == 1,
            forwarded=total("iotcast_bridge_readings_forwarded_total"),
            dead_letters=total("iotcast_bridge_dead_letters_total"),
        )
    if is_processor or not is_bridge:
        out.update(
            shards_owned=owned,
            devices_held=total("iotcast_devices_held"),
            learned=total("iotcast_readings_learned_total"),
            no_target=total("iotcast_readings_no_target_total"),
            lag_seconds={lb["shard"]: v for lb, v in samples.get("iotcast_shard_lag_seconds", [])},
        )
    prefix = "iotcast_bridge_" if is_bridge and not is_processor else "iotcast_"
    values: dict[str, float] = {}
    for kind in ("dropped", "clipped"):
        for lb, v in samples.get(f"{prefix}values_{kind}_total", []):
            if v:
                key = f"{lb['field']} {lb['reason']}"
                values[key] = values.get(key, 0.0) + v
    out["values"] = dict(sorted(values.items()))  # dropped or clipped, "field reason" -> count
    out["champions"] = {
        lb["device"]: lb["model"] for lb, v in samples.get("iotcast_champion_info", []) if v == 1
    }
    return out


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


def collect(
    settings: Settings, scrape: list[str] | None = None, count_limit: int = 10_000
) -> dict[str, Any]:
    """Everything ``status`` shows, as one JSON-ready dict."""
    kinesis = settings.client("kinesis")
    dynamodb = settings.client("dynamodb")
    s3 = settings.client("s3")
    store = CheckpointStore(s3, settings.bucket, settings.app, settings.hmac_key)
    registry = ModelRegistry(store)
    now = time.time()
    stream = _stream(kinesis, settings.stream)
    leases, processes = _leases(dynamodb, settings.app)
    problems: list[str] = []
    try:
        manifests = registry.shard_manifests()
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NoSuchBucket":
            raise
        manifests = {}
        problems.append(f"bucket {settings.bucket!r} does not exist (no checkpoints yet)")
    except TamperedCheckpoint as exc:
        manifests = {}
        problems.append(f"a shard manifest fails verification: {exc}")
    shards = []
    for s in stream["shards"]:
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
            row.update(
                _behind(kinesis, settings.stream, sid, row["checkpoint_sequence"], count_limit)
            )
        shards.append(row)
    urls = [] if scrape is None else scrape_urls(scrape, processes)
    components = [_scrape(url) for url in urls]
    live: dict[str, str] = {}
    for c in components:
        live.update(c.get("champions", {}))
    devices = []
    for device, (shard, entry) in sorted(registry.current(manifests).items()):
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
                    h: figures.get(f"{m}@{h}", {}).get("rolling_mae") for h, m in champion.items()
                },
                "live_champion": live.get(device),
            }
        )
    control = ControlLog(store)
    try:
        commands = control.commands()
        acks = control.acks(commands)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NoSuchBucket":
            raise
        commands, acks = [], {}
    current_version = {d["device"]: d["version"] for d in devices}
    command_rows = []
    for c in commands:
        for device in c.devices:
            ack = acks.get((c.id, device))
            state = "pending" if ack is None else ack["outcome"]
            if state in ("applied", "applying") and int(
                ack.get("version", 0)
            ) < current_version.get(device, -1):
                state = "applied, checkpointed"
            elif state == "applied":
                state = "applied, not yet checkpointed"
            command_rows.append(
                {
                    "id": c.id,
                    "kind": c.kind,
                    "device": device,
                    "what": c.describe(),
                    "by": c.by,
                    "at": c.at,
                    "reason": c.reason,
                    "state": state,
                    "process": ack.get("process") if ack else None,
                    "applied_at": ack.get("at") if ack else None,
                    "message": ack.get("message") if ack else None,
                }
            )
    return {
        "at": now,
        "app": settings.app,
        "stream": stream,
        "shards": shards,
        "processes": processes,
        "components": components,
        "devices": devices,
        "commands": command_rows,
        "problems": problems,
    }


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


def render(report: dict[str, Any]) -> None:
    from rich.console import Console

    console = Console(width=160)
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
    for problem in report["problems"]:
        console.print(f"[red]problem:[/] {problem}")


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
                f"learned {c.get('learned', 0):.0f}, no target {c.get('no_target', 0):.0f}, "
                f"max lag {lag:.1f}s"
            )
        if c.get("values"):
            figs += "; values dropped/clipped: " + ", ".join(
                f"{k} {v:.0f}" for k, v in c["values"].items()
            )
        table.add_row(c["url"], "yes", c["role"], figs)
    return table


def _devices_table(devices: list[dict[str, Any]]) -> Any:
    table = _table(
        "devices (from the checkpoint manifests)",
        ("device", "shard", "version", "samples", "champion (per horizon, s)",
         "champion rolling MAE (°C)", "live nowcast champion"),
        right=("version", "samples"),
    )  # fmt: skip
    for d in devices:
        horizons = sorted(d["champion"], key=int)
        champions = " ".join(f"{h}:{d['champion'][h]}" for h in horizons)
        maes = " ".join(
            f"{h}:-"
            if d["champion_rolling_mae"].get(h) is None
            else f"{h}:{d['champion_rolling_mae'][h]:.3f}"
            for h in horizons
        )
        table.add_row(
            d["device"],
            d["shard"],
            str(d["version"]),
            str(d["samples"]),
            champions,
            maes,
            d["live_champion"] or "-",
        )
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
        report = collect(settings, args.scrape, args.count_limit)
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

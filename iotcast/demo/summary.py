"""The demo's summary: its figures, the checks behind them, and how it is printed.

At the end of a run the demo's figures (scraped from the parts' /metrics:
the fleet's counts, and the per-device figures of the watched devices) are
checked three ways, each answering True, False or None (not checked):

- against Prometheus (:func:`query_prometheus`, once it has scraped every
  target after the pipeline was done): the fleet's counts, and each watched
  device's readings by outcome;
- against the checkpoint manifests copied out of S3 (:func:`download_checkpoints`):
  the samples of the devices' newest models add up to the fleet's readings
  learned, and each watched device's equal the readings it learned;
- against the offline evaluation of the watched devices' readings
  (:func:`offline_mae`): their stream's prequential MAE equals the offline one
  (same code, same readings per device).

:func:`agreement` says which agree; :func:`print_summary` prints the summary
(also in ``<out>/summary.json``).

>>> agreement({"stream": {"learned": 5, "learned_by_device": {"a": 3}},
...            "prometheus": {"learned": 5, "learned_by_device": {"a": 3}},
...            "checkpoints": {"devices": {"a": {"samples": 3}, "b": {"samples": 2}}},
...            "devices": {"a": {"champion_mae": 0.1, "offline_champion_mae": 0.1,
...                              "baseline_mae": 0.2, "offline_baseline_mae": 0.2}}})
{'prometheus': True, 'manifests': True, 'evaluation': True}
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from iotcast.live import OUTCOMES, DeviceView
from stream.checkpoint import ArtifactKey

__all__ = [
    "PROMETHEUS_QUERIES",
    "agreement",
    "device_rows",
    "forecast_rows",
    "checkpoint_figures",
    "download_checkpoints",
    "offline_mae",
    "print_summary",
    "query_prometheus",
]

PROMETHEUS_QUERIES = {
    "received": "sum(iotcast_bridge_messages_received_total)",
    "forwarded": "sum(iotcast_bridge_readings_forwarded_total)",
    "dead_lettered": "sum(iotcast_bridge_dead_letters_total)",
    "learned": "sum(iotcast_readings_learned_total)",
    "duplicates": "sum(iotcast_readings_duplicate_total)",
    "late": "sum(iotcast_readings_late_total)",
    "glitches": "sum(iotcast_readings_glitch_total)",
    "no_target": "sum(iotcast_readings_no_target_total)",
    "held": "sum(iotcast_readings_held_total)",
    # the watched devices'
    "learned_by_device": 'sum by (device) (iotcast_device_readings_total{outcome="learned"})',
    "device_readings": "sum by (device, outcome) (iotcast_device_readings_total)",
}
# The figures compared with Prometheus': the fleet's counts, the watched devices' readings.
COMPARED = ("forwarded", "dead_lettered", "learned", "held", "duplicates", "late", "glitches",
            "no_target", "learned_by_device", "device_readings")  # fmt: skip


# ------------------------------------------------------------------ figures
def device_rows(
    devices: Iterable[DeviceView],
    offline: dict[tuple[str, str, str], float],
    horizon: str,
    baseline: str,
) -> dict[str, dict[str, Any]]:
    """The summary's per-device figures: the stream's, and the offline evaluation's beside."""
    return {
        d.device: {
            "learned": d.learned,
            "champion": d.champion,
            "champion_mae": d.champion_mae,
            "baseline_mae": d.baseline_mae,
            "champion_rolling_mae": d.champion_rolling_mae,
            "baseline_rolling_mae": d.baseline_rolling_mae,
            "offline_champion_mae": offline.get((d.device, d.champion or "", horizon)),
            "offline_baseline_mae": offline.get((d.device, baseline, horizon)),
        }
        for d in devices
    }


def forecast_rows(
    forecasts: dict[str, dict[str, dict[str, float]]],
    offline: dict[tuple[str, str, str], float],
) -> list[dict[str, Any]]:
    """Per device and forecast horizon: the stream's MAE of the served forecast and of the
    baselines, the offline evaluation's beside (``offline_<model>``).

    >>> forecast_rows({"a": {"0": {"served": 0.1}, "60": {"served": 0.1, "persistence": 0.2}}},
    ...               {("a", "served", "60"): 0.1})[0]["offline_served"]
    0.1
    """
    rows = []
    for device, by_h in forecasts.items():
        for h, maes in by_h.items():
            if h in ("", "0"):
                continue
            row: dict[str, Any] = {"device": device, "horizon": int(h), **maes}
            for model in ("served", "persistence"):
                row[f"offline_{model}"] = offline.get((device, model, h))
            rows.append(row)
    return rows


# ------------------------------------------------------------------- checks
def _get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def _parse_rfc3339(text: str) -> float:
    # Prometheus gives nanoseconds; datetime takes microseconds.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
    return datetime.fromisoformat(text).timestamp()


def _scraped_after(prometheus_url: str, since: float, timeout: float) -> bool:
    """Wait until Prometheus has scraped every target after ``since``; False at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            targets = _get_json(f"{prometheus_url}/api/v1/targets")["data"]
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            targets = {}  # a busy Prometheus: ask again until the deadline
        active = targets.get("activeTargets") or []
        if active and all(
            t.get("health") == "up" and _parse_rfc3339(t["lastScrape"]) > since for t in active
        ):
            return True
        time.sleep(0.5)
    return False


def query_prometheus(prometheus_url: str, since: float, timeout: float = 20.0) -> dict[str, Any]:
    """Prometheus' figures once it has scraped every target after ``since`` (epoch s)."""
    result: dict[str, Any] = {"scraped_after_done": _scraped_after(prometheus_url, since, timeout)}
    for name, query in PROMETHEUS_QUERIES.items():
        q = urllib.parse.urlencode({"query": query})
        data = _get_json(f"{prometheus_url}/api/v1/query?{q}", timeout=30)["data"]["result"]
        if name == "learned_by_device":
            result[name] = {r["metric"].get("device", ""): int(float(r["value"][1])) for r in data}
        elif name == "device_readings":
            by: dict[str, dict[str, int]] = {}
            for r in data:
                device = r["metric"].get("device", "")
                outcome = r["metric"].get("outcome", "")
                by.setdefault(device, {o: 0 for o in OUTCOMES})[outcome] = int(float(r["value"][1]))
            result[name] = dict(sorted(by.items()))
        else:
            result[name] = int(float(data[0]["value"][1])) if data else 0
    return result


def _s3_keys(s3: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", ())


def download_checkpoints(s3: Any, bucket: str, app: str, dest: Path) -> dict[str, Any]:
    """Copy ``checkpoints/<app>/*/manifest.json`` and every device's newest model out of S3.

    Returns ``{"shards": {shard: manifest}, "devices": {device: {...}}}`` where a device's
    entry is its shard manifest's (version, key, sha256, samples, ...) plus ``sha256_ok``
    (the downloaded artifact's digest against the manifest's).
    """

    def fetch(key: str, offset: int | None = None, size: int = 0) -> bytes:
        if ".." in Path(key).parts or Path(key).is_absolute():  # keys come from manifests in S3
            raise ValueError(f"refusing to copy S3 key {key!r}: it would land outside {dest}")
        if offset is None:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        else:  # a device's byte range in a checkpoint bundle (stream/checkpoint.py)
            span = f"bytes={offset}-{offset + size - 1}"
            body = s3.get_object(Bucket=bucket, Key=key, Range=span)["Body"].read()
        path = dest / (key if offset is None else f"{key}@{offset}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        return body

    shards: dict[str, Any] = {}
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket"):
            return {"shards": {}, "devices": {}, "note": f"bucket {bucket} was never created"}
        raise
    for obj in _s3_keys(s3, bucket, f"checkpoints/{app}/"):
        if obj["Key"].endswith("manifest.json"):
            manifest = json.loads(fetch(obj["Key"]))
            shards[manifest.get("shard_id") or obj["Key"].split("/")[-2]] = manifest
    devices: dict[str, Any] = {}
    for shard, manifest in sorted(shards.items()):
        for device, entry in (manifest.get("devices") or {}).items():
            entry = dict(entry, shard=shard)
            if device in devices and devices[device].get("samples", 0) >= entry.get("samples", 0):
                continue
            key = entry.get("key")
            if key and entry.get("offset") is not None:
                artifact = fetch(key, int(entry["offset"]), int(entry.get("size", 0)))
                entry["sha256_ok"] = hashlib.sha256(artifact).hexdigest() == entry.get("sha256")
            elif key:
                artifact = fetch(key)
                entry["sha256_ok"] = hashlib.sha256(artifact).hexdigest() == entry.get("sha256")
                sibling = ArtifactKey.parse(key).manifest_key
                with contextlib.suppress(s3.exceptions.NoSuchKey):
                    fetch(sibling)
            devices[device] = entry
    return {"shards": shards, "devices": devices}


def checkpoint_figures(copied: dict[str, Any], watched: Iterable[str]) -> dict[str, Any]:
    """What the summary keeps of :func:`download_checkpoints`' answer (the manifests
    themselves are in the copy): each shard's manifest with its device entries counted,
    the watched devices' entries, and the fleet's totals: devices, samples, and artifacts
    whose digest is the manifest's.

    >>> copied = {"shards": {"s0": {"sequence": "9", "devices": {"a": {}, "b": {}}}},
    ...           "devices": {"a": {"samples": 3, "sha256_ok": True},
    ...                       "b": {"samples": 2, "sha256_ok": True}}}
    >>> f = checkpoint_figures(copied, ["a"])
    >>> f["shards"], f["devices"], f["device_count"], f["samples"], f["sha256_ok"]
    ({'s0': {'sequence': '9', 'devices': 2}}, {'a': {'samples': 3, 'sha256_ok': True}}, 2, 5, 2)
    """
    devices = copied.get("devices") or {}
    shards = {
        shard: {**manifest, "devices": len(manifest.get("devices") or {})}
        for shard, manifest in (copied.get("shards") or {}).items()
    }
    out = {
        "shards": shards,
        "devices": {d: devices[d] for d in sorted(watched) if d in devices},
        "device_count": len(devices),
        "samples": sum(e.get("samples") or 0 for e in devices.values()),
        "sha256_ok": sum(1 for e in devices.values() if e.get("sha256_ok")),
    }
    if "note" in copied:
        out["note"] = copied["note"]
    return out


def offline_mae(metrics_csv: Path) -> dict[tuple[str, str, str], float]:
    r"""(device, model, horizon) -> MAE over the whole file, from the evaluation's metrics.csv.

    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "metrics.csv"
    >>> _ = f.write_text("kind,device,model,horizon,scenario,metric,value\n"
    ...                  "error,a,persistence,0,all,mae,0.25\nerror,a,persistence,0,night,mae,0.3\n")
    >>> offline_mae(f)
    {('a', 'persistence', '0'): 0.25}
    """
    out: dict[tuple[str, str, str], float] = {}
    with metrics_csv.open(newline="") as f:
        for row in csv.DictReader(f):
            if (row["kind"], row["scenario"], row["metric"]) == ("error", "all", "mae") and row[
                "value"
            ].strip():  # empty: nothing scored
                out[(row["device"], row["model"], row["horizon"])] = float(row["value"])
    return out


def agreement(summary: dict[str, Any]) -> dict[str, bool | None]:
    """Do the stream's figures agree with Prometheus' and with the checkpoint manifests?

    ... and the watched devices' prequential MAE with the offline evaluation's (same code,
    same readings per device: equal to float precision)?  (Example: the module docstring.)
    The fleet's counts and the watched devices' readings are compared with Prometheus';
    the manifests' samples add up to the fleet's readings learned or held back by the anomaly
    watch (each decided once), and a watched device's are the readings it learned or held.
    """
    stream = summary.get("stream") or {}
    prom = summary.get("prometheus")
    ckpt = summary.get("checkpoints")
    out: dict[str, bool | None] = {"prometheus": None, "manifests": None, "evaluation": None}
    if stream and prom:
        out["prometheus"] = all(prom.get(k) == stream.get(k) for k in COMPARED if k in prom)
    if stream and ckpt:
        samples = {d: v.get("samples") or 0 for d, v in (ckpt.get("devices") or {}).items()}
        watched = stream.get("learned_by_device") or {}
        held = {d: by.get("held", 0) for d, by in (stream.get("device_readings") or {}).items()}
        total = ckpt.get("samples", sum(samples.values()))
        out["manifests"] = (
            total == (stream.get("learned") or 0) + (stream.get("held") or 0)
            and all(samples.get(d, 0) == n + held.get(d, 0) for d, n in watched.items())
            and ckpt.get("sha256_ok", 0) == ckpt.get("device_count", 0)
        )
    pairs = [
        (d.get(f"{which}_mae"), d.get(f"offline_{which}_mae"))
        for d in (summary.get("devices") or {}).values()
        for which in ("champion", "baseline")
    ]
    pairs += [
        (r.get(model), r.get(f"offline_{model}"))
        for r in summary.get("forecasts") or ()
        for model in ("served", "persistence")
    ]
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    if pairs:
        out["evaluation"] = all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) for a, b in pairs)
    return out


# ----------------------------------------------------------------- printing
def print_summary(console: Console, s: dict[str, Any]) -> None:
    stream = s.get("stream") or {}
    console.print(
        f"\n[bold]iotcast demo: {s['outcome']}[/] in {s['elapsed_seconds']} s", highlight=False
    )
    if s.get("message"):
        console.print(s["message"], highlight=False)
    if stream:
        console.print(
            f"generated {s.get('generated')}  replayed {s.get('replayed')}  "
            f"forwarded {stream.get('forwarded')}  dead-lettered {stream.get('dead_lettered')}  "
            f"learned {stream.get('learned')}  duplicates {stream.get('duplicates')}  "
            f"late {stream.get('late')}  glitches {stream.get('glitches')}"
            + (f"  no target {stream['no_target']}" if stream.get("no_target") else ""),
            highlight=False,
        )
    if stream.get("fleet_error"):
        console.print(_fleet_table(stream["fleet_error"], stream.get("devices_held")))
    devices = s.get("devices") or {}
    if devices:
        console.print(_devices_table(s, devices))
    if s.get("forecasts"):
        console.print(_forecasts_table(s["forecasts"]))
    agree = s.get("agreement") or {}
    checks = "  ".join(
        f"{what}: {'agree' if ok else 'DISAGREE' if ok is False else 'not checked'}"
        for what, ok in agree.items()
    )
    console.print(f"figures vs {checks}", highlight=False)
    console.print(
        f"evaluation report:  {s['report']}\n"
        f"model checkpoints:  {s['checkpoints_s3']} (gone with moto; copied to {s['checkpoints_dir']})\n"
        f"Prometheus data:    {s['prometheus_data']}\n"
        f"logs:               {s['logs']}\n"
        f"summary:            {Path(s['out']) / 'summary.json'}\n"
        f"while it ran:       Prometheus {s['urls']['prometheus']}, bridge {s['urls']['bridge_metrics']}, "
        f"processors {' '.join(s['urls']['processor_metrics'])}",
        highlight=False,
    )


def _fleet_table(rows: list[dict[str, Any]], devices: int | None) -> Table:
    """The fleet's prequential MAE per horizon, served against persistence (80 cols)."""
    table = Table(
        title=f"the fleet ({devices if devices is not None else '?'} devices): prequential MAE "
        "of every scored prediction, °C",
        title_justify="left", show_edge=False,
    )  # fmt: skip
    for column in ("horizon", "scored", "served", "persist.", "vs pers.", "worst device", "ratio"):
        table.add_column(column, no_wrap=True)
    for r in rows:
        p, served = r.get("persistence_mae"), r.get("served_mae")
        gain = "-" if not p or served is None else f"{100 * (p - served) / p:+.1f}%"
        ratio = r.get("worst_ratio")
        table.add_row(
            f"{r['horizon']} s", str(r.get("scored", 0)), _fmt(served), _fmt(p), gain,
            Text(r.get("worst_device") or "-"), "-" if ratio is None else f"{ratio:.2f}",
        )  # fmt: skip
    return table


def _devices_table(s: dict[str, Any], devices: dict[str, dict[str, Any]]) -> Table:
    """Per watched device: readings learned and checkpointed, the champion at ``--horizon``
    (80 cols)."""
    h = s["horizon"]
    table = Table(
        title=f"watched devices (horizon {'0: the nowcast' if str(h) == '0' else f'{h} s'}; "
        "prequential MAE, °C)",
        title_justify="left", show_edge=False,
    )  # fmt: skip
    for column in ("device", "learned", "ckpt", "champion", "MAE", s["baseline"][:11]):
        table.add_column(column, no_wrap=True)
    manifests = (s.get("checkpoints") or {}).get("devices") or {}
    for device, d in devices.items():
        table.add_row(
            Text(device), str(d["learned"]), str((manifests.get(device) or {}).get("samples", "-")),
            (d["champion"] or "-")[:14], _fmt(d["champion_mae"]), _fmt(d["baseline_mae"]),
        )  # fmt: skip
    return table


def _forecasts_table(rows: list[dict[str, Any]]) -> Table:
    """The forecasts: the served one against the baselines, per device and horizon (80 cols)."""
    table = Table(
        title="watched devices' forecasts: prequential MAE, °C (vs pers.: + = served better)",
        title_justify="left", show_edge=False,
    )  # fmt: skip
    for column in ("device", "horizon", "served", "persist.", "r.mean", "seas.", "vs pers."):
        table.add_column(column, no_wrap=True)
    for r in rows:
        p = r.get("persistence")
        gain = "-" if not p or r.get("served") is None else f"{100 * (p - r['served']) / p:+.1f}%"
        table.add_row(
            Text(r["device"]), f"{r['horizon']} s", _fmt(r.get("served")), _fmt(p),
            _fmt(r.get("rolling_mean")), _fmt(r.get("seasonal_naive")), gain,
        )  # fmt: skip
    return table


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"

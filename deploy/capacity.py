"""Size an iotcast fleet on AWS from this project's benchmark figures and public prices.

Reads ``deploy/capacity-inputs.json``: the measured figures (each with the command
that measured it, the date and the machine's load), the prices (each with its source
and date) and the assumptions (one reading per 5 s, target utilisations, checkpoint
interval...).  For each fleet size it prints shards, processor tasks (vCPU, memory),
bridge tasks or IoT Core, S3 checkpoint traffic, DynamoDB capacity and a monthly cost.
Rerun it when the benchmarks change (update the JSON from their output)::

    .venv/bin/python deploy/capacity.py                       # the table of docs/capacity.md
    .venv/bin/python deploy/capacity.py --seconds-between-readings 60 --iot-basic-ingest
    .venv/bin/python deploy/capacity.py --layout objects      # checkpoints before issue 26
    .venv/bin/python deploy/capacity.py --json                # every figure, machine-readable

**Issue 25's figures plug in here** (assumptions, or the flags of the same names):
``readings_per_message`` (readings a device message carries: 1 = one reading per MQTT
or IoT Core message), ``records_per_reading`` (telemetry Kinesis records per reading on
the bridge path: 1 = one reading per record, 1/k = records packing k readings; through
an IoT Core rule a message is one record) and ``prediction_records_per_reading``.

>>> plan = size(1000, load_inputs())
>>> plan["kinesis"]["telemetry_shards"] >= 1, plan["processor"]["tasks"] >= 1
(True, True)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

__all__ = ["FARGATE_SIZES", "load_inputs", "size"]

INPUTS = Path(__file__).resolve().parent / "capacity-inputs.json"
HOURS_PER_MONTH = 730
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
MIB = 1024 * 1024
GIB = 1024 * MIB

# Fargate task sizes (vCPU -> allowed memory GiB), Linux.
FARGATE_SIZES: list[tuple[float, list[float]]] = [
    (0.25, [0.5, 1, 2]),
    (0.5, [1, 2, 3, 4]),
    (1, [2, 3, 4, 5, 6, 7, 8]),
    (2, [float(g) for g in range(4, 17)]),
    (4, [float(g) for g in range(8, 31)]),
    (8, [float(g) for g in range(16, 61, 4)]),
    (16, [float(g) for g in range(32, 121, 8)]),
]


def load_inputs(path: Path = INPUTS) -> dict[str, Any]:
    """The inputs file as ``{section: {name: value}}`` (the sources stay in the file)."""
    raw = json.loads(path.read_text())
    return {
        section: {
            k: (v["value"] if isinstance(v, dict) and "value" in v else v) for k, v in items.items()
        }
        for section, items in raw.items()
        if isinstance(items, dict)
    }


def _fargate_memory(vcpu: float, need_gib: float) -> float | None:
    for cpu, sizes in FARGATE_SIZES:
        if cpu == vcpu:
            return next((g for g in sizes if g >= need_gib), None)
    raise ValueError(f"no Fargate size with {vcpu} vCPU")


def size(devices: int, inputs: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """Every figure of one fleet (see the module docstring); ``overrides`` replace assumptions."""
    m, p, a = inputs["measured"], inputs["prices"], {**inputs["assumptions"], **overrides}
    rate = devices / a["seconds_between_readings"]  # readings/s
    ingest = _ingest(devices, rate, m, p, a)
    records, record_bytes = _records(rate, ingest["chosen"], m, a)
    every, active = _checkpoint_cadence(devices, records, record_bytes, a)
    processor = _processors(devices, rate, every, active, m, a)
    kinesis = _kinesis(records, record_bytes, rate, processor["tasks"], a)
    shards = kinesis["telemetry_shards"]
    s3 = _s3(devices, shards, every, active, m, a)
    dynamodb = _dynamodb(shards, processor["tasks"], every, a)
    month = _month(rate, kinesis, processor, s3, dynamodb, ingest, p)
    retrain = _retrain(devices, m, p, a)
    month["retrain_job"] = retrain["month_usd"]
    return {
        "devices": devices,
        "readings_per_second": rate,
        "kinesis": kinesis,
        "processor": processor,
        "ingest": ingest,
        "s3": s3,
        "dynamodb": dynamodb,
        "retrain": retrain,
        "month_usd": {k: round(v, 2) for k, v in month.items()},
        "month_usd_total": round(sum(month.values()), 2),
    }


def _forecasts_per_device_week(seconds_between_readings: float) -> float:
    """Forecasts (the retrain job's examples) a device makes in a week at horizons 60, 900 and
    3600 s, on their grids of h/60 s, at most one per reading per horizon.

    >>> _forecasts_per_device_week(5), _forecasts_per_device_week(60)
    (171360.0, 30240.0)
    """
    week = 7 * 86_400.0
    return sum(week / max(seconds_between_readings, h / 60) for h in (60, 900, 3600))


def _retrain(
    devices: int, m: dict[str, Any], p: dict[str, Any], a: dict[str, Any]
) -> dict[str, float]:
    """The batch expert's retrain job (issue 28): every ``retrain_every_days`` on the last
    ``retrain_window_days`` of every device, at the CPU measured per device-week of 5-second
    readings, scaled by the examples a device makes at the assumed cadence; on Fargate
    (1 vCPU, 8 GiB while it runs)."""
    measured = m.get("retrain_cpu_seconds_per_device_week", 0.0)
    per_week = measured * (
        _forecasts_per_device_week(a["seconds_between_readings"]) / _forecasts_per_device_week(5)
    )
    every = a.get("retrain_every_days", 7)
    window = a.get("retrain_window_days", 28)
    cpu_s = devices * window / 7.0 * per_week
    runs = 30.4 / every if every else 0.0
    hours = cpu_s / 3600.0 * runs
    usd = hours * (p["fargate_vcpu_hour"] + 8 * p["fargate_gib_hour"])
    return {
        "cpu_seconds_per_run": cpu_s,
        "runs_per_month": runs,
        "vcpu_hours_month": hours,
        "month_usd": usd,
    }


def _shard_rate(record_bytes: float, a: dict[str, Any]) -> float:
    """Records/s a shard takes of records this size (1,000 records or 1 MiB a second), at target."""
    return min(1000.0, MIB / record_bytes) * a["kinesis_shard_utilisation"]


def _records(rate: float, ingest: str, m: dict[str, Any], a: dict[str, Any]) -> tuple[float, float]:
    """(telemetry records/s, bytes a record): the bridge packs ``1 / records_per_reading``
    readings a record (issue 25); an IoT Core rule writes one record per message."""
    per_record = 1 / a["records_per_reading"] if ingest == "bridge" else a["readings_per_message"]
    return rate / per_record, m["record_bytes"] * per_record


def _checkpoint_cadence(
    devices: int, records: float, record_bytes: float, a: dict[str, Any]
) -> tuple[float, float]:
    """(seconds between checkpoints, devices with a reading within one such interval)."""
    # A shard checkpoints every checkpoint_seconds or checkpoint_records of its records,
    # whichever comes first; shards are sized in _kinesis, from the same rate.
    shard_rate = _shard_rate(record_bytes, a)
    every = min(a["checkpoint_seconds"], a["checkpoint_records"] / min(records, shard_rate))
    rate = devices / a["seconds_between_readings"]
    return every, min(devices, rate * every)


def _processors(
    devices: int, rate: float, every: float, active: float, m: dict[str, Any], a: dict[str, Any]
) -> dict[str, Any]:
    """Processor tasks, their size, and whether CPU or memory decides their number."""
    # the template's processors run --batch-expert: the batch models' forecasts and shadow
    cpu_per_reading = m["processor_cpu_seconds_per_reading"] * m.get(
        "processor_batch_expert_cpu_factor", 1.0
    )
    # Reading, learning and predicting, plus pickling every changed device at each checkpoint
    # and writing it: into the shard's bundle (zlib, sha256, its record: the CPU of the
    # PUTs is per shard, not per device), or, before bundles, 2 PUTs of its own.
    write = (
        m["checkpoint_bundle_cpu_seconds_per_device"]
        if a["layout"] == "bundle"
        else m["checkpoint_put_cpu_seconds_per_device"]
    )
    per_device = m["checkpoint_cpu_seconds_per_device"] + write
    busy = rate * cpu_per_reading + active * per_device / every
    cores = busy / a["processor_cpu_utilisation"]
    # The processor is one Python event loop: one busy core per task, whatever the vCPU.
    vcpu = a["processor_task_vcpu"]
    tasks_cpu = math.ceil(cores / min(vcpu, 1.0)) if cores else 1
    mem_device = m["device_memory_bytes"]
    base = m["process_base_rss_bytes"]
    max_gib = FARGATE_SIZES[[c for c, _ in FARGATE_SIZES].index(vcpu)][1][-1]
    per_task_devices_mem = int(
        (max_gib * GIB * a["processor_memory_utilisation"] - base) // mem_device
    )
    per_task_devices = max(1, min(per_task_devices_mem, a["max_devices_per_process"]))
    tasks_mem = math.ceil(devices / per_task_devices)
    tasks = max(tasks_cpu, tasks_mem, a["min_processor_tasks"])
    devices_per_task = math.ceil(devices / tasks)
    need_gib = (base + devices_per_task * mem_device) / a["processor_memory_utilisation"] / GIB
    return {
        "tasks": tasks,
        "vcpu": vcpu,
        "memory_gib": _fargate_memory(vcpu, need_gib) or max_gib,
        "devices_per_task": devices_per_task,
        "busy_cores": busy,
        "tasks_for_cpu": tasks_cpu,
        "tasks_for_memory": tasks_mem,
        "memory_needed_gib": round(need_gib, 2),
    }


def _kinesis(
    records: float, record_bytes: float, rate: float, tasks: int, a: dict[str, Any]
) -> dict[str, Any]:
    """Telemetry and predictions shards, and PUT payload units (25 KB each) a second."""
    # A task needs a shard of its own.
    shards = max(math.ceil(records / _shard_rate(record_bytes, a)), tasks)
    predictions_rate = rate * a["prediction_records_per_reading"]
    pred_shards = max(1, math.ceil(predictions_rate / _shard_rate(a["prediction_record_bytes"], a)))
    units = records * math.ceil(record_bytes / 25_000) + predictions_rate * math.ceil(
        a["prediction_record_bytes"] / 25_000
    )
    return {
        "telemetry_shards": shards,
        "telemetry_records_per_second": records,
        "predictions_shards": pred_shards,
        "prediction_records_per_second": predictions_rate,
        "put_payload_units_per_second": units,
    }


def _ingest(
    devices: int, rate: float, m: dict[str, Any], p: dict[str, Any], a: dict[str, Any]
) -> dict[str, Any]:
    """Bridge tasks or IoT Core, whichever fits, with the monthly cost of each."""
    bridge_busy = rate * m["bridge_cpu_seconds_per_reading"]
    bridge_cores = bridge_busy / a["bridge_cpu_utilisation"]
    bridge_capacity = m["bridge_readings_per_second"] * a["bridge_cpu_utilisation"]
    bridge_fits = rate <= bridge_capacity  # one bridge per MQTT client id (no shared subscription)
    bridge_tasks = max(1, math.ceil(bridge_cores / a["bridge_task_vcpu"]))
    bridge_month = (
        bridge_tasks
        * HOURS_PER_MONTH
        * (
            a["bridge_task_vcpu"] * p["fargate_vcpu_hour"]
            + a["bridge_task_gib"] * p["fargate_gib_hour"]
        )
    )
    # Basic Ingest ($aws/rules/<rule>/... topics) is not charged for messaging; the rule
    # and its Kinesis action are, once per message (a message may carry several readings).
    messaging = 0.0 if a["iot_basic_ingest"] else p["iot_million_messages"]
    messages = rate / a["readings_per_message"]
    iot_month = (
        messages * SECONDS_PER_MONTH / 1e6 * (messaging + 2 * p["iot_million_rules_or_actions"])
        + devices * HOURS_PER_MONTH * 60 / 1e6 * p["iot_million_connection_minutes"]
    )
    chosen = "bridge" if bridge_fits and devices <= a["bridge_up_to_devices"] else "iot_core"
    return {
        "chosen": chosen,
        "bridge_tasks": bridge_tasks if chosen == "bridge" else 0,
        "bridge_busy_cores": bridge_busy,
        "one_bridge_keeps_up": bridge_fits,
        "bridge_month_usd": bridge_month,
        "iot_core_month_usd": iot_month,
        "messages_per_second": messages,
    }


def _s3(
    devices: int, shards: int, every: float, active: float, m: dict[str, Any], a: dict[str, Any]
) -> dict[str, Any]:
    """Checkpoint writes, upload bandwidth and storage (docs/capacity.md says how)."""
    versions_kept = a["model_versions_kept"]
    manifest_bytes = devices * m["manifest_entry_bytes"]  # every shard's, each checkpoint
    if a["layout"] == "bundle":
        # Per shard and checkpoint: its bundle (one PUT, or a multipart upload: create,
        # one part per 8 MiB, complete), its manifest and its events (and dead letters).
        stored = m["checkpoint_stored_bytes_per_device"]
        bundle = active / shards * stored
        parts = math.ceil(bundle / (8 * MIB)) if bundle > 8 * MIB else 0
        writes = (2 + parts if parts else 1) + 1 + a["checkpoint_extra_puts"]
        puts = shards * writes / every
        # iotcast models prune, daily: a LIST per 1,000 objects, a DeleteObjects per 1,000.
        bundles_a_day = shards * 86_400 / every
        puts += 2 * math.ceil(bundles_a_day / 1000) / 86_400
        model_bytes_s = active * stored / every
        # Pruned bundles stay as noncurrent versions for the models/ rule's days.
        noncurrent = model_bytes_s * 86_400 * a["noncurrent_days_models"]
    else:
        # Before issue 26: per changed device its artifact and the manifest beside it.
        stored, parts, writes = m["checkpoint_bytes_per_device"], 0, 0
        puts = (2 * active + shards * (1 + a["checkpoint_extra_puts"])) / every
        model_bytes_s = active * stored / every
        noncurrent = 0.0  # nothing deleted them
    manifest_bytes_s = manifest_bytes / every
    return {
        "checkpoint_seconds_effective": round(every, 1),
        "writes_per_shard_checkpoint": writes,
        "bundle_parts": parts,
        "puts_per_second": puts,
        "upload_mib_per_second": (model_bytes_s + manifest_bytes_s) / MIB,
        "storage_gib_kept": (devices * stored * versions_kept + manifest_bytes) / GIB,
        "storage_gib_noncurrent": (noncurrent + manifest_bytes_s * 86_400 * a["noncurrent_days"])
        / GIB,
        # The bucket's growth if nothing is pruned.
        "storage_gib_added_per_month_unpruned": model_bytes_s * SECONDS_PER_MONTH / GIB,
    }


def _dynamodb(shards: int, tasks: int, every: float, a: dict[str, Any]) -> dict[str, float]:
    """Lease table write and read units a second: heartbeats, checkpoints, presence scans."""
    heartbeat = a["session_timeout_seconds"] / 4
    wru_per_s = shards / heartbeat + shards / every + tasks / heartbeat
    # presence scan (whole table, ~200 B an item, consistent: 1 RRU per 4 KB) + owner checks
    scan_rru = max(1, math.ceil((shards + tasks) * 200 / 4096))
    rru_per_s = tasks * scan_rru / heartbeat + shards / every + shards / heartbeat
    return {"wru_per_second": wru_per_s, "rru_per_second": rru_per_s}


def _month(
    rate: float,
    kinesis: dict[str, Any],
    processor: dict[str, Any],
    s3: dict[str, Any],
    dynamodb: dict[str, float],
    ingest: dict[str, Any],
    p: dict[str, Any],
) -> dict[str, float]:
    """Dollars a month, by item (unrounded)."""
    shards = kinesis["telemetry_shards"] + kinesis["predictions_shards"]
    vcpu, task_gib = processor["vcpu"], processor["memory_gib"]
    month = {}
    month["kinesis_shards"] = shards * HOURS_PER_MONTH * p["kinesis_shard_hour"]
    month["kinesis_put_units"] = (
        kinesis["put_payload_units_per_second"]
        * SECONDS_PER_MONTH
        / 1e6
        * p["kinesis_million_put_payload_units"]
    )
    month["fargate_processors"] = (
        processor["tasks"]
        * HOURS_PER_MONTH
        * (vcpu * p["fargate_vcpu_hour"] + task_gib * p["fargate_gib_hour"])
    )
    month["s3_puts"] = s3["puts_per_second"] * SECONDS_PER_MONTH / 1000 * p["s3_thousand_puts"]
    month["s3_storage"] = (s3["storage_gib_kept"] + s3["storage_gib_noncurrent"]) * p[
        "s3_gib_month"
    ]
    month["dynamodb"] = (
        dynamodb["wru_per_second"] * SECONDS_PER_MONTH / 1e6 * p["dynamodb_million_wru"]
        + dynamodb["rru_per_second"] * SECONDS_PER_MONTH / 1e6 * p["dynamodb_million_rru"]
    )
    if ingest["chosen"] == "bridge":
        month["ingest_bridge"] = ingest["bridge_month_usd"]
    else:
        month["ingest_iot_core"] = ingest["iot_core_month_usd"]
    return month


def _table(plans: list[dict[str, Any]]) -> str:
    def row(label: str, fn: Any) -> str:
        return f"| {label} | " + " | ".join(fn(pl) for pl in plans) + " |"

    head = "| | " + " | ".join(f"{pl['devices']:,} devices" for pl in plans) + " |"
    lines = [
        head,
        "|---|" + "---:|" * len(plans),
        row("readings/s", lambda pl: f"{pl['readings_per_second']:,.0f}"),
        row("telemetry shards", lambda pl: str(pl["kinesis"]["telemetry_shards"])),
        row("predictions shards", lambda pl: str(pl["kinesis"]["predictions_shards"])),
        row(
            "processor tasks (vCPU / GiB each)",
            lambda pl: (
                f"{pl['processor']['tasks']} ({pl['processor']['vcpu']:g} / {pl['processor']['memory_gib']:g})"
            ),
        ),
        row("busy processor cores", lambda pl: f"{pl['processor']['busy_cores']:.2f}"),
        row(
            "tasks for CPU / for memory",
            lambda pl: (
                f"{pl['processor']['tasks_for_cpu']} / {pl['processor']['tasks_for_memory']}"
            ),
        ),
        row(
            "ingest",
            lambda pl: (
                f"{pl['ingest']['bridge_tasks']} bridge"
                if pl["ingest"]["chosen"] == "bridge"
                else "IoT Core rule"
            ),
        ),
        row(
            "Kinesis telemetry records/s",
            lambda pl: f"{pl['kinesis']['telemetry_records_per_second']:,.0f}",
        ),
        row(
            "S3 writes per shard checkpoint (parts)",
            lambda pl: (
                f"{pl['s3']['writes_per_shard_checkpoint']} ({pl['s3']['bundle_parts']})"
                if pl["s3"]["writes_per_shard_checkpoint"]
                else "2 per device + 2"
            ),
        ),
        row(
            "retrain job CPU-hours per run (weekly)",
            lambda pl: f"{pl['retrain']['cpu_seconds_per_run'] / 3600:,.1f}",
        ),
        row("S3 PUT/s (checkpoints)", lambda pl: f"{pl['s3']['puts_per_second']:,.1f}"),
        row("S3 upload MiB/s", lambda pl: f"{pl['s3']['upload_mib_per_second']:,.1f}"),
        row("S3 GiB kept (versions kept)", lambda pl: f"{pl['s3']['storage_gib_kept']:,.0f}"),
        row(
            "S3 GiB noncurrent (versioning)",
            lambda pl: f"{pl['s3']['storage_gib_noncurrent']:,.0f}",
        ),
        row(
            "S3 TiB added a month if never pruned",
            lambda pl: f"{pl['s3']['storage_gib_added_per_month_unpruned'] / 1024:,.0f}",
        ),
        row(
            "DynamoDB WRU/s / RRU/s",
            lambda pl: (
                f"{pl['dynamodb']['wru_per_second']:.1f} / {pl['dynamodb']['rru_per_second']:.1f}"
            ),
        ),
    ]
    keys = sorted({k for pl in plans for k in pl["month_usd"]})
    for k in keys:
        lines.append(row(f"$/month {k}", lambda pl, k=k: f"{pl['month_usd'].get(k, 0):,.0f}"))
    lines.append(row("**$/month total**", lambda pl: f"**{pl['month_usd_total']:,.0f}**"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=Path, default=INPUTS)
    parser.add_argument(
        "--devices", default="1000,10000,100000,1000000", help="comma-separated fleet sizes"
    )
    parser.add_argument("--checkpoint-seconds", type=float, help="override the assumption")
    parser.add_argument("--seconds-between-readings", type=float, help="override the assumption")
    parser.add_argument(
        "--readings-per-message", type=float, help="issue 25: readings a device message carries"
    )
    parser.add_argument(
        "--records-per-reading", type=float, help="issue 25: Kinesis records per reading (bridge)"
    )
    parser.add_argument(
        "--prediction-records-per-reading", type=float, help="issue 25: prediction records"
    )
    parser.add_argument(
        "--layout",
        choices=("bundle", "objects"),
        help="checkpoints as one bundle per shard (this code) or 2 objects per device (before)",
    )
    parser.add_argument(
        "--iot-basic-ingest", action="store_true", help="devices publish to IoT Core Basic Ingest"
    )
    parser.add_argument("--json", action="store_true", help="every figure as JSON")
    args = parser.parse_args(argv)
    inputs = load_inputs(args.inputs)
    overrides = {}
    for name in (
        "checkpoint_seconds",
        "seconds_between_readings",
        "readings_per_message",
        "records_per_reading",
        "prediction_records_per_reading",
        "layout",
    ):
        if getattr(args, name):
            overrides[name] = getattr(args, name)
    if args.iot_basic_ingest:
        overrides["iot_basic_ingest"] = True
    plans = [size(int(d), inputs, **overrides) for d in args.devices.split(",")]
    if args.json:
        print(json.dumps(plans, indent=2))
        return 0
    raw = json.loads(args.inputs.read_text())
    a = {**inputs["assumptions"], **overrides}
    print(
        f"inputs: {args.inputs.name}; prices {raw['prices_region']} as of {raw['prices_date']}; "
        f"one reading per {a['seconds_between_readings']:g} s per device, "
        f"{a['readings_per_message']:g} readings a message, {a['records_per_reading']:g} records "
        f"a reading (bridge), checkpoints every {a['checkpoint_seconds']:g} s as "
        f"{a['layout']}s, IoT Core Basic Ingest {'on' if a['iot_basic_ingest'] else 'off'}"
    )
    print(_table(plans))
    return 0


if __name__ == "__main__":
    sys.exit(main())

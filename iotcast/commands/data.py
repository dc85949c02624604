"""Load or generate telemetry files in the public dataset's CSV format.

``iotcast data generate`` writes a calibrated synthetic week (three devices
modelled on the real ones, or more with ``--devices``); ``iotcast data load``
reads a file (the real ``iot_telemetry_data.csv`` or a generated one) and
reports rows, per-device counts, the time span and the bad rows with reasons.

Examples::

    iotcast data generate --out week.csv --days 7 --seed 1
    iotcast data generate --out mixed.csv --devices 6 --sensors all,temp+humidity,temp \\
        --sensor-dies 0:humidity@3.5
    iotcast data load --csv week.csv --json

>>> import argparse
>>> p = argparse.ArgumentParser(); add_arguments(p)
>>> p.parse_args(["generate", "--out", "w.csv", "--seed", "3"]).seed
3
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from iotcast.settings import Settings
from telemetry.csvfile import BadRows, CsvFormatError, read_csv, write_csv
from telemetry.generate import DAY, SENSORS, expected_rows, generate, profiles_for

__all__ = ["HELP", "add_arguments", "run", "load_report"]

HELP = "generate a synthetic week, or load and check a telemetry CSV file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="<load|generate>", required=True)
    gen = sub.add_parser(
        "generate",
        help="write a calibrated synthetic telemetry file in the public CSV format",
        description="Write a calibrated synthetic telemetry file (see telemetry/generate.py "
        "for the data model). Example: iotcast data generate --out week.csv --days 7 --seed 1",
    )
    gen.add_argument("--out", required=True, metavar="FILE", help="CSV file to write")
    gen.add_argument("--days", type=float, default=7.0, help="days of data (default 7)")
    gen.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    gen.add_argument(
        "--devices", type=int, default=3, help="number of devices (default 3, the real ones)"
    )
    gen.add_argument(
        "--sensors",
        type=_sensor_sets,
        default=(),
        metavar="SETS",
        help="sensor sets the devices take in turn: comma-separated, sensors of a set joined "
        "with '+', 'all' for the seven (e.g. all,temp+humidity,temp; default: all)",
    )
    gen.add_argument(
        "--sensor-dies",
        type=_sensor_death,
        action="append",
        default=[],
        metavar="DEVICE:SENSOR@DAYS",
        help="device DEVICE's (0-based) SENSOR stops for good DAYS days after the start "
        "(e.g. 1:humidity@3.5; repeatable)",
    )
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    load = sub.add_parser(
        "load",
        help="read a telemetry CSV file and report rows, devices, time span and bad rows",
        description="Read a file in the public format and report what it holds. "
        "Example: iotcast data load --csv iot_telemetry_data.csv --json",
    )
    load.add_argument("--csv", required=True, metavar="FILE", help="CSV file to read")
    load.add_argument("--json", action="store_true", help="print the report as JSON")
    load.add_argument("--quiet", action="store_true", help="no progress bar")


def _sensor_sets(text: str) -> tuple[tuple[str, ...], ...]:
    """``all,temp+humidity,temp`` -> the sensor sets (argparse type)."""
    sets = []
    for chosen in text.split(","):
        names = SENSORS if chosen.strip() == "all" else tuple(chosen.strip().split("+"))
        unknown = [n for n in names if n not in SENSORS]
        if unknown or not chosen.strip():
            raise argparse.ArgumentTypeError(
                f"{chosen!r}: a set is 'all' or sensors joined with '+' "
                f"({', '.join(SENSORS)}); not {', '.join(unknown) or 'empty'}"
            )
        sets.append(names)
    return tuple(sets)


def _sensor_death(text: str) -> tuple[int, str, float]:
    """``1:humidity@3.5`` -> (1, "humidity", 3.5 days in seconds) (argparse type)."""
    device, _, rest = text.partition(":")
    sensor, _, days = rest.partition("@")
    try:
        index, after = int(device), float(days) * DAY
    except ValueError:
        index, after = -1, -1.0
    if index < 0 or sensor not in SENSORS or not after >= 0.0:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected DEVICE:SENSOR@DAYS, e.g. 1:humidity@3.5 "
            f"(device index from 0, a sensor of {', '.join(SENSORS)}, days >= 0)"
        )
    return index, sensor, after


def _progress(console: Console, disabled: bool) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=disabled,
        transient=True,
    )


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def load_report(path: str, progress: Progress | None = None) -> dict[str, Any]:
    """Read ``path`` and return rows, per-device counts, time span and bad rows (a JSON-able dict)."""
    bad = BadRows(keep=20)
    per_device: Counter[str] = Counter()
    sensors: dict[str, set[str]] = {}
    fields: Counter[str] = Counter()  # "field reason": values dropped or clipped in kept rows
    first = last = None
    n = 0
    task = progress.add_task("reading", total=None) if progress else None
    for r in read_csv(path, on_bad_row=bad):
        n += 1
        per_device[r.device] += 1
        seen = sensors.get(r.device)
        if seen is None:
            seen = sensors[r.device] = set()
        seen.update(r.sensors())
        for field, reason in r.notes:
            fields[f"{field} {reason}"] += 1
        ts = r.ts
        if first is None or ts < first:
            first = ts
        if last is None or ts > last:
            last = ts
        if progress is not None and n % 20_000 == 0:
            progress.update(task, completed=n)  # type: ignore[arg-type]
    return {
        "file": path,
        "rows": n,
        "devices": dict(sorted(per_device.items())),
        "sensors": {d: sorted(v) for d, v in sorted(sensors.items())},
        "fields_dropped_or_clipped": dict(sorted(fields.items())),
        "first_ts": first,
        "last_ts": last,
        "first": _iso(first),
        "last": _iso(last),
        "span_seconds": None if first is None else last - first,  # type: ignore[operator]
        "bad_rows": bad.count,
        "bad_rows_by_reason": dict(sorted(bad.by_reason.items())),
        "bad_row_examples": [
            {"line": b.line, "reason": b.reason, "message": b.message} for b in bad.examples
        ],
    }


def _run_generate(args: argparse.Namespace, console: Console) -> int:
    try:  # the devices' sensors: checked before a file is written
        profiles_for(args.devices, args.seed, sensors=args.sensors, dies=args.sensor_dies)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    total = expected_rows(args.days, args.devices, args.seed)
    started = time.perf_counter()
    with _progress(console, args.quiet) as progress:
        task = progress.add_task(f"generating {args.out}", total=total)

        def counted():
            readings = generate(
                days=args.days,
                seed=args.seed,
                devices=args.devices,
                sensors=args.sensors,
                dies=args.sensor_dies,
            )
            for i, r in enumerate(readings):
                if i % 10_000 == 0:
                    progress.update(task, completed=i)
                yield r

        n = write_csv(args.out, counted())
    elapsed = time.perf_counter() - started
    console.print(
        f"wrote {n:,} readings of {args.devices} devices over {args.days:g} days to {args.out} "
        f"(seed {args.seed}) in {elapsed:.1f} s"
    )
    return 0


def _run_load(args: argparse.Namespace, console: Console) -> int:
    try:
        with _progress(console, args.quiet or args.json) as progress:
            report = load_report(args.csv, progress)
    except FileNotFoundError:
        console.print(f"[red]no such file: {args.csv}[/red]")
        return 2
    except CsvFormatError as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    if args.json:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    console.print(f"{report['file']}: {report['rows']:,} readings")
    for device, count in report["devices"].items():
        seen = ", ".join(report["sensors"].get(device, []))
        console.print(f"  {device}  {count:,}  sensors: {seen}", markup=False)
    if report["rows"]:
        hours = report["span_seconds"] / 3600
        console.print(f"  from {report['first']} to {report['last']} ({hours:.1f} h)")
    for what, count in report["fields_dropped_or_clipped"].items():
        console.print(f"  values {what.split()[1]} ({what.split()[0]}): {count:,}")
    console.print(f"  bad rows: {report['bad_rows']:,}")
    for reason, count in report["bad_rows_by_reason"].items():
        console.print(f"    {reason}: {count:,}")
    for b in report["bad_row_examples"]:
        console.print(f"    line {b['line']}: {b['reason']}: {b['message']}", markup=False)
    return 0


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Run ``iotcast data generate`` or ``iotcast data load``."""
    console = Console(stderr=True) if getattr(args, "json", False) else Console()
    if args.data_command == "generate":
        return _run_generate(args, console)
    return _run_load(args, console)

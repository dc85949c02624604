"""Publish readings from a CSV file over MQTT, as the devices would, paced by event time.

Each reading goes to ``iot/<device>/telemetry`` with the devices' JSON
payload, in file order, at ``--speed`` times real time (``0``: as fast as
possible).  With QoS 1 (the default) the count at the end is of messages the
broker acknowledged.  The publishing itself is :func:`telemetry.replay.replay`.

Example::

    iotcast replay --csv week.csv --speed 60 --limit 10000
    iotcast replay --csv week.csv --speed 0 --mqtt-url mqtts://user:pass@broker:8883 --mqtt-ca-file ca.pem

>>> import argparse
>>> p = argparse.ArgumentParser(); add_arguments(p)
>>> a = p.parse_args(["--csv", "week.csv", "--speed", "60", "--device", "b8:27:eb:bf:9d:51"])
>>> a.speed, a.qos, a.device
(60.0, 1, ['b8:27:eb:bf:9d:51'])
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console

from iotcast.settings import Settings
from telemetry.csvfile import BadRows, CsvFormatError, read_csv
from telemetry.replay import DEFAULT_WINDOW, ReplayError, replay

__all__ = ["HELP", "add_arguments", "run"]

HELP = "publish readings from a CSV file over MQTT, paced by event time"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--csv", required=True, metavar="FILE", help="file in the public CSV format"
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="times real time by event time; 0 = as fast as possible (default 1)",
    )
    parser.add_argument("--limit", type=int, help="stop after N readings")
    parser.add_argument(
        "--qos", type=int, choices=(0, 1, 2), default=1, help="MQTT QoS (default 1: acknowledged)"
    )
    parser.add_argument(
        "--device",
        "--devices",
        dest="device",
        action="append",
        metavar="ID[,ID...]",
        help="only these devices (repeatable or comma-separated; default: every device)",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=DEFAULT_WINDOW,
        help=f"most messages awaiting acknowledgement at once (default {DEFAULT_WINDOW})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _count_rows(path: str) -> int:
    n = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            n += block.count(b"\n")
    return max(0, n - 1)


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Run ``iotcast replay``."""
    console = Console(stderr=True)
    if not Path(args.csv).is_file():
        console.print(f"[red]no such file: {args.csv}[/red]")
        return 2
    devices = [d for arg in args.device or () for d in arg.split(",") if d] or None
    bad = BadRows()
    started = time.perf_counter()
    try:
        n = replay(
            settings.mqtt,
            read_csv(args.csv, on_bad_row=bad),
            speed=args.speed,
            qos=args.qos,
            limit=args.limit,
            progress=not args.quiet,
            devices=devices,
            window=args.window,
            total=None if devices else _count_rows(args.csv),
        )
    except (ReplayError, CsvFormatError) as exc:
        console.print(f"[red]iotcast replay: {exc}[/red]")
        return 1
    elapsed = time.perf_counter() - started
    what = "acknowledged by the broker" if args.qos else "written (QoS 0)"
    console.print(
        f"published {n:,} readings to {settings.mqtt.where} "
        f"({what}) in {elapsed:.1f} s, {n / max(elapsed, 1e-9):,.0f} msg/s"
    )
    if bad.count:
        console.print(f"skipped {bad.count:,} bad rows: {dict(bad.by_reason)}")
    return 0

"""How many Prometheus series one device costs, measured on a running processor.

Starts the moto server, puts a short generated stream of K devices into
Kinesis, runs ``iotcast process`` (default model set and horizons unless told
otherwise) until every reading is taken, scrapes its /metrics once and prints
the series per device, by metric, and the page size. Multiply by the device
label cap (``--device-label-cap``, default 1000) for a processor's worst case.

    .venv/bin/python bench/metrics_cardinality.py [--devices 3] [--days 0.05] [--models default]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import boto3
from prometheus_client.parser import text_string_to_metric_families

from iotcast.stack import ManagedProcess, free_port, start_moto
from telemetry.generate import generate
from telemetry.reading import encode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=3)
    ap.add_argument("--days", type=float, default=0.05)
    ap.add_argument("--models", default="default")
    ap.add_argument("--horizons", default=None, help="default: the task's (0,60,900,3600)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cardinality-"))
    moto = start_moto(work)
    try:
        kw = {
            "region_name": "us-east-1",
            "endpoint_url": moto.url,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
        kinesis = boto3.client("kinesis", **kw)
        kinesis.create_stream(StreamName="bench", ShardCount=1)
        kinesis.get_waiter("stream_exists").wait(StreamName="bench", WaiterConfig={"Delay": 0.2})
        readings = list(generate(days=args.days, seed=3, devices=args.devices))
        for i in range(0, len(readings), 500):
            kinesis.put_records(
                StreamName="bench",
                Records=[
                    {"Data": encode(r), "PartitionKey": r.device} for r in readings[i : i + 500]
                ],
            )
        port = free_port()
        argv = [
            str(Path(sys.executable).parent / "iotcast"),
            "process",
            "--endpoint-url",
            moto.url,
            "--stream",
            "bench",
            "--bucket",
            "bench-bucket",
            "--app",
            "bench",
            "--create-resources",
            "--metrics-port",
            str(port),
            "--models",
            args.models,
            "--log-level",
            "WARNING",
        ]
        if args.horizons:
            argv += ["--horizons", args.horizons]
        env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
        with ManagedProcess("processor", argv, port, work / "processor.log", env=env) as proc:
            proc.start(timeout=60)
            url = f"http://127.0.0.1:{port}/metrics"
            t0 = time.monotonic()
            while True:
                text = urllib.request.urlopen(url, timeout=5).read().decode()
                seen = sum(
                    s.value
                    for f in text_string_to_metric_families(text)
                    for s in f.samples
                    if s.name.startswith("iotcast_readings_")
                    and s.name.endswith("_total")
                    and "processed" not in s.name
                )
                if seen >= len(readings) or time.monotonic() - t0 > 600:
                    break
                time.sleep(1)
            time.sleep(2)  # one more figures refresh
            text = urllib.request.urlopen(url, timeout=5).read().decode()
        per_metric: Counter[str] = Counter()
        device_series = 0
        total = 0
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if not s.name.startswith("iotcast_"):
                    continue
                total += 1
                if "device" in s.labels:
                    device_series += 1
                    per_metric[family.name] += 1
        n = args.devices
        print(
            f"readings {len(readings)} of {n} devices, models={args.models}, "
            f"horizons={args.horizons or 'default'}; taken {int(seen)} in {time.monotonic() - t0:.0f}s"
        )
        print(
            f"iotcast_* series: {total} in all, {device_series} with a device label "
            f"= {device_series / n:.0f} per device; /metrics page {len(text) / 1024:.0f} KiB"
        )
        for name, count in per_metric.most_common():
            print(f"  {name:45s} {count / n:6.0f} per device")
        print(
            f"at the default label cap of 1000 devices: ~{device_series / n * 1000:,.0f} series per processor"
        )
    finally:
        moto.stop()


if __name__ == "__main__":
    main()

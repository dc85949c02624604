"""Kinesis records per reading in both streams, with the whole pipeline running.

Starts kinesalite (Kinesis), a moto server (S3, DynamoDB) and mosquitto
(:mod:`iotcast.stack`), a bridge in this process (packed records, its defaults) and
``iotcast process`` as a child (default models and horizons, ``--predictions
champion``); publishes a paced fleet (``--devices`` devices, one reading each per
``--interval`` s, for ``--seconds``: ``bench/bridge.py --publish-fleet`` in another
process), waits until the processor has judged every reading and its writer has
flushed, then counts the Kinesis records of the telemetry stream and of the
predictions stream (prediction and event records, packed: ``stream/output.py``) and
prints::

    records per reading: telemetry X predictions Y

with the load average beside (not a test; figures only).

    .venv/bin/python bench/predictions.py --devices 1000 --interval 5 --seconds 60
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.service import Bridge, BridgeOptions  # noqa: E402
from iotcast.cli import command_line, local_env  # noqa: E402
from iotcast.settings import Settings  # noqa: E402
from iotcast.stack import (  # noqa: E402
    ManagedProcess,
    free_port,
    port_in_use,
    start_kinesalite,
    start_mosquitto,
    start_moto,
)
from stream.records import decode_records  # noqa: E402
from tests import support  # noqa: E402

BRIDGE_BENCH = str(Path(__file__).with_name("bridge.py"))


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and line[len(name)] in "{ "
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--interval", type=float, default=5.0)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--shards", type=int, default=1, help="of the telemetry stream (default 1)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    n = int(args.devices * args.seconds / args.interval)
    with tempfile.TemporaryDirectory() as tmp:
        moto = start_moto(Path(tmp))
        kinesalite = start_kinesalite(Path(tmp) / "kinesalite", shard_limit=10_000)
        broker = start_mosquitto(Path(tmp) / "broker", persistence=False)
        processor = None
        try:
            settings = Settings.of(
                endpoint_url=moto.url,
                endpoints={"kinesis": kinesalite.url},
                mqtt_url=f"mqtt://127.0.0.1:{broker.port}",
                stream="bench-telemetry",
                predictions_stream="bench-predictions",
                bucket="bench",
                app="bench",
            )
            kinesis = settings.client("kinesis")
            for name, shards in ((settings.stream, args.shards), (settings.predictions_stream, 1)):
                kinesis.create_stream(StreamName=name, ShardCount=shards)
                kinesis.get_waiter("stream_exists").wait(
                    StreamName=name, WaiterConfig={"Delay": 0.2}
                )
            settings.client("s3").create_bucket(Bucket=settings.bucket)
            port = free_port()
            argv = command_line(
                settings, "process", "--metrics-port", str(port), "--workers", "1",
                "--predictions", "champion",
            )  # fmt: skip
            processor = ManagedProcess(
                "processor", argv, port, Path(tmp) / "processor.log", env=local_env(settings)
            ).start(ready=lambda: port_in_use(port), timeout=120)
            bridge = Bridge(settings.bridge_target(), BridgeOptions(client_id="bench-bridge"))
            bridge.start()
            print(
                f"{args.devices} devices, one reading each per {args.interval:g} s, for "
                f"{args.seconds:g} s: {n} readings; telemetry shards {args.shards}, predictions "
                f"shards 1; {os.getloadavg()[0]:.1f} load at the start",
                flush=True,
            )
            t0 = time.monotonic()
            subprocess.run(
                [sys.executable, BRIDGE_BENCH, "--publish-fleet", str(broker.port),
                 str(args.devices), str(args.interval), str(args.seconds)],
                check=True,
            )  # fmt: skip
            deadline = time.monotonic() + 300
            while metric(port, "iotcast_readings_processed_total") < n:
                if time.monotonic() > deadline:
                    raise SystemExit(
                        f"the processor judged {metric(port, 'iotcast_readings_processed_total')}"
                        f" of {n} readings in time"
                    )
                time.sleep(0.5)
            time.sleep(2.0)  # the writer's linger, and its PutRecords
            took = time.monotonic() - t0
            learned = metric(port, "iotcast_readings_learned_total")
            bridge.stop(10)
            telemetry = support.stream_records(settings, settings.stream)
            predictions = support.stream_records(settings, settings.predictions_stream)
            kinds: dict[str, int] = {}
            for data in predictions:
                for d in decode_records(data):
                    kinds[d["kind"]] = kinds.get(d["kind"], 0) + 1
            print(
                f"published {n}, learned {learned:.0f} in {took:.0f} s; telemetry "
                f"{len(telemetry)} Kinesis records; predictions {len(predictions)} Kinesis "
                f"records holding {kinds.get('prediction', 0)} prediction and "
                f"{kinds.get('event', 0)} event records"
            )
            print(
                f"records per reading: telemetry {len(telemetry) / n:.4f} predictions "
                f"{len(predictions) / n:.4f}   (load {os.getloadavg()[0]:.1f})"
            )
        finally:
            if processor is not None:
                processor.stop(30)
            for proc in (broker, kinesalite, moto):
                proc.stop()


if __name__ == "__main__":
    main()

"""Soak: the whole pipeline at a sustained publish rate, measured from outside.

The run, in four parts:

- the stack (``bench/soak_stack.py``): mosquitto, kinesalite (Kinesis) and a
  moto server (S3, DynamoDB), the real ``iotcast bridge`` (``--bridges N``: N of
  them on a shared subscription) and one ``iotcast process --workers N`` over a
  ``--shards`` stream, supervised as the demo's are;
- the load (``bench/soak_load.py``): ``--devices`` synthetic devices publish
  at ``--rate`` readings/s in total for ``--duration`` seconds;
- the accounting (``bench/soak_accounting.py``): /proc and /metrics sampled
  while it runs, the drain, then every published reading found or counted lost;
- the report (``bench/soak_report.py``): the figures and their printout.

Details of each part are in its module; in short:

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
* latency, two ways: (1) publish -> learned: the processors watch
  ``--watch`` devices spread over the fleet (``iotcast process --watch``: the
  only devices with per-device series); each poll reads a watched device's
  ``iotcast_last_reading_timestamp_seconds`` (its newest learned ``ts``) and
  ``iotcast_last_reading_received_timestamp_seconds`` (when it was learned)
  and joins them with the publisher's record (a sample of one reading per
  watched device per poll); (2) publish -> prediction emitted: the output
  stream ``iot-predictions`` is read after the run (within ``--read-seconds``;
  its event records are skipped) and each prediction's
  ``ApproximateArrivalTimestamp`` joined on (device, ts) with the publisher's
  record (the first record of a reading counts);
* RSS and CPU of each process (bridge, each processor worker and their
  supervisor, mosquitto, kinesalite, moto, this bench = the publisher) from
  /proc every ``--sample-every`` s; the RSS slope over the second half of the
  publishing phase (MB/min) and the RSS range over its last five minutes;
* backlog when the publisher stops (in the broker, the bridge's buffer,
  in Kinesis, MillisBehindLatest) and the time to drain it;
* readings lost: after a graceful stop (bridge, then processors), every
  published reading must be learned (the first ``samples`` readings of its
  device in the S3 shard manifests), or still in Kinesis after its shard
  manifest's sequence number, or still in the broker (read from the bridge's
  persistent session, each bridge's, once the bridges are stopped); what is in none of them
  is lost and counted by device.  Duplicates/late/glitches come from the
  processors' /metrics (the fleet's counts, by shard), dead letters from S3.
* CPU per reading of each process and the stream rate at which it would need
  one full core (a Python process does not go past one core).

Kinesis is kinesalite (moto's Kinesis costs O(records in the shard) per
record put and per GetRecords, so a long run on it measures moto).

Example (a short trial)::

    .venv/bin/python bench/soak.py --duration 60 --rate 300 --devices 200
    .venv/bin/python bench/soak.py --duration 60 --rate 300 --devices 200 --bridges 2

The soak of issue 14 (10 minutes, 1,000 devices, 4 shards, 2 workers), and the
70-minute one for the RSS plateau::

    .venv/bin/python bench/soak.py --rate 1000 --json /tmp/soak.json
    .venv/bin/python bench/soak.py --rate 300 --duration 4200 --json /tmp/soak-70.json

Exit status 0 when nothing was lost, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.soak_accounting import (  # noqa: E402
    Watch,
    account,
    drain,
    fetch,
    parse_metrics,
    read_predictions,
    total,
)
from bench.soak_load import Load  # noqa: E402
from bench.soak_report import summarize  # noqa: E402
from bench.soak_stack import SoakStack  # noqa: E402

__all__ = ["Soak", "main"]

ROOT = Path(__file__).resolve().parents[1]


class Soak:
    """One soak: the stack, the load, the watch; then the drain, the stop, the books."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.workdir or tempfile.mkdtemp(prefix="soak-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.notes: list[str] = []
        self.stack = SoakStack(args, self.work, self.say)
        self.load = Load(args, self.say)
        self.watch = Watch(args, self.stack, self.load, self.notes)
        self.t_stop_begin = 0.0  # wall
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

    def say(self, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def shards_owned(self, processor: Any) -> float:
        try:
            page = fetch(processor.url + "/metrics?name[]=iotcast_shard_owned")
        except OSError:
            return 0
        return total(parse_metrics(page), "iotcast_shard_owned")

    def stop_pipeline(self) -> dict[str, Any]:
        """SIGTERM the bridge (it flushes), then every processor at once (final checkpoints)."""
        self.t_stop_begin = time.time()
        final = self.watch.poll_once()  # the bridge's last figures
        self.say("stopping the bridges (SIGTERM), then the processors (final checkpoints)")
        codes: dict[str, Any] = dict(self.stack.stop_bridges())
        after = self.watch.poll_once()  # the processors' last figures, before they go
        final.update({k: v for k, v in after.items() if not k.startswith("bridge_")})
        stopped, seconds = self.stack.stop_processors(self.notes)
        codes.update(stopped)
        self.report["processor_stop_seconds"] = round(seconds, 1)
        self.say(f"stopped in {seconds:.1f} s: exit codes {codes}")
        return {"exit_codes": codes, "final_poll": final}

    def run(self) -> dict[str, Any]:
        a = self.args
        started = time.time()
        try:
            self.stack.start()
            self.stack.wait_for_shards(self.shards_owned, self.notes)
            self.watch.start()
            self.load.run(self.stack.get("mosquitto").port, self.watch.last_poll)
            self.report["publisher_waited_for_pubacks_s"] = self.load.waited
            drained = drain(self.watch, self.say)
            stopped = self.stop_pipeline()
            self.watch.stop()
            self.say("reading the S3 manifests, dead letters and what is left in Kinesis")
            broker = self.stack.get("mosquitto").port
            lost = account(
                self.stack.settings,
                self.load,
                broker,
                stopped["final_poll"],
                self.stack.bridge_client_ids(),
            )
            self.say(f"reading the predictions stream (up to {a.read_seconds:.0f} s)")
            preds = read_predictions(self.stack.settings, self.load, a.read_seconds)
        finally:
            self.watch.stop_sampling.set()
            self.stack.stop_all()
        self.report.update(
            elapsed_seconds=round(time.time() - started, 1),
            drain=drained,
            exit_codes=stopped["exit_codes"],
            accounting=lost,
        )
        summarize(self, preds)
        return self.report


# flag, type, default, what it is (the help adds the default)
NUMBERS = (
    ("--devices", int, 1000, "devices"),
    ("--rate", float, 2000, "readings/s in total"),
    ("--duration", float, 600, "seconds of publishing"),
    ("--shards", int, 4, "telemetry stream shards"),
    ("--workers", int, 2, "iotcast process --workers"),
    ("--bridges", int, 1, "iotcast bridge processes (2 or more: --bridge-id, shared subscription)"),
    ("--publishers", int, 2, "paho clients, one thread each"),
    ("--poll", float, 5, "seconds between /metrics polls"),
    ("--window", float, 30, "throughput window, s"),
    ("--warmup", float, 60, "seconds left out of min/p99 figures"),
    ("--sample-every", float, 15, "/proc sampling period, s"),
    ("--drain-timeout", float, 300, "wait at most this long for the backlog"),
    ("--stall", float, 90, "stop waiting after this long without progress"),
    ("--read-seconds", float, 240, "time budget to read iot-predictions"),
    ("--watch", int, 50, "devices watched, spread over the fleet (at most 50; 0: none)"),
    ("--balance-timeout", float, 90, "wait for every processor to own a shard"),
    ("--stop-grace", float, 180, "seconds a processor has after SIGTERM for its final checkpoint"),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )  # fmt: skip
    for flag, kind, default, what in NUMBERS:
        ap.add_argument(flag, type=kind, default=default, help=f"{what} (default {default})")
    ap.add_argument(
        "--bridge-arg",
        action="append",
        default=[],
        help="extra flag for iotcast bridge (repeatable, e.g. --bridge-arg=--lanes=4)",
    )
    ap.add_argument(
        "--processor-arg", action="append", default=[], help="extra flag for iotcast process"
    )
    ap.add_argument("--workdir", help="where logs go (default a new temporary directory, kept)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    soak = Soak(args)
    report = soak.run()
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
        print(f"figures written to {args.json}")
    acc = report["accounting"]
    return 0 if acc["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Run the whole local stack, replay a generated week through it, and show it working.

    iotcast demo                      # a day of 3 devices, as fast as the pipeline goes
    iotcast demo --days 7             # the week
    iotcast demo --speed 480          # the day paced at 480 times real time (3 minutes)
    iotcast demo --hold               # keep the stack up afterwards (Ctrl-C stops it)

It generates the readings (``--days``, ``--devices``, ``--seed``) and starts
their offline evaluation; on 127.0.0.1 it starts kinesalite (Kinesis), the
moto server (S3, DynamoDB), mosquitto and Prometheus (with the rule files of
monitoring/prometheus/rules), then the bridge and the processor (``--workers``
processes, two by default) as child processes; it replays the readings
through MQTT (``--speed``: times real time, 0 = as fast as possible, the
default), waits until the processors have accounted for every reading the
bridge forwarded and the evaluation is done, and stops every process it started,
cleanly (also on Ctrl-C or an error).  While it runs, a live view shows the
figures scraped from the parts' /metrics pages: the fleet's counts and error
per horizon, and the three showcased devices (the generator's real ones, which
the processors watch: ``iotcast process --watch``) one per row; the offline
evaluation is theirs.  At the end it prints where
the evaluation report, the model checkpoints and the Prometheus data are, the
final figures, and writes them to ``<out>/summary.json``.

It refuses to start, saying why, when a port it needs is taken (defaults:
mosquitto 1883, kinesalite 4567, moto 5000, Prometheus 9090, metrics 9101-9103; each has a
flag) or a component is missing (with how to install it).  Exit codes: 0 done,
1 failed or stalled (the message names the part and its log), 2 refused,
130 interrupted.

The parts: :mod:`iotcast.demo.stack` (ports, components, the stack's
processes), :mod:`iotcast.demo.run` (the run), :mod:`iotcast.demo.summary`
(the summary, its checks and its printing).

>>> import argparse
>>> p = argparse.ArgumentParser(); add_arguments(p)
>>> opts = options_from(p.parse_args(["--days", "0.25", "--processor-metrics-port", "9202"]))
>>> opts.days, opts.ports.processors, opts.evaluate
(0.25, (9202, 9203), True)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console

from iotcast.demo.run import DEFAULT_OUT, Demo, DemoFailed, Options
from iotcast.demo.stack import DemoRefused, Ports, check_components, check_ports
from iotcast.demo.summary import print_summary
from iotcast.settings import Settings
from iotcast.stack import ComponentMissing
from iotcast.supervisor import INTERRUPTS

__all__ = ["HELP", "add_arguments", "options_from", "run"]

HELP = "run the whole local stack, replay a generated week through it, and show it live"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("demo")
    g.add_argument(
        "--out",
        type=Path,
        default=Path(DEFAULT_OUT),
        help=f"output directory (default ./{DEFAULT_OUT})",
    )
    g.add_argument(
        "--days",
        type=float,
        default=1.0,
        help="days of readings to generate (default 1; 7 = the week)",
    )
    g.add_argument(
        "--devices",
        type=int,
        default=3,
        help="devices to generate (default 3); the first three are watched, shown and evaluated",
    )
    g.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    g.add_argument(
        "--speed",
        type=float,
        default=0.0,
        help="replay speed, times real time (default 0: as fast as the pipeline takes it)",
    )
    g.add_argument(
        "--horizon",
        default="0",
        help="horizon (seconds) the device rows show; 0 = nowcast (default)",
    )
    g.add_argument(
        "--baseline",
        default="persistence",
        help="model shown beside the champion (default persistence)",
    )
    g.add_argument(
        "--stall-timeout",
        type=float,
        default=60.0,
        help="fail when nothing moves for this many seconds (default 60)",
    )
    g.add_argument(
        "--evaluate-timeout",
        type=float,
        default=900.0,
        help="fail when the offline evaluation takes longer (default 900 s)",
    )
    g.add_argument(
        "--no-evaluate",
        action="store_true",
        help="skip the offline evaluation of the generated file",
    )
    g.add_argument(
        "--hold", action="store_true", help="keep the stack running after the replay, until Ctrl-C"
    )
    g.add_argument(
        "--json",
        action="store_true",
        help="print the summary (also in <out>/summary.json) as JSON on stdout; "
        "progress goes to stderr",
    )
    g.add_argument(
        "--no-live",
        action="store_true",
        help="print a progress line every few seconds instead of the live view",
    )
    g.add_argument(
        "--progress-every",
        type=float,
        default=5.0,
        help="seconds between progress lines without the live view (default 5)",
    )
    p = parser.add_argument_group("ports of the demo's stack on 127.0.0.1")
    for flag, default, what in (
        ("--mqtt-port", Ports.mqtt, "mosquitto"),
        ("--kinesis-port", Ports.kinesis, "kinesalite: Kinesis"),
        ("--moto-port", Ports.moto, "moto server: S3, DynamoDB"),
        ("--prometheus-port", Ports.prometheus, "Prometheus"),
        ("--bridge-metrics-port", Ports.bridge, "the bridge's /metrics"),
        (
            "--processor-metrics-port",
            Ports.processor,
            "the processor workers' /metrics: worker i on this port + i",
        ),
    ):
        p.add_argument(flag, type=int, default=default, help=f"{what} (default {default})")
    g.add_argument(
        "--workers",
        type=int,
        default=Ports.workers,
        help=f"processor workers (iotcast process --workers; default {Ports.workers})",
    )


def options_from(args: argparse.Namespace) -> Options:
    return Options(
        out=args.out,
        days=args.days,
        devices=args.devices,
        seed=args.seed,
        speed=args.speed,
        ports=Ports(
            mqtt=args.mqtt_port,
            kinesis=args.kinesis_port,
            moto=args.moto_port,
            prometheus=args.prometheus_port,
            bridge=args.bridge_metrics_port,
            processor=args.processor_metrics_port,
            workers=args.workers,
        ),
        stall_timeout=args.stall_timeout,
        evaluate_timeout=args.evaluate_timeout,
        horizon=str(args.horizon),
        baseline=args.baseline,
        hold=args.hold,
        evaluate=not args.no_evaluate,
        json=args.json,
        progress_every=args.progress_every,
        live=False if args.no_live else None,
    )


def run(settings: Settings, args: argparse.Namespace) -> int:
    opts = options_from(args)
    console = Console(stderr=opts.json)
    try:
        if opts.days <= 0 or opts.devices < 1 or opts.ports.workers < 1:
            raise DemoRefused("--days must be positive, --devices and --workers at least 1")
        check_components()
        check_ports(opts.ports)
    except (DemoRefused, ComponentMissing) as exc:
        print(f"iotcast demo: {exc}", file=sys.stderr)
        return 2
    demo = Demo(settings, opts, console)
    INTERRUPTS.install()
    outcome, message, code = "done", None, 0
    try:
        try:
            demo.run()
        except KeyboardInterrupt:
            outcome, message, code = "interrupted", "interrupted: stopped everything", 130
        except ImportError as exc:
            outcome, code = "failed", 1
            message = f"failed: a part of iotcast is not installed or not built yet: {exc}"
        except (DemoFailed, RuntimeError, OSError) as exc:
            outcome, message, code = "failed", f"failed: {exc}", 1
        except Exception as exc:  # a bug: reported with its traceback, the summary still written
            import traceback

            traceback.print_exc()
            outcome, message, code = "failed", f"failed: {type(exc).__name__}: {exc}", 1
        finally:
            demo.shutdown()
    finally:
        INTERRUPTS.restore()
    if demo.summary.get("still_running"):
        outcome, code = "failed", 1
        message = (message or "") + f"; still running: {', '.join(demo.summary['still_running'])}"
    summary = demo.finish(outcome, message)
    if opts.json:
        print(json.dumps(summary, indent=2, default=str))
    print_summary(console, summary)
    return code

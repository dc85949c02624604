"""Consume the telemetry stream, learn per-device models, export predictions and metrics.

The consumer group is ``--app``; several processes share the stream's shards
through leases in DynamoDB (table ``kinesis-checkpoints-<app>``) and hand
shards over fairly when one joins.  Models are checkpointed to S3 (manifest
first, then the DynamoDB sequence number), so a reading is learned exactly
once across crashes and restarts.  SIGTERM or Ctrl-C stops gracefully (final
checkpoint, leases released).

``--workers N`` (default: the cores available) runs N such processes on this
host under this one, sharing the stream through the same leases; worker
``i`` serves /metrics on ``--metrics-port + i``.  A worker that dies is
reported, the others stop with their final checkpoints and the command exits
1 (see :mod:`iotcast.workers`).

Example (local stack; creates the streams, bucket and lease table if missing;
two workers, /metrics on 9102 and 9103)::

    iotcast process --create-resources --workers 2 --metrics-port 9102 --checkpoint-seconds 10

Readings may carry any subset of the sensors: a device gets a model set and forecasts
with its first reading of the target (``temp``); readings
without it are counted (``iotcast_readings_no_target_total``), not learned.  Extra
numeric fields become features only when declared (``--extra-features pressure``).

/metrics holds fleet figures whose series do not grow with devices; the devices named
by ``--watch`` (at most 50) get per-device series, the ``--worst-k`` worst devices per
horizon a rotating gauge each, and every device's events go to S3, the log and the
predictions stream (``iotcast status --device D`` reads them).

>>> import argparse
>>> p = argparse.ArgumentParser(); add_arguments(p)
>>> p.parse_args(["--checkpoint-every", "500"]).checkpoint_every
500
>>> p.parse_args(["--workers", "2", "--workers", "1"]).workers
1
>>> p.parse_args(["--extra-features", "pressure,wind"]).extra_features
'pressure,wind'
>>> p.parse_args(["--watch", "d1,d2"]).watch, p.parse_args([]).worst_k
('d1,d2', 5)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from iotcast.settings import ConfigError, Settings
from iotcast.workers import WorkerPool, available_cores, check_ports_free, worker_argv, worker_ports

if TYPE_CHECKING:
    from online_models.catalog import Catalog

__all__ = ["HELP", "add_arguments", "create_resources", "run"]

HELP = "consume the telemetry stream: per-device online models, metrics, S3 checkpoints"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("processor")
    g.add_argument(
        "--create-resources",
        action="store_true",
        help="create the telemetry and predictions streams, the bucket and the lease table if missing",
    )
    g.add_argument(
        "--shards",
        type=int,
        default=1,
        help="shards of the telemetry stream if it is created (default 1)",
    )
    g.add_argument(
        "--checkpoint-every",
        type=int,
        default=10_000,
        metavar="N",
        help="checkpoint a shard every N readings (default 10000; a packed record's readings "
        "all count, and the checkpoint comes at the next record boundary; each checkpoint "
        "pickles the shard's changed devices on the hot path, see bench/processor.py)",
    )
    g.add_argument(
        "--checkpoint-seconds",
        type=float,
        default=10.0,
        metavar="T",
        help="... or every T seconds, whichever comes first (default 10)",
    )
    g.add_argument(
        "--max-devices",
        type=int,
        default=100_000,
        metavar="N",
        help="devices this process holds at most; readings of more are dead-lettered (default 100000)",
    )
    g.add_argument(
        "--session-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="a lease whose holder has not heartbeaten for S seconds is taken over (default 60)",
    )
    g.add_argument(
        "--heartbeat",
        type=float,
        default=None,
        metavar="S",
        help="lease and presence heartbeat (default: session timeout / 4)",
    )
    g.add_argument(
        "--predictions",
        choices=("champion", "all", "none"),
        default="champion",
        help="prediction records to the predictions stream: the champion's per horizon, "
        "every model's, or none (default champion)",
    )
    g.add_argument(
        "--models",
        default="default",
        help="models each device runs: default, all, or comma-separated names (default: default)",
    )
    g.add_argument(
        "--horizons",
        default=None,
        help="comma-separated horizons in seconds, 0 = nowcast (default: the task's 0,60,900,3600)",
    )
    g.add_argument(
        "--interval-levels",
        default=None,
        metavar="LEVELS",
        help="comma-separated coverage levels of the served forecast's prediction intervals, "
        "in the predictions records (default: 0.8,0.95)",
    )
    g.add_argument(
        "--extra-features",
        default=None,
        metavar="NAMES",
        help="comma-separated extra numeric fields of the readings (e.g. pressure,wind) the "
        "models use as features; other extra fields are ignored (env IOTCAST_EXTRA_FEATURES; "
        "default: none)",
    )
    g.add_argument(
        "--shard-refresh",
        type=float,
        default=10.0,
        metavar="S",
        help="how often the shard list is re-read to find split/merged shards (default 10)",
    )
    g.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="processor processes on this host, sharing the stream through the leases; "
        "worker i serves /metrics on --metrics-port + i (default: the cores available, "
        f"here {available_cores()})",
    )
    g.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # "i/N", set for a worker
    _add_batch_arguments(parser)
    m = parser.add_argument_group(
        "monitoring (the fleet's series do not grow with devices; docs/monitoring.md)"
    )
    m.add_argument(
        "--watch",
        default=None,
        metavar="DEVICES",
        help="comma-separated devices that get per-device series (predictions, errors, "
        "champion, last reading), at most 50 (env IOTCAST_WATCH; default: none). Every "
        "device's events (first reading, promotion, drift, reset, quiet) are in "
        "'iotcast status --device D' either way",
    )
    m.add_argument(
        "--worst-k",
        type=int,
        default=5,
        metavar="K",
        help="devices per horizon in the worst-now gauges (served error over persistence's; "
        "default 5, 0 for none)",
    )


def _add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    b = parser.add_argument_group(
        "batch expert (the models of 'iotcast retrain', weighed beside the online ones; "
        "docs/forecasting.md)"
    )
    b.add_argument(
        "--batch-expert",
        action="store_true",
        help="load the current batch version of 'iotcast models batch' live: a new version is "
        "scored in shadow first, then weighed with each device's champion into the forecast served if its "
        "shadow error is not worse than the version it replaces, else refused (an event). "
        "Adds the models batch_expert and batch_shadow to --models",
    )
    b.add_argument(
        "--batch-poll-seconds",
        type=float,
        default=30.0,
        metavar="S",
        help="how often the current batch version is read from S3 (default 30)",
    )
    b.add_argument(
        "--batch-shadow-seconds",
        type=float,
        default=86_400.0,
        metavar="S",
        help="stream time a new batch version spends in shadow at least (default 86400: a day)",
    )
    b.add_argument(
        "--batch-shadow-scores",
        type=int,
        default=1_000,
        metavar="N",
        help="scored forecasts per horizon a version in shadow needs at least, summed over "
        "the processors (default 1000)",
    )


def create_resources(settings: Settings, shards: int = 1) -> None:
    """Create (if missing) the telemetry and predictions streams and the bucket."""
    kinesis = settings.client("kinesis")
    for name, count in ((settings.stream, shards), (settings.predictions_stream, 1)):
        try:
            kinesis.create_stream(StreamName=name, ShardCount=count)
            log.info("created stream %s (%d shards)", name, count)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceInUseException":
                raise
        kinesis.get_waiter("stream_exists").wait(
            StreamName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 150}
        )
    s3 = settings.client("s3")
    try:
        s3.create_bucket(Bucket=settings.bucket)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise


def run(settings: Settings, args: argparse.Namespace) -> int:
    workers = available_cores() if args.workers is None else args.workers
    if workers < 1:
        raise ConfigError("--workers must be at least 1")
    if args.checkpoint_every < 1 or args.checkpoint_seconds <= 0:
        raise ConfigError("--checkpoint-every must be >= 1 and --checkpoint-seconds > 0")
    horizons(args)  # a bad value fails here, once, not in every worker
    interval_levels(args)
    if workers > 1:
        return run_workers(settings, args, workers)
    return run_processor(settings, args)


def horizons(args: argparse.Namespace) -> tuple[int, ...] | None:
    if not args.horizons:
        return None
    try:
        return tuple(int(h) for h in args.horizons.split(","))
    except ValueError as exc:
        raise ConfigError(f"--horizons {args.horizons!r}: {exc}") from exc


def interval_levels(args: argparse.Namespace) -> tuple[float, ...] | None:
    from online_models.intervals import check_levels

    if not args.interval_levels:
        return None
    try:
        return check_levels(float(v) for v in args.interval_levels.split(","))
    except ValueError as exc:
        raise ConfigError(f"--interval-levels {args.interval_levels!r}: {exc}") from exc


def run_workers(settings: Settings, args: argparse.Namespace, workers: int) -> int:
    """This command as ``workers`` worker processes under this one (:mod:`iotcast.workers`)."""
    ports = worker_ports(settings.metrics_port, workers)
    taken = check_ports_free(ports)
    if taken:
        raise ConfigError(
            f"/metrics port(s) {', '.join(map(str, taken))} taken: worker i serves on "
            f"--metrics-port + i ({ports[0]}-{ports[-1]}); choose another --metrics-port"
        )
    if args.create_resources:
        create_resources(settings, args.shards)  # once, here: the workers leave it to us
    raw = getattr(args, "_argv", sys.argv[1:])
    argv = [worker_argv(raw, i, workers, port) for i, port in enumerate(ports)]
    log.info(
        "running %d workers on %s (AWS endpoints: %s)",
        workers, settings.stream, settings.describe_endpoints(),
    )  # fmt: skip
    return WorkerPool(argv, ports).run()


def batch_models(catalog: Catalog, models: str) -> str:
    """``--models`` with the batch expert's models added (``--batch-expert``).

    >>> from online_models.catalog import load_catalog
    >>> batch_models(load_catalog(), "persistence,ridge,ensemble").split(",")[-4:]
    ['ridge', 'ensemble', 'batch_expert', 'batch_shadow']
    """
    from online_models.batch_live import MODELS

    names = [n for n in catalog.select(models).names if n not in MODELS]
    return ",".join([*names, *MODELS])


def run_processor(settings: Settings, args: argparse.Namespace) -> int:
    """One processor process (a worker of ``--workers N``, or the only one)."""
    from online_models.catalog import load_catalog
    from online_models.config import TaskConfig
    from stream.runner import ProcessorOptions, StreamProcessor
    from stream.watch import parse_watch

    if args.worker:  # "i/N": say which worker in every log line
        for handler in logging.getLogger().handlers:
            handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s worker {args.worker} %(name)s: %(message)s"))  # fmt: skip
    # async-kinesis and its DynamoDB checkpointer take credentials only from the environment.
    if settings.aws_access_key_id and not os.environ.get("AWS_ACCESS_KEY_ID"):
        os.environ["AWS_ACCESS_KEY_ID"] = settings.aws_access_key_id
        os.environ["AWS_SECRET_ACCESS_KEY"] = settings.aws_secret_access_key or ""
    try:
        watch = parse_watch(settings.watch)
    except ValueError as exc:
        raise ConfigError(f"--watch: {exc}") from exc
    if args.worst_k < 0:
        raise ConfigError("--worst-k must be 0 or more")
    hs = horizons(args)
    task = TaskConfig(extra_features=settings.extra_features)
    if hs:
        task = task.replace(horizons=hs)
    levels = interval_levels(args)
    if levels:
        task = task.replace(interval_levels=levels)
    catalog = load_catalog(settings.models_file)
    if args.create_resources and not args.worker:  # the workers' supervisor did it
        create_resources(settings, args.shards)
    metrics_url = None
    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, addr="0.0.0.0")
        metrics_url = f"http://{socket.gethostname()}:{settings.metrics_port}/metrics"
    options = ProcessorOptions(
        checkpoint_every=args.checkpoint_every,
        checkpoint_seconds=args.checkpoint_seconds,
        max_devices=args.max_devices,
        session_timeout=args.session_timeout,
        heartbeat=args.heartbeat,
        predictions=args.predictions,
        models=batch_models(catalog, args.models) if args.batch_expert else args.models,
        shard_refresh=args.shard_refresh,
        metrics_url=metrics_url,
        watch=watch,
        worst_k=args.worst_k,
        batch_expert=args.batch_expert,
        batch_poll_seconds=args.batch_poll_seconds,
        batch_shadow_seconds=args.batch_shadow_seconds,
        batch_shadow_scores=args.batch_shadow_scores,
    )
    processor = StreamProcessor(settings.processor_target(), options, catalog, task)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info(
            "processing %s as %s (app %s; AWS endpoints: %s)",
            settings.stream, processor.ref_id, settings.app, settings.describe_endpoints(),
        )  # fmt: skip
        return await processor.run(stop)

    code = asyncio.run(main())
    log.info("processor exited with code %d", code)
    return code

"""Archive the telemetry stream to S3, as Firehose does on AWS (for `iotcast retrain --from-s3`).

Reads every shard of --stream (new shards after a reshard too), buffers records up to
--max-mb or --max-seconds, and writes each buffer as one gzipped object

  archive/<app>/readings/YYYY/MM/DD/HH/iotcast-archive-<time>-<id>.records.gz

(UTC hour the buffer opened; each Kinesis record's data as it is, a newline after each:
the format of docs/operator.md, "The readings archive", the one the template's Firehose
delivery stream writes). Only after S3 accepted an object does it save each shard's last
archived sequence number at archive/<app>/_archiver/positions.json; a restart resumes
after it, so nothing is lost. A crash between the two rewrites that buffer once (at
least once): `iotcast retrain` drops repeated (device, ts) readings. Run one archiver per
stream and app. On AWS do not run it: the Firehose delivery stream does this.

Each S3 or Kinesis call is retried 5 times with backoff, then the command stops with
exit status 1 and what failed; what it had archived stays archived.

Example:

    iotcast archive                        # until Ctrl-C, an object every 5 min or 5 MB
    iotcast archive --until-idle 30        # drain the stream and stop (a timer's job)

>>> import argparse
>>> p = argparse.ArgumentParser(); add_arguments(p)
>>> a = p.parse_args(["--until-idle", "30"])
>>> a.until_idle, a.max_mb, a.max_seconds
(30.0, 5.0, 300.0)
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from iotcast.settings import ConfigError, Settings

__all__ = ["HELP", "add_arguments", "run"]

HELP = "archive the telemetry stream to S3 as Firehose does (the retrain job's input)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-mb",
        type=float,
        default=5.0,
        metavar="MB",
        help="write an object when the buffer holds this many MB (default 5, Firehose's)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=300.0,
        metavar="S",
        help="or when its oldest record is this old (default 300, Firehose's)",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=1.0,
        metavar="S",
        help="pause between GetRecords rounds (default 1; Kinesis allows 5 reads/s a shard)",
    )
    parser.add_argument(
        "--until-idle",
        type=float,
        metavar="S",
        help="stop (after writing what is buffered) once S seconds pass without a record",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def run(settings: Settings, args: argparse.Namespace) -> int:
    from telemetry.archive import ArchiveError, Archiver

    if args.max_mb <= 0 or args.max_seconds <= 0 or args.poll_interval < 0:
        raise ConfigError("--max-mb and --max-seconds must be > 0, --poll-interval >= 0")

    def say(line: str) -> None:
        if not args.quiet:
            print(f"iotcast archive: {line}", file=sys.stderr, flush=True)

    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    kinesis, s3 = settings.client("kinesis"), settings.client("s3")
    try:
        archiver = Archiver(
            kinesis,
            s3,
            stream=settings.stream,
            bucket=settings.bucket,
            app=settings.app,
            max_bytes=int(args.max_mb * 1024 * 1024),
            max_seconds=args.max_seconds,
            say=say,
        )
        say(
            f"{settings.stream} -> s3://{settings.bucket}/archive/{settings.app}/readings/ "
            f"({len(archiver.positions)} shard position(s) saved before)"
        )
        written = archiver.run(
            poll_interval=args.poll_interval, until_idle=args.until_idle, stop=stop.is_set
        )
    except KeyboardInterrupt:
        say("interrupted: the buffer not yet written will be read again on the next start")
        return 130
    except ArchiveError as exc:
        print(f"iotcast archive: {exc}", file=sys.stderr)
        return 1
    say(f"done: {written:,} records in {len(archiver.written)} object(s)")
    return 0

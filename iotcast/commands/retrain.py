"""Train the batch expert on recent telemetry and write it as a new versioned artifact.

Reads readings from a CSV file in the public format (--csv, what `iotcast evaluate`
reads) or from the S3 archive of the stream (--from-s3: the last --days days under
``archive/<app>/readings/YYYY/MM/DD/HH/``: objects of Kinesis records as Firehose or
`iotcast archive` write them, or CSV objects ``.csv``/``.csv.gz``; a repeated (device, ts)
is read once; see docs/operator.md, "The readings archive"). Turns them into
examples on the processor's forecast grid (features of a forecast made at t, the change
of the target from t to t + h), holds out the examples of the last --holdout-days days,
trains gradient-boosted trees on the rest and scores the held-out ones beside
persistence, then trains on everything and writes:

  models/<app>/_batch/v<N>/model.pkl       the model (a pickle: load it only verified)
  models/<app>/_batch/v<N>/manifest.json   data window, features, horizons, parameters,
                                           validation MAE per horizon beside persistence's,
                                           library versions, sha256 of model.pkl

to the bucket (default) or under --out DIR (same keys). A new version is not current:
`iotcast models batch promote N` makes it so, or --promote at once (the processors started
with --batch-expert shadow it first, and refuse it if it is worse). Exit status 1 with the reason when the data
cannot make a model (too little, no target, held-out days leaving nothing).

Example:

    iotcast retrain --csv week.csv --horizon 900 --horizon 3600 --out artifacts/
    iotcast retrain --from-s3 --days 28          # the bucket's archive, into the bucket

>>> import argparse
>>> p = argparse.ArgumentParser(); add_arguments(p)
>>> a = p.parse_args(["--csv", "w.csv", "--horizon", "900", "--scope", "device"])
>>> a.horizon, a.scope, a.holdout_days, a.days
([900], 'device', 2.0, 28.0)
"""

from __future__ import annotations

import argparse
import getpass
import gzip
import io
import json
import pickle
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iotcast.settings import ConfigError, Settings

if TYPE_CHECKING:
    from telemetry.reading import Reading

__all__ = ["HELP", "add_arguments", "archive_keys", "run"]

HELP = "train the batch expert on recent telemetry (CSV or the S3 archive), write a new version"
DEFAULT_HORIZONS = (60, 900, 3600)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--csv", metavar="FILE", help="readings in the public CSV format")
    src.add_argument(
        "--from-s3",
        action="store_true",
        help="read the archive archive/<app>/readings/YYYY/MM/DD/HH/ in --bucket",
    )
    parser.add_argument(
        "--days",
        type=float,
        default=28.0,
        metavar="D",
        help="with --from-s3: the last D days of the archive (default 28)",
    )
    parser.add_argument(
        "--horizon",
        type=int,
        action="append",
        metavar="SECONDS",
        help="forecast horizon in seconds, repeatable (default 60, 900, 3600: the processor's)",
    )
    parser.add_argument(
        "--scope",
        choices=("global", "device"),
        default="global",
        help="one model across devices (default; device features tell them apart, new devices "
        "are served at once) or one per device",
    )
    parser.add_argument(
        "--holdout-days",
        type=float,
        default=2.0,
        metavar="D",
        help="validate on the last D days, trained on the days before (default 2; 0: none)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="write the artifact under DIR (default: to the bucket, under models/<app>/_batch/)",
    )
    parser.add_argument(
        "--promote",
        action="store_true",
        help="make the new version current at once (the scheduled job's way: processors "
        "started with --batch-expert shadow it first and refuse it if it is worse)",
    )
    parser.add_argument(
        "--shuffle-targets",
        type=int,
        default=None,
        metavar="SEED",
        help="a drill: train on targets shuffled among the examples (a model that learned "
        "nothing true), to check that the processors' shadow refuses it",
    )
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def archive_keys(s3: Any, bucket: str, app: str, days: float, now: float) -> Iterator[str]:
    """The archive's objects of the last ``days`` days before ``now``, in time order (hour
    prefixes listed one day at a time)."""
    start = datetime.fromtimestamp(now - days * 86_400.0, UTC).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    end = datetime.fromtimestamp(now, UTC)
    day = start
    paginator = s3.get_paginator("list_objects_v2")
    while day <= end:
        prefix = f"archive/{app}/readings/{day:%Y/%m/%d}/"
        keys = [
            obj["Key"]
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
            for obj in page.get("Contents", ())
            if not obj["Key"].endswith("/")
        ]
        yield from sorted(keys)
        day += timedelta(days=1)


def _s3_readings(settings: Settings, days: float, say: Callable[[str], None]) -> Iterator[Reading]:
    from telemetry.archive import ArchiveFormatError, is_records_key, readings_of
    from telemetry.csvfile import CsvFormatError, read_csv

    s3 = settings.client("s3")
    now = time.time()
    keys = list(archive_keys(s3, settings.bucket, settings.app, days, now))
    if not keys:
        raise ConfigError(
            f"no archive objects under s3://{settings.bucket}/archive/{settings.app}/readings/ "
            f"in the last {days:g} days (is the stream archived? `iotcast archive` locally, "
            "the Firehose delivery stream on AWS: docs/operator.md, 'The readings archive')"
        )
    say(f"reading {len(keys)} archive objects of the last {days:g} days")
    rows: list[Reading] = []
    refused = 0
    for key in keys:
        body = s3.get_object(Bucket=settings.bucket, Key=key)["Body"].read()
        if key.endswith(".gz"):
            body = gzip.decompress(body)
        try:
            if is_records_key(key):
                got = readings_of(body)
                rows.extend(got.readings)
                refused += got.refused
            else:
                rows.extend(read_csv(io.StringIO(body.decode())))
        except (CsvFormatError, ArchiveFormatError) as exc:
            raise ConfigError(f"s3://{settings.bucket}/{key}: {exc}") from None
    rows.sort(key=lambda r: r.ts)  # objects from several writers overlap in time
    seen: set[tuple[str, float]] = set()
    unique = []
    for r in rows:  # delivery is at least once: a repeated (device, ts) is read once
        k = (r.device, r.ts)
        if k not in seen:
            seen.add(k)
            unique.append(r)
    if refused or len(unique) < len(rows):
        say(f"{len(rows) - len(unique):,} repeated readings dropped, {refused:,} refused")
    yield from unique


def run(settings: Settings, args: argparse.Namespace) -> int:
    from online_models.retrain import library_versions, retrain
    from stream.batch_registry import BatchRegistry, DirectoryObjects, S3Objects
    from telemetry.csvfile import BadRows, CsvFormatError, read_csv

    quiet = args.quiet

    def say(line: str) -> None:
        if not quiet:
            print(f"iotcast retrain: {line}", file=sys.stderr, flush=True)

    horizons = tuple(args.horizon or DEFAULT_HORIZONS)
    if any(h <= 0 for h in horizons):
        raise ConfigError(f"--horizon must be seconds > 0, got {list(horizons)}")
    if args.holdout_days < 0 or args.days <= 0:
        raise ConfigError("--holdout-days must be >= 0 and --days > 0")
    bad = BadRows()
    if args.csv:
        path = Path(args.csv)
        if not path.is_file():
            raise ConfigError(f"no such file: {path}")
        readings = read_csv(path, on_bad_row=bad)
        source = {"csv": str(path)}
    else:
        readings = _s3_readings(settings, args.days, say)
        source = {
            "s3": f"s3://{settings.bucket}/archive/{settings.app}/readings/",
            "days": args.days,
        }
    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        out = retrain(
            readings,
            horizons=horizons,
            scope=args.scope,
            holdout_days=args.holdout_days,
            progress=say,
            shuffle_seed=args.shuffle_targets,
        )
    except CsvFormatError as exc:
        raise ConfigError(str(exc)) from None
    except ValueError as exc:
        extra = f" ({bad.count:,} rows refused)" if bad.count else ""
        print(f"iotcast retrain: {exc}{extra}", file=sys.stderr)
        return 1
    model_bytes = pickle.dumps(out.model, protocol=pickle.HIGHEST_PROTOCOL)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    window = dict(out.window)
    for k in ("first_ts", "last_ts", "holdout_from_ts"):
        if window.get(k) is not None:
            window[k.replace("_ts", "")] = datetime.fromtimestamp(window[k], UTC).isoformat()
    manifest = {
        "kind": "batch",
        "format": out.model.format,
        "scope": out.model.scope,
        "experts": sorted(out.model.experts),
        "horizons": list(out.model.horizons),
        "per_horizon": out.model.per_horizon,
        "features": list(out.model.features),
        "target": "change of temp over the horizon",
        "params": {k: v for k, v in _params().items()},
        "source": source,
        "window": window,
        "rows_refused": bad.count,
        "validation": {str(h): v for h, v in out.validation.items()},
        "libraries": library_versions(),
        "cpu_s": {**{k: round(v, 3) for k, v in out.cpu_s.items()}, "total": round(cpu, 3)},
        "wall_s": round(wall, 3),
    }
    if args.shuffle_targets is not None:
        manifest["drill"] = (
            f"targets shuffled (seed {args.shuffle_targets}): a bad model on purpose"
        )
    if args.out:
        objects: Any = DirectoryObjects(args.out)
        where = str(Path(args.out))
    else:
        objects = S3Objects(settings.client("s3"), settings.bucket)
        where = f"s3://{settings.bucket}"
    registry = BatchRegistry(objects, settings.app, settings.hmac_key)
    version = registry.put(model_bytes, manifest)
    written = registry.manifest(version)
    if args.promote:
        registry.promote(version, by=f"iotcast retrain ({getpass.getuser()})", reason="retrained")
    if args.json:
        print(json.dumps(written, indent=2))
    else:
        print(f"batch version v{version} written to {where}/{written['key']}")
        print(
            f"  {window['readings']:,} readings of {len(window['devices'])} device(s), "
            f"{window['examples']:,} examples; {cpu:.1f} CPU-s"
        )
        print("  held-out MAE (°C), model vs persistence:")
        for h, v in out.validation.items():
            gain = 100.0 * (1.0 - v["mae"] / v["persistence_mae"]) if v["persistence_mae"] else 0.0
            print(
                f"    {h:>6} s: {v['mae']:.3f} vs {v['persistence_mae']:.3f} "
                f"({gain:+.1f} %) over {v['n']:,}"
            )
        if args.promote:
            print(f"  current now: processors with --batch-expert shadow v{version} first")
        else:
            print(f"  not current yet: iotcast models batch promote {version}")
    return 0


def _params() -> dict[str, object]:
    from online_models.batch_expert import DEFAULTS

    return dict(DEFAULTS)

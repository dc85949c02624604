"""See, promote, roll back, export and prune the per-device models the processors checkpoint to S3.

Every checkpoint of a device's models is a version in S3: in the shard's bundle of that
checkpoint (``models/<app>/_bundles/<shard>/...``, the device at a byte range), or, for
versions written before bundles and pinned ones, as objects of their own
(``models/<app>/<device>/all/<version>/model.pkl`` with ``manifest.json`` beside it); the
shard manifests name the current one (docs/checkpoints.md).  Loading verifies the sha256
(and the HMAC signature with ``--hmac-key``) before anything is unpickled.

  iotcast models list [--device D] [--limit N] [--json]
  iotcast models show D MODEL [--version V] [--json]        MODEL=all: every model
  iotcast models promote D MODEL [--horizon H] [--reason R] [--by NAME]   D=all: every device
  iotcast models rollback D [--to VERSION] [--reason R] [--by NAME]
  iotcast models export D MODEL --out FILE [--version V]    MODEL=all: the whole set
  iotcast models prune [--keep N] [--min-age S] [--dry-run] [--json]
  iotcast models batch [--dir DIR] list|show [V]|promote V|rollback [--to V]   batch versions

promote and rollback pin the version they name (promote: the current one; rollback: its
target, copied to objects of its own first): prune never deletes a pinned version.

promote and rollback write a command under ``control/<app>/commands/`` (who, when, why)
that running processors apply within seconds, without a restart (stream/control.py); the
command waits for them up to ``--wait`` seconds and prints who applied it.  A promotion sets
the champion now; automatic selection may replace it later under its usual rules.  A
rollback restores an earlier version of the device's models (default: the version before
the current one): samples learned, last reading time and champion go back with it, and
the readings learned after that version are NOT learned again (they are behind the
shard's checkpoint); readings newer than the version's last one are learned as they come.

Example (local stack)::

    iotcast models promote b8:27:eb:bf:9d:51 snarimax --reason "better at 15 min"

>>> import argparse
>>> p = argparse.ArgumentParser(); add_arguments(p)
>>> a = p.parse_args(["rollback", "d1", "--to", "3"])
>>> a.action, a.device, a.to
('rollback', 'd1', '3')
>>> p.parse_args(["export", "d1", "linear", "--out", "m.pkl"]).out
'm.pkl'
>>> a = p.parse_args(["prune", "--keep", "5", "--dry-run"])
>>> a.keep, a.dry_run, a.min_age
(5, True, 3600.0)
"""

from __future__ import annotations

import argparse
import copy
import getpass
import os
import pickle
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from iotcast.settings import ConfigError, Settings
from online_models.records import ModelAtHorizon
from stream.checkpoint import CheckpointStore, TamperedCheckpoint, sha256_hex
from stream.control import Command, ControlLog
from stream.registry import ModelRegistry, Pin, UnknownVersion, Version
from stream.retention import apply, plan

__all__ = ["HELP", "add_arguments", "export_model", "run"]

HELP = "list, show, promote, roll back, export and prune the per-device models checkpointed in S3"

PROMOTE_DOC = (
    "Make MODEL the champion of device D (all: every device with a checkpoint) at every horizon it "
    "runs at (or --horizon). Written as a command under control/<app>/commands/ with who, when and "
    "why; the processor holding the device applies it within seconds, without a restart, and the "
    "next checkpoint keeps it. Not a pin: automatic selection may replace the champion later under "
    "its usual rules (margin, cool-down). The device's current version is pinned (pinned.json): "
    "prune never deletes it."
)
ROLLBACK_DOC = (
    "Restore an earlier checkpointed version of device D's models (default: the version before the "
    "current one) in the processor that holds it, within seconds, without a restart. The version's "
    "samples learned, last reading time and champion come back with it. Readings learned after that "
    "version are NOT learned again: they lie behind the shard's checkpoint (the shard's other "
    "devices must not see them twice), so they stay unlearned; readings newer than the version's "
    "last one are learned as they arrive. The command is applied once, even across a crash or "
    "hand-over (see stream/control.py). The target is pinned first (copied to objects of its own "
    "if it lies in a bundle): prune never deletes it."
)
PRUNE_DOC = (
    "Delete the checkpointed versions retention does not keep: each device keeps its --keep "
    "newest versions (default IOTCAST_KEEP_VERSIONS or 10, at most 32) and every version ever "
    "promoted or rolled back to (pinned); a bundle is deleted whole once no device's kept "
    "version lies in it and it is older than --min-age (a checkpoint in flight writes its "
    "bundle before its manifest). A pinned version still in a bundle that goes is copied out "
    "first (its sha256 checked); if the copy fails, the bundle stays. With S3 versioning on "
    "(the deploy template), deleted objects stay recoverable as noncurrent versions for "
    "NoncurrentDays. Run it daily (or after each checkpoint period of a day)."
)


def _common() -> argparse.ArgumentParser:
    """The shared connection flags again, so they may follow the action (defaults suppressed:
    a value given before the action is kept)."""
    from iotcast.cli import common_flags

    parent = common_flags()
    for action in parent._actions:
        action.default = argparse.SUPPRESS
    return parent


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = _common()
    sub = parser.add_subparsers(dest="action", metavar="<action>", required=True)
    _add = sub.add_parser

    def add_parser(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return _add(name, parents=[common], **kwargs)

    sub.add_parser = add_parser  # type: ignore[method-assign]
    p = sub.add_parser("list", help="versions in S3 with their manifests")
    p.add_argument("--device", help="only this device")
    p.add_argument(
        "--limit",
        type=int,
        default=10,
        metavar="N",
        help="newest N versions per device (default 10)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = sub.add_parser(
        "show", help="one model (or all) of a device: figures per horizon and version"
    )
    p.add_argument("device")
    p.add_argument("model", help="model name, or all")
    p.add_argument("--version", help="version number or id (default: the current one)")
    p.add_argument(
        "--history",
        type=int,
        default=5,
        metavar="N",
        help="also show the N versions before (default 5)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = sub.add_parser(
        "promote",
        help="make MODEL the champion of device D (or all) in the running processors",
        description=PROMOTE_DOC,
    )
    p.add_argument("device", help="device id, or all")
    p.add_argument("model")
    p.add_argument(
        "--horizon",
        type=int,
        default=None,
        help="only at this horizon (seconds; default: every one)",
    )
    _who(p)
    p = sub.add_parser(
        "rollback",
        help="restore an earlier version of device D's models in the running processors",
        description=ROLLBACK_DOC,
    )
    p.add_argument("device")
    p.add_argument(
        "--to", metavar="VERSION", help="version number or id (default: the one before the current)"
    )
    _who(p)
    p = sub.add_parser(
        "export", help="write one model (or all) of a verified version to FILE, manifest beside it"
    )
    p.add_argument("device")
    p.add_argument("model", help="model name, or all (the whole DeviceModels)")
    p.add_argument("--out", required=True, metavar="FILE")
    p.add_argument("--version", help="version number or id (default: the current one)")
    p = sub.add_parser(
        "prune", help="delete the versions retention does not keep", description=PRUNE_DOC
    )
    p.add_argument(
        "--keep",
        type=int,
        default=int(os.environ.get("IOTCAST_KEEP_VERSIONS", "10")),
        metavar="N",
        help="newest versions kept per device (default 10, env IOTCAST_KEEP_VERSIONS; at most 32)",
    )
    p.add_argument(
        "--min-age",
        type=float,
        default=3600.0,
        metavar="S",
        help="never delete a bundle younger than S seconds (default 3600)",
    )
    p.add_argument("--dry-run", action="store_true", help="say what would go; delete nothing")
    p.add_argument("--json", action="store_true", help="machine-readable output (stdout)")

    _batch_arguments(
        sub.add_parser(
            "batch",
            help="the batch models iotcast retrain writes: list, show, promote, rollback",
            description=BATCH_DOC,
        )
    )


BATCH_DOC = (
    "The batch expert's versions (iotcast retrain writes them under models/<app>/_batch/v<N>/, "
    "model.pkl and manifest.json). promote makes a version current (its sha256 checked first), "
    "rollback makes an earlier one current again (default: the one current before); both are "
    "recorded in models/<app>/_batch/current.json with who, when and why. --dir acts on a "
    "directory iotcast retrain --out wrote instead of the bucket."
)


def _batch_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", metavar="DIR", help="a directory written by iotcast retrain --out")
    sub = p.add_subparsers(dest="batch_action", metavar="<batch action>", required=True)
    common = _common()  # the connection flags may follow the batch action too
    _add = sub.add_parser

    def add_parser(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return _add(name, parents=[common], **kwargs)

    sub.add_parser = add_parser  # type: ignore[method-assign]
    q = sub.add_parser("list", help="the versions, newest first, with their validation")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q = sub.add_parser("show", help="one version's manifest (default: the current one)")
    q.add_argument("version", nargs="?", help="number, or vN (default: current)")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q = sub.add_parser("promote", help="make VERSION the current batch model")
    q.add_argument("version", help="number, or vN")
    _who(q)
    q = sub.add_parser("rollback", help="make an earlier version current again")
    q.add_argument("--to", metavar="VERSION", help="default: the version current before")
    _who(q)


def _who(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reason", default="", help="why (recorded with the command)")
    p.add_argument("--by", default=None, help="who (default: the login name)")
    p.add_argument(
        "--wait",
        type=float,
        default=15.0,
        metavar="S",
        help="wait up to S seconds for the processors to apply it (default 15; 0: do not wait)",
    )


def _registry(settings: Settings) -> ModelRegistry:
    s3 = settings.client("s3")
    return ModelRegistry(CheckpointStore(s3, settings.bucket, settings.app, settings.hmac_key))


def _short(iso: str) -> str:
    return iso[:19].replace("T", " ") if iso else "-"


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "batch":
        return _batch(settings, args)
    registry = _registry(settings)
    try:
        return {
            "list": _list,
            "show": _show,
            "promote": _promote,
            "rollback": _rollback,
            "export": _export,
            "prune": _prune,
        }[args.action](registry, args)
    except (UnknownVersion, TamperedCheckpoint, ValueError) as exc:
        print(f"iotcast models {args.action}: {exc}", file=sys.stderr)
        return 1


# ---------------------------------------------------------------------- list / show
def _current_id(registry: ModelRegistry, device: str, current: dict[str, Any]) -> str | None:
    held = current.get(device)
    return held[1].version_id if held else None


def _list(registry: ModelRegistry, args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    current = registry.current()
    devices = [args.device] if args.device else registry.devices()
    out: dict[str, Any] = {}
    for device in devices:
        versions, more = registry.versions(device, max(args.limit, 0))
        if args.device and not versions:
            raise UnknownVersion(
                f"device {device!r} has no checkpointed versions; devices: "
                f"{', '.join(registry.devices()) or 'none'}"
            )
        cur = _current_id(registry, device, current)
        out[device] = {
            "current": cur,
            "versions_total": None if more else len(versions),  # None: more than shown
            "more": more,
            "versions": [{**v.as_dict(), "current": v.version_id == cur} for v in versions],
        }
    if args.json:
        sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    console = Console(width=150)
    for device, info in out.items():
        table = Table(
            title=f"{device}: {info['versions_total'] or 'more'} versions "
            f"(newest {len(info['versions'])})",
            title_justify="left",
        )
        for col in (
            "version",
            "",
            "created (UTC)",
            "samples",
            "champion",
            "shard",
            "sha256",
            "size",
            "stored",
        ):
            table.add_column(col, justify="right" if col in ("samples", "size") else "left")
        for v in info["versions"]:
            champion = v["metrics"].get("champion", {})
            champions = ", ".join(f"{h}s:{champion[h]}" for h in sorted(champion, key=int))
            table.add_row(
                v["version_id"],
                "current" if v["current"] else "",
                _short(v["created"]),
                str(v["samples"]),
                champions,
                v["shard_id"],
                v["sha256"][:12],
                str(v["size"]),
                v["layout"] + (", pinned" if v["pinned"] else ""),
            )
        console.print(table)
    if not out:
        console.print(f"no checkpointed models under s3://{registry.bucket}/models/{registry.app}/")
    return 0


def _pick(registry: ModelRegistry, device: str, ref: str | None) -> Version:
    if ref is None:
        held = registry.current().get(device)
        if held is None:
            raise UnknownVersion(
                f"device {device!r} is in no shard manifest (devices: "
                f"{', '.join(registry.devices()) or 'none'}); name a --version"
            )
        return registry.version(device, held[1].version_id)
    return registry.version(device, registry.resolve(device, ref))


def _show(registry: ModelRegistry, args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    version = _pick(registry, args.device, args.version)
    models = version.model_names() if args.model == "all" else [args.model]
    if args.model != "all" and args.model not in version.model_names():
        raise UnknownVersion(
            f"model {args.model!r} is not in {version.version_id} of {args.device}; "
            f"it holds: {', '.join(version.model_names())}"
        )
    history = (
        registry.versions(args.device, args.history, below=version.version_id)[0]
        if args.history > 0
        else []
    )
    champion = version.champion()
    figures = [
        {
            "model": name,
            "horizon": int(h),
            "champion": champion.get(h) == name,
            **version.figures(name, h),
        }
        for name in models
        for h in sorted(champion, key=int)
        if version.figures(name, h)
    ]
    out = {
        "version": version.as_dict(),
        "models": figures,
        "history": [
            {
                "version_id": v.version_id,
                "created": v.created,
                "samples": v.samples,
                "figures": {
                    str(ModelAtHorizon(n, int(h))): v.figures(n, h)
                    for n in models
                    for h in v.champion()
                },
            }
            for v in history
        ],
    }
    if args.json:
        sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    console = Console(width=150)
    console.print(
        f"[bold]{args.device}[/] version {version.version_id}  created {_short(version.created)} UTC  "
        f"samples {version.samples}  shard {version.shard_id} @ {version.sequence}"
    )
    console.print(
        f"  s3://{registry.bucket}/{version.key}  sha256 {version.sha256}  {version.size} bytes"
    )
    table = Table(title_justify="left")
    for col in ("model", "horizon (s)", "champion", "n", "MAE", "RMSE", "rolling MAE"):
        table.add_column(col, justify="left" if col in ("model", "champion") else "right")
    for f in figures:
        table.add_row(
            f["model"],
            str(f["horizon"]),
            "yes" if f["champion"] else "",
            _fmt(f.get("n")),
            _fmt(f.get("mae")),
            _fmt(f.get("rmse")),
            _fmt(f.get("rolling_mae")),
        )
    console.print(table)
    if history:
        hist = Table(title="earlier versions: rolling MAE", title_justify="left")
        keys = [
            ModelAtHorizon(n, int(h))
            for n in models
            for h in sorted(champion, key=int)
            if version.figures(n, h)
        ]
        for col in ("version", "created (UTC)", "samples", *map(str, keys)):
            hist.add_column(col, justify="left" if col in ("version", "created (UTC)") else "right")
        for v in history:
            hist.add_row(
                v.version_id,
                _short(v.created),
                str(v.samples),
                *(_fmt(v.figures(*k).get("rolling_mae")) for k in keys),
            )
        console.print(hist)
    return 0


# ------------------------------------------------------------------ promote / rollback
def _issue(registry: ModelRegistry, command: Command, wait: float) -> int:
    control = ControlLog(registry.store)
    key = control.issue(command)
    print(f"issued {command.id}: {command.describe()}")
    print(f"  s3://{registry.bucket}/{key}")
    if wait <= 0:
        return 0
    deadline = time.monotonic() + wait
    acks: dict[tuple[str, str], dict[str, Any]] = {}
    while time.monotonic() < deadline:
        acks = {k: a for k, a in control.acks([command]).items() if a.get("outcome") != "applying"}
        if len(acks) >= len(command.devices):
            break
        time.sleep(0.5)
    refused = 0
    for device in command.devices:
        ack = acks.get((command.id, device))
        if ack is None:
            print(
                f"  {device}: not applied within {wait:.0f}s (is a processor holding it?); it stays pending "
                "for 24 h and is applied when a processor loads the device"
            )
        else:
            refused += ack["outcome"] == "refused"
            print(
                f"  {device}: {ack['outcome']} by {ack['process']} ({ack['shard']}): {ack['message']}"
            )
    return 1 if refused else 0


def _promote(registry: ModelRegistry, args: argparse.Namespace) -> int:
    current = registry.current()
    devices = sorted(current) if args.device == "all" else [args.device]
    if not devices:
        raise UnknownVersion("no device has a checkpoint yet: nothing to promote")
    for device in devices:
        if device not in current:
            raise UnknownVersion(
                f"device {device!r} is in no shard manifest; devices: {', '.join(sorted(current))}"
            )
        keys = current[device][1].metrics.get("models", {})
        runs = {
            k.model
            for k in map(ModelAtHorizon.parse, keys)
            if args.horizon is None or k.horizon == args.horizon
        }
        if args.model not in runs:
            raise UnknownVersion(
                f"model {args.model!r} does not run for {device}"
                + (f" at horizon {args.horizon}s" if args.horizon is not None else "")
                + f"; it runs: {', '.join(sorted(runs)) or 'nothing there'}"
            )
    command = Command.new(
        "promote",
        devices,
        model=args.model,
        horizon=args.horizon,
        reason=args.reason,
        by=args.by or getpass.getuser(),
    )
    pin = Pin("promote", command.by, command.reason, command.id, command.at)
    for device in devices:  # the version the operator promoted from: never pruned
        registry.pin(registry.version(device, current[device][1].version_id), pin, copy=False)
    return _issue(registry, command, args.wait)


def _rollback(registry: ModelRegistry, args: argparse.Namespace) -> int:
    if args.device == "all":
        raise ConfigError("rollback takes one device (versions are per device)")
    if args.to is not None:
        target = registry.resolve(args.device, args.to)
    else:
        current = _current_id(registry, args.device, registry.current())
        before = registry.versions(args.device, 1, below=current)[0] if current else []
        if not before:
            raise UnknownVersion(
                f"device {args.device!r} has no version before its current one "
                f"({current}); name one with --to"
            )
        target = before[0].version_id
    version = registry.version(args.device, target)
    registry.payload(version)  # the processors verify it again; refuse a bad one here already
    command = Command.new(
        "rollback",
        [args.device],
        to_version=target,
        reason=args.reason,
        by=args.by or getpass.getuser(),
    )
    # Copied to objects of its own (if it lies in a bundle) and pinned: never pruned.
    registry.pin(version, Pin("rollback", command.by, command.reason, command.id, command.at),
                 copy=True)  # fmt: skip
    print(
        f"{args.device}: restoring {target} ({version.samples} samples, created {_short(version.created)} UTC); "
        "readings learned after it are not learned again"
    )
    return _issue(registry, command, args.wait)


# --------------------------------------------------------------------------- export
def export_model(models: Any, model: str) -> Any:
    """What ``export`` writes: the whole ``DeviceModels`` (``all``) or one model's objects.

    One model is a plain dict: ``{"device", "model", "target", "horizons": {h: model}, "features",
    "feature_keys"}``; ``features`` is the device's FeatureState at that version
    (``x = features.update(reading)``; nowcast models take ``nowcast_view(x, target)``).

    >>> from online_models.catalog import load_catalog
    >>> from online_models.config import TaskConfig
    >>> from online_models.device import DeviceModels
    >>> dm = DeviceModels("d1", load_catalog(), TaskConfig(horizons=(0, 60)), models="persistence,linear")
    >>> sorted(export_model(dm, "linear")["horizons"])
    [0, 60]
    """
    if model == "all":
        return models
    horizons = {
        h: copy.deepcopy(hz.models[model])
        for h, hz in models.horizons.items()
        if model in hz.models
    }
    if not horizons:
        raise UnknownVersion(
            f"model {model!r} does not run for {models.device}; it runs: "
            f"{', '.join(models.model_names)}"
        )
    return {
        "device": models.device,
        "model": model,
        "target": models.task.target,
        "horizons": horizons,
        "features": copy.deepcopy(models.features),
        "feature_keys": models.feature_keys,
    }


def _export(registry: ModelRegistry, args: argparse.Namespace) -> int:
    version = _pick(registry, args.device, args.version)
    models = registry.load(version)
    payload = pickle.dumps(export_model(models, args.model), protocol=pickle.HIGHEST_PROTOCOL)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(payload)
    manifest = {
        "exported": {
            "file": out.name,
            "model": args.model,
            "sha256": sha256_hex(payload),
            "size": len(payload),
            "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "by": getpass.getuser(),
            "source": f"s3://{registry.bucket}/{version.key}",
        },
        **version.as_dict(),
    }
    side = out.with_name(out.name + ".manifest.json")
    side.write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    print(
        f"wrote {out} ({len(payload)} bytes, {args.model} of {args.device} {version.version_id}, "
        f"{version.samples} samples) and {side}"
    )
    return 0


# ---------------------------------------------------------------------------- prune
def _prune(registry: ModelRegistry, args: argparse.Namespace) -> int:
    def say(line: str) -> None:
        print(f"prune: {line}", file=sys.stderr)

    todo = plan(registry, args.keep, args.min_age, say=say)
    summary = todo.summary() if args.dry_run else apply(registry, todo, say)
    summary["dry_run"] = args.dry_run
    if args.json:
        sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    b = summary["bundles"]
    verb = "would delete" if args.dry_run else "deleted"
    print(
        f"keep {args.keep} versions per device and every pinned one: {verb} {b['deleted']} "
        f"bundles ({b['bytes_deleted'] / 2**20:.1f} MiB) and "
        f"{sum(map(len, summary['object_versions_deleted'].values()))} versions stored as objects "
        f"({summary['object_bytes_deleted'] / 2**20:.1f} MiB); kept {b['kept']} bundles, "
        f"{b['young']} younger than {args.min_age:.0f}s; "
        f"{sum(map(len, summary['pinned'].values()))} pinned versions"
    )
    return 0


# ---------------------------------------------------------------------- batch versions
def _batch(settings: Settings, args: argparse.Namespace) -> int:
    from stream.batch_registry import (
        BatchRegistry,
        DirectoryObjects,
        S3Objects,
        UnknownBatchVersion,
    )

    if args.dir:
        if not Path(args.dir).is_dir():
            raise ConfigError(f"no such directory: {args.dir}")
        objects: Any = DirectoryObjects(args.dir)
    else:
        objects = S3Objects(settings.client("s3"), settings.bucket)
    registry = BatchRegistry(objects, settings.app, settings.hmac_key)
    action = args.batch_action
    try:
        if action == "list":
            return _batch_list(registry, args)
        if action == "show":
            man = registry.manifest(args.version)
            version = int(man["version"])
            man = {
                **man,
                "signature": _signature(registry, version),
                "verdict": registry.verdict(version),
                "shadow": registry.shadows(version),
                "events": registry.events(version),
            }
            if args.json:
                print(orjson.dumps(man, option=orjson.OPT_INDENT_2).decode())
            else:
                _batch_print(man, registry.current())
            return 0
        by = args.by or getpass.getuser()
        if action == "promote":
            cur = registry.promote(args.version, by=by, reason=args.reason)
        else:
            cur = registry.rollback(args.to, by=by, reason=args.reason)
        before = "none" if cur["previous"] is None else f"v{cur['previous']}"
        print(f"batch v{cur['version']} is current ({action} by {by}; was {before})")
        return 0
    except UnknownBatchVersion as exc:
        print(f"iotcast models batch {action}: {exc}", file=sys.stderr)
        return 1


def _batch_list(registry: Any, args: argparse.Namespace) -> int:
    current = registry.current()
    cur = None if current is None else current["version"]
    rows = [
        {**registry.manifest(v), "verdict": registry.verdict(v)}
        for v in reversed(registry.versions())
    ]
    if args.json:
        print(orjson.dumps({"current": cur, "versions": rows}, option=orjson.OPT_INDENT_2).decode())
        return 0
    if not rows:
        print("no batch versions yet (iotcast retrain writes them)")
        return 0
    for man in rows:
        mark = "*" if man["version"] == cur else " "
        val = ", ".join(
            f"{h} s {v['mae']:.3f}/{v['persistence_mae']:.3f}"
            for h, v in man.get("validation", {}).items()
        )
        window = man.get("window", {})
        print(
            f"{mark} v{man['version']:<4} {_short(man.get('written', ''))}  {man.get('scope', '-'):<6} "
            f"{window.get('readings', 0):>10,} readings  {_short(window.get('first', ''))} .. "
            f"{_short(window.get('last', ''))}  held-out MAE model/persistence: {val or '-'}"
            f"  shadow: {_verdict(man['verdict'])}"
        )
    print("(* current)" if cur is not None else "(none current: iotcast models batch promote N)")
    return 0


def _verdict(verdict: dict[str, Any] | None) -> str:
    """A version's verdict in a few words: accepted 0.93x, refused, or not judged yet."""
    if verdict is None:
        return "not judged"
    ratio = verdict.get("ratio")
    vs = f" {ratio:.3f}x {verdict.get('reference', '')}" if isinstance(ratio, float) else ""
    return f"{verdict.get('outcome')}{vs}"


def _signature(registry: Any, version: int) -> str:
    """Whether the version's manifest is signed and its signature holds under this key."""
    from stream.batch_registry import UnknownBatchVersion

    if not registry.hmac_key:
        return "not checked (no IOTCAST_HMAC_KEY)"
    try:
        registry.manifest(version, verify=True)
    except UnknownBatchVersion as exc:
        return f"REFUSED: {exc}"
    return "holds (HMAC-SHA256)"


def _shadow_so_far(shadows: list[dict[str, Any]]) -> str:
    """The processors' shadow errors summed per horizon and reference, in words (empty
    when no processor shadows the version).

    >>> _shadow_so_far([{"reference": {"60": "persistence"}, "sums": {"60": [7.0, 30, 10.0, 30]}},
    ...                 {"reference": {"60": "persistence"}, "sums": {"60": [7.0, 10, 10.0, 10]}}])
    'on 2 processor(s): 60 s 0.700x persistence (n 40)'
    """
    from stream.batch_registry import shadow_totals

    totals, _ = shadow_totals(shadows)
    parts = [
        f"{h} s {(own / n) / (ref / n_ref):.3f}x {reference} (n {n:,.0f})"
        for (h, reference), (own, n, ref, n_ref) in sorted(totals.items())
        if n and n_ref and ref > 0
    ]
    return f"on {len(shadows)} processor(s): " + "; ".join(parts) if parts else ""


def _batch_print(man: dict[str, Any], current: dict[str, Any] | None) -> None:
    is_current = current is not None and current["version"] == man["version"]
    print(f"batch v{man['version']}{' (current)' if is_current else ''}: {man['key']}")
    print(f"  sha256 {man['sha256']}  {man['bytes']:,} bytes  written {man.get('written', '-')}")
    print(
        f"  scope {man.get('scope')}, horizons {man.get('horizons')}, experts {man.get('experts')}"
    )
    w = man.get("window", {})
    print(
        f"  data {w.get('first', '-')} .. {w.get('last', '-')}: {w.get('readings', 0):,} readings, "
        f"{len(w.get('devices', []))} device(s), {w.get('examples', 0):,} examples, "
        f"held out from {w.get('holdout_from', '-')}"
    )
    for h, v in man.get("validation", {}).items():
        print(
            f"  held-out {h} s: MAE {v['mae']:.3f} vs persistence {v['persistence_mae']:.3f} (n {v['n']:,})"
        )
    print(f"  features {', '.join(man.get('features', []))}")
    print(f"  libraries {', '.join(f'{k} {v}' for k, v in man.get('libraries', {}).items())}")
    print(f"  signature: {man.get('signature', '-')}")
    verdict = man.get("verdict")
    so_far = _shadow_so_far(man.get("shadow") or [])
    if verdict is None and so_far:
        print(f"  in shadow, MAE against its reference so far {so_far}")
    print(
        f"  shadow verdict: {_verdict(verdict)}"
        + (f" ({verdict.get('reason')})" if verdict else "")
    )
    for e in man.get("events", []):
        at = datetime.fromtimestamp(float(e.get("at", 0)), UTC).isoformat(timespec="seconds")
        print(f"  {at} {e.get('kind')} ({e.get('by')}): {e.get('reason')}")

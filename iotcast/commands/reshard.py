"""Change the telemetry stream's shard count, and show the resharding as it happens.

Kinesis reshards by closing shards and opening children that split or merge their
hash ranges.  This command asks for the new count, then watches, once a second, and
prints each step as it happens:

- the stream turns ``UPDATING`` and back ``ACTIVE``;
- a shard opens (its parents, its share of the hash range) or closes;
- a closed parent is *drained*: its processor consumed it to the end and checkpointed
  it as ``finished`` (only then may its children start, so a device's readings are
  learned in order and exactly once);
- a child shard is leased by a processor (which loaded its devices' models from the
  parents' final manifests).

It ends when the stream is ``ACTIVE`` with the new count and, while processors run
(presence items in the lease table), every parent is drained and every open shard
leased; ``--no-follow`` stops at the stream.  The processors need nothing: they find
the children by themselves (``--shard-refresh``).

``--method update`` (default) calls UpdateShardCount with uniform scaling: one call,
at most double or half the open shards, and AWS allows a limited number of calls per
stream and day.  ``--method split-merge`` splits every open shard at its midpoint
(doubling) or merges adjacent pairs (halving), round after round: for endpoints
without UpdateShardCount (kinesalite), or to control each step.  On-demand streams
scale by themselves and are refused.

Example (local stack; kinesalite for Kinesis)::

    iotcast reshard --shards 4 --method split-merge
    iotcast reshard --shards 2 --json

Exit status: 0 when done; 1 when ``--timeout`` passed first (what is pending is
listed); 2 when the request is refused (the reason says what to do).

>>> import argparse
>>> p = argparse.ArgumentParser(); add_arguments(p)
>>> a = p.parse_args(["--shards", "4", "--method", "split-merge"])
>>> a.shards, a.method, a.follow
(4, 'split-merge', True)
>>> rounds(2, 8), rounds(8, 2), rounds(3, 2), rounds(2, 2)
(['split', 'split'], ['merge', 'merge'], ['merge'], [])
>>> hash_share({"StartingHashKey": "0", "EndingHashKey": str(2**127 - 1)})
'0-50%'
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from iotcast.settings import ConfigError, Settings
from stream.checkpoint import CheckpointStore, TamperedCheckpoint
from stream.lease_table import lease_table_name, read_lease_table

__all__ = ["HELP", "Watcher", "add_arguments", "hash_share", "rounds", "run"]

HELP = "change the telemetry stream's shard count and show the resharding as it happens"

HASH_SPACE = 2**128
LIVE_SECONDS = 120.0  # a presence item heartbeaten this recently is a running processor


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("reshard")
    g.add_argument("--shards", type=int, required=True, metavar="N", help="open shards wanted")
    g.add_argument(
        "--method",
        choices=("update", "split-merge"),
        default="update",
        help="update: one UpdateShardCount call (uniform scaling; at most x2 or /2 per call); "
        "split-merge: SplitShard/MergeShards rounds, doubling or halving (default update)",
    )
    g.add_argument(
        "--no-follow",
        dest="follow",
        action="store_false",
        help="stop once the stream is ACTIVE with N shards, without waiting for the "
        "processors to drain the parents and lease the children",
    )
    g.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        metavar="S",
        help="give up watching after S seconds (exit 1; the resharding goes on) (default 900)",
    )
    g.add_argument(
        "--interval", type=float, default=1.0, metavar="S", help="poll every S seconds (default 1)"
    )
    g.add_argument("--json", action="store_true", help="print one JSON report at the end")


def hash_share(hash_range: dict[str, str]) -> str:
    """A shard's hash-key range as percentages of the key space."""
    lo = int(hash_range["StartingHashKey"]) * 100 / HASH_SPACE
    hi = (int(hash_range["EndingHashKey"]) + 1) * 100 / HASH_SPACE
    return f"{lo:.4g}-{hi:.4g}%"


def rounds(current: int, target: int) -> list[str]:
    """The split (x2) or merge (/2, rounded up) rounds from ``current`` to ``target`` open shards.

    Raises ValueError when no sequence of whole rounds gets there.
    """
    steps: list[str] = []
    n = current
    while n < target:
        n *= 2
        steps.append("split")
    while n > target:
        n = math.ceil(n / 2)
        steps.append("merge")
    if n != target or ("split" in steps and "merge" in steps):
        raise ValueError(
            f"split-merge doubles or halves the open shards each round: {current} cannot "
            f"reach {target} that way; use --method update, or a count such as "
            f"{current * 2} or {math.ceil(current / 2)}"
        )
    return steps


@dataclass
class StreamView:
    status: str
    shards: dict[str, dict[str, Any]]
    owners: dict[str, str | None] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)
    live: int = 0

    def open_ids(self) -> list[str]:
        return sorted(s for s, d in self.shards.items() if _is_open(d))

    def closed_ids(self) -> list[str]:
        return sorted(s for s, d in self.shards.items() if not _is_open(d))


def _is_open(shard: dict[str, Any]) -> bool:
    return "EndingSequenceNumber" not in shard.get("SequenceNumberRange", {})


class Watcher:
    """Polls the stream, the lease table and the closed shards' manifests; reports what changed."""

    def __init__(self, settings: Settings, kinesis: Any, out: Any | None) -> None:
        self.settings = settings
        self.kinesis = kinesis
        self.dynamodb = settings.client("dynamodb")
        self.store = CheckpointStore(
            settings.client("s3"),
            settings.bucket,
            settings.app,
            settings.hmac_key,
        )
        self.table = lease_table_name(settings.app)
        self.out = out
        self.started = time.monotonic()
        self.events: list[dict[str, Any]] = []
        self.last: StreamView | None = None

    # ---------------------------------------------------------------- reading
    def view(self) -> StreamView:
        name = self.settings.stream
        summary = self.kinesis.describe_stream_summary(StreamName=name)
        status = summary["StreamDescriptionSummary"]["StreamStatus"]
        shards: dict[str, dict[str, Any]] = {}
        kwargs: dict[str, Any] = {"StreamName": name}
        while True:
            page = self.kinesis.list_shards(**kwargs)
            shards.update({s["ShardId"]: s for s in page["Shards"]})
            if not page.get("NextToken"):
                break
            kwargs = {"NextToken": page["NextToken"]}
        snap = StreamView(status, shards)
        snap.owners, snap.live = self._leases()
        known = self.last.finished if self.last else set()
        for sid in snap.closed_ids():
            if sid in known or self._finished(sid):
                snap.finished.add(sid)
        return snap

    def _leases(self) -> tuple[dict[str, str | None], int]:
        """Shard -> lease holder, and the processors alive (none before any has run)."""
        table = read_lease_table(self.dynamodb, self.table)
        now = time.time()
        owners = {shard: lease.owner for shard, lease in table.leases.items()}
        live = sum(now - (p.ts or 0.0) < LIVE_SECONDS for p in table.presences.values())
        return owners, live

    def _finished(self, shard_id: str) -> bool:
        try:
            manifest = self.store.load_shard_manifest(shard_id)
        except TamperedCheckpoint:
            return False
        return bool(manifest and manifest.finished)

    # -------------------------------------------------------------- reporting
    def _event(self, kind: str, text: str, **fields: Any) -> None:
        t = time.monotonic() - self.started
        self.events.append({"t": round(t, 2), "event": kind, **fields})
        if self.out is not None:
            print(f"  +{t:6.1f}s  {text}", file=self.out, flush=True)

    def poll(self) -> StreamView:
        snap = self.view()
        before = self.last
        if before is None or snap.status != before.status:
            self._event(
                "stream", f"stream {self.settings.stream} {snap.status}", status=snap.status
            )
        old = before.shards if before else {}
        for sid in sorted(snap.shards):
            shard = snap.shards[sid]
            parents = [
                p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p
            ]
            if sid not in old and before is not None:
                of = f"child of {' + '.join(parents)}" if parents else "new"
                self._event(
                    "opened",
                    f"{sid} opened: {of}, hash {hash_share(shard['HashKeyRange'])}",
                    shard=sid,
                    parents=parents,
                )
            if before is not None and not _is_open(shard) and _is_open(old.get(sid, shard)):
                self._event("closed", f"{sid} closed: no new records go to it", shard=sid)
        for sid in sorted(snap.finished - (before.finished if before else snap.finished)):
            self._event(
                "drained",
                f"{sid} drained: consumed to its end and checkpointed as finished",
                shard=sid,
            )
        for sid in snap.open_ids():
            owner = snap.owners.get(sid)
            if owner and (before is None or before.owners.get(sid) != owner):
                self._event("leased", f"{sid} leased by {owner}", shard=sid, owner=owner)
        self.last = snap
        return snap

    def pending(self, snap: StreamView, target: int, follow: bool) -> list[str]:
        """What is still to happen before the resharding is done (empty: done)."""
        out = []
        if snap.status != "ACTIVE":
            out.append(f"stream {snap.status}")
        if len(snap.open_ids()) != target:
            out.append(f"{len(snap.open_ids())} open shards, not {target}")
        if follow and snap.live:
            # A processor takes a child only once its parents are finished, so every closed
            # shard gets drained, even an empty one.
            out += [f"{s} not drained yet" for s in snap.closed_ids() if s not in snap.finished]
            out += [f"{s} not leased yet" for s in snap.open_ids() if not snap.owners.get(s)]
        return out

    def wait_active(self, deadline: float, interval: float) -> StreamView:
        while True:
            snap = self.poll()
            if snap.status == "ACTIVE" or time.monotonic() >= deadline:
                return snap
            time.sleep(interval)


def _request(kinesis: Any, watcher: Watcher, args: argparse.Namespace, current: list[str]) -> None:
    """Ask Kinesis for the new count (``update``) or do the split/merge rounds."""
    name = watcher.settings.stream
    target = args.shards
    if args.method == "update":
        n = len(current)
        if target > 2 * n or target < math.ceil(n / 2):
            raise ConfigError(
                f"UpdateShardCount goes at most to double or half the open shards per call "
                f"({n} -> {math.ceil(n / 2)}..{2 * n}); reshard in steps, e.g. --shards "
                f"{2 * n if target > n else math.ceil(n / 2)} first"
            )
        try:
            kinesis.update_shard_count(
                StreamName=name, TargetShardCount=target, ScalingType="UNIFORM_SCALING"
            )
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code in (
                "UnknownOperationException",
                "InvalidAction",
                "UnrecognizedClientException",
            ):
                raise ConfigError(
                    f"this Kinesis endpoint does not implement UpdateShardCount ({code}; "
                    "kinesalite does not): use --method split-merge"
                ) from None
            if code == "LimitExceededException":
                raise ConfigError(
                    f"Kinesis refused the resharding: {exc.response['Error'].get('Message')} "
                    "(AWS limits UpdateShardCount calls per stream and day, and the shards per "
                    "account: see the Kinesis quotas)"
                ) from None
            raise
        watcher._event("requested", f"UpdateShardCount {len(current)} -> {target} requested")
        return
    try:
        steps = rounds(len(current), target)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    deadline = time.monotonic() + args.timeout
    for step in steps:
        snap = watcher.wait_active(deadline, args.interval)
        ordered = sorted(
            snap.open_ids(), key=lambda s: int(snap.shards[s]["HashKeyRange"]["StartingHashKey"])
        )
        if step == "split":
            for sid in ordered:
                hr = snap.shards[sid]["HashKeyRange"]
                middle = (int(hr["StartingHashKey"]) + int(hr["EndingHashKey"]) + 1) // 2
                kinesis.split_shard(
                    StreamName=name, ShardToSplit=sid, NewStartingHashKey=str(middle)
                )
                watcher._event("requested", f"SplitShard {sid} at its midpoint", shard=sid)
                watcher.wait_active(deadline, args.interval)
        else:
            for a, b in zip(ordered[0::2], ordered[1::2], strict=False):
                kinesis.merge_shards(StreamName=name, ShardToMerge=a, AdjacentShardToMerge=b)
                watcher._event("requested", f"MergeShards {a} + {b}", shard=a, adjacent=b)
                watcher.wait_active(deadline, args.interval)


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.shards < 1:
        raise ConfigError("--shards must be at least 1")
    kinesis = settings.client("kinesis")
    out = None if args.json else sys.stdout
    watcher = Watcher(settings, kinesis, out)
    try:
        summary = kinesis.describe_stream_summary(StreamName=settings.stream)[
            "StreamDescriptionSummary"
        ]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            raise ConfigError(f"stream {settings.stream!r} does not exist (--stream)") from None
        raise
    mode = summary.get("StreamModeDetails", {}).get("StreamMode", "PROVISIONED")
    if mode == "ON_DEMAND":
        raise ConfigError(
            f"stream {settings.stream} is ON_DEMAND: Kinesis sizes it by itself; switch it to "
            "PROVISIONED (the stack's StreamMode parameter) to choose its shard count"
        )
    if out is not None:
        print(
            f"resharding {settings.stream} (consumer group {settings.app}) to {args.shards} "
            f"open shards with {'UpdateShardCount' if args.method == 'update' else 'SplitShard/MergeShards'}",
            file=out,
        )
    try:
        first = watcher.poll()
        current = first.open_ids()
        if first.status != "ACTIVE":
            raise ConfigError(f"stream {settings.stream} is {first.status}: wait until ACTIVE")
        if len(current) == args.shards:
            if out is not None:
                print(f"already {args.shards} open shards: nothing to do", file=out)
            else:
                print(orjson.dumps(_report(watcher, args, current, first, [], 0.0)).decode())
            return 0
        _request(kinesis, watcher, args, current)
        deadline = time.monotonic() + args.timeout
        while True:
            snap = watcher.poll()
            left = watcher.pending(snap, args.shards, args.follow)
            if not left or time.monotonic() >= deadline:
                break
            time.sleep(args.interval)
    except (ClientError, BotoCoreError) as exc:
        print(f"iotcast reshard: {exc}", file=sys.stderr)
        return 2
    took = time.monotonic() - watcher.started
    if out is not None:
        if left:
            print(f"not done after {args.timeout:.0f}s: " + "; ".join(left), file=out)
        else:
            note = ""
            if args.follow and not snap.live:
                note = " (no processor running: the children are taken when one starts)"
            print(
                f"done in {took:.1f}s: {len(snap.open_ids())} open shards"
                + (
                    ", every parent drained, every open shard leased"
                    if snap.live and args.follow
                    else ""
                )
                + note,
                file=out,
            )
    else:
        print(orjson.dumps(_report(watcher, args, current, snap, left, took)).decode())
    return 1 if left else 0


def _report(
    watcher: Watcher,
    args: argparse.Namespace,
    before: list[str],
    snap: StreamView,
    pending: list[str],
    took: float,
) -> dict[str, Any]:
    return {
        "stream": watcher.settings.stream,
        "app": watcher.settings.app,
        "method": args.method,
        "from": len(before),
        "to": args.shards,
        "done": not pending,
        "pending": pending,
        "seconds": round(took, 2),
        "live_processors": snap.live,
        "events": watcher.events,
        "shards": [
            {
                "shard_id": sid,
                "open": _is_open(shard),
                "parents": [
                    p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p
                ],
                "hash_range": hash_share(shard["HashKeyRange"]),
                "owner": snap.owners.get(sid),
                "finished": sid in snap.finished,
            }
            for sid, shard in sorted(snap.shards.items())
        ],
    }

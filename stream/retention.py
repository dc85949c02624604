"""Retention of checkpointed versions: the last N of each device, and every pinned one.

The rule (``iotcast models prune``, :func:`plan` then :func:`apply`):

- **bundles** (``models/<app>/_bundles/``): a bundle is kept while a shard
  manifest names it among the bundles of a device's ``keep`` newest versions
  (each entry's ``history``, :mod:`stream.checkpoint`), or while it is younger
  than ``min_age`` (a checkpoint in flight writes its bundle before its
  manifest).  A bundle is kept or deleted whole: a device whose current version
  lies in an old bundle (a quiet device) keeps that bundle, and the other
  devices' versions in it stay readable, though no longer listed once the
  chain of records that led to them is cut.
- **versions stored as objects** (written before bundles): a device keeps its
  newest ones up to ``keep`` versions in all, counting its versions in bundles
  first; the one a manifest names is always kept.
- **pinned versions** (``pinned.json``: promoted, or rolled back to, by
  ``iotcast models promote|rollback``) are never deleted.  A rollback's target
  is copied to objects of its own when the command is issued; a promoted
  version still in a bundle is copied out (and the copy's sha256 checked)
  before that bundle is deleted, and if the copy fails the bundle stays.

Nothing else deletes versions: the bucket's lifecycle rules only expire
noncurrent object versions (S3 versioning) and abandoned multipart uploads.

>>> p = Plan(keep=10)
>>> p.summary()["bundles"]
{'kept': 0, 'deleted': 0, 'young': 0, 'bytes_deleted': 0}
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NotRequired, TypedDict, cast

from stream.checkpoint import HISTORY, ArtifactKey, TamperedCheckpoint, bundles_prefix
from stream.registry import ModelRegistry, UnknownVersion, Version, parse_version

__all__ = ["Plan", "PruneSummary", "apply", "plan"]

log = logging.getLogger(__name__)

BATCH = 1000  # keys per DeleteObjects request (S3's most)


class BundleFigures(TypedDict):
    kept: int
    deleted: int
    young: int
    bytes_deleted: int


class PruneSummary(TypedDict):
    """What a prune did (or would do): ``iotcast models prune --json``."""

    keep: int
    bundles: BundleFigures
    object_versions_deleted: dict[str, list[str]]
    object_bytes_deleted: int
    pinned: dict[str, list[str]]
    pins_to_copy: list[str]
    dry_run: NotRequired[bool]


@dataclass
class Plan:
    """What a prune deletes and keeps (:func:`plan`); nothing is changed until :func:`apply`."""

    keep: int
    bundles_kept: list[str] = field(default_factory=list)
    bundles_young: list[str] = field(default_factory=list)
    bundles_deleted: dict[str, int] = field(default_factory=dict)  # key -> bytes
    objects_deleted: dict[str, list[str]] = field(default_factory=dict)  # device -> version ids
    object_keys: list[str] = field(default_factory=list)
    object_bytes: int = 0
    pins_to_copy: list[Version] = field(default_factory=list)  # before their bundle goes
    pinned: dict[str, list[str]] = field(default_factory=dict)  # device -> pinned version ids

    def summary(self) -> PruneSummary:
        """The plan's figures, as ``iotcast models prune --json`` prints them."""
        return {
            "keep": self.keep,
            "bundles": {
                "kept": len(self.bundles_kept),
                "deleted": len(self.bundles_deleted),
                "young": len(self.bundles_young),
                "bytes_deleted": sum(self.bundles_deleted.values()),
            },
            "object_versions_deleted": self.objects_deleted,
            "object_bytes_deleted": self.object_bytes,
            "pinned": self.pinned,
            "pins_to_copy": [f"{v.device} {v.version_id}" for v in self.pins_to_copy],
        }


def _objects(registry: ModelRegistry, prefix: str) -> Iterator[dict[str, Any]]:
    paginator = registry.s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=registry.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            yield cast("dict[str, Any]", obj)


def plan(
    registry: ModelRegistry,
    keep: int = 10,
    min_age: float = 3600.0,
    now: datetime | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> Plan:
    """What to delete so that each device keeps its ``keep`` newest versions and its pinned
    ones (module docstring); bundles younger than ``min_age`` seconds are kept."""
    if not 1 <= keep <= HISTORY:
        raise ValueError(f"keep must be 1..{HISTORY} (the versions a manifest entry names)")
    out = Plan(keep)
    manifests = registry.shard_manifests()
    retained: set[str] = set()
    in_bundles: dict[str, int] = {}  # device -> its versions in bundles that are kept
    current_keys: set[str] = set()
    for manifest in manifests.values():
        for device, entry in manifest.devices.items():
            current_keys.add(entry.key)
            history = entry.history[:keep]
            retained.update(history)
            in_bundles[device] = max(in_bundles.get(device, 0), len(history))
    say(f"{len(manifests)} shard manifests, {len(retained)} bundles named by them")
    cutoff = (now or datetime.now(UTC)) - timedelta(seconds=min_age)
    base = f"{ArtifactKey.MODELS}/{registry.app}/"
    bundles = bundles_prefix(registry.app)
    folders: dict[str, dict[str, dict[str, int]]] = {}  # device -> version id -> file -> bytes
    listed = 0
    for obj in _objects(registry, base):
        listed += 1
        key = obj["Key"]
        if key.startswith(bundles):
            if key in retained:
                out.bundles_kept.append(key)
            elif obj["LastModified"] > cutoff:
                out.bundles_young.append(key)
            else:
                out.bundles_deleted[key] = int(obj.get("Size", 0))
            continue
        try:
            where = ArtifactKey.parse(key)
        except ValueError:
            continue  # not ours: left alone
        folders.setdefault(where.device, {}).setdefault(where.version_id, {})[
            key.rsplit("/", 1)[1]
        ] = int(obj.get("Size", 0))
    say(f"listed {listed} objects under {base}")
    for device, versions in sorted(folders.items()):
        _plan_objects(registry, out, device, versions, in_bundles.get(device, 0), current_keys)
    return out


def _plan_objects(
    registry: ModelRegistry,
    out: Plan,
    device: str,
    versions: dict[str, dict[str, int]],
    in_bundles: int,
    current_keys: set[str],
) -> None:
    """One device's versions stored as objects: pins kept (a pin still in a bundle that goes
    is copied first; a pin that cannot be read stops the prune before anything is deleted),
    the newest unpinned kept up to ``keep`` in all, the rest deleted."""
    pinned = sorted(v for v, files in versions.items() if ArtifactKey.PIN in files)
    if pinned:
        out.pinned[device] = pinned
    for vid in pinned:
        if ArtifactKey.FILE in versions[vid]:
            continue  # a copy of its own already
        version = registry.version(device, vid)  # unreadable: raised, nothing is deleted
        if version.key in out.bundles_deleted:
            out.pins_to_copy.append(version)
    stored = sorted(
        (v for v, files in versions.items() if ArtifactKey.FILE in files and v not in pinned),
        key=lambda v: (parse_version(v), v),
        reverse=True,
    )
    room = max(out.keep - in_bundles, 0)
    for vid in stored[room:]:
        where = ArtifactKey(registry.app, device, vid)
        if str(where) in current_keys:
            continue
        out.objects_deleted.setdefault(device, []).append(vid)
        for name, size in versions[vid].items():
            out.object_keys.append(where.prefix + name)
            out.object_bytes += size


def apply(
    registry: ModelRegistry, todo: Plan, say: Callable[[str], None] = lambda _: None
) -> PruneSummary:
    """Carry out a plan: copy the pins out of the bundles that go (a failed copy keeps its
    bundle), then delete, ``BATCH`` keys per request; the figures of what was done."""
    for version in todo.pins_to_copy:
        try:
            registry.materialize(version)
            say(f"copied pinned {version.device} {version.version_id} out of {version.key}")
        except (UnknownVersion, TamperedCheckpoint, OSError) as exc:
            log.error("pinned %s %s not copied (%s): keeping %s", version.device,
                      version.version_id, exc, version.key)  # fmt: skip
            todo.bundles_deleted.pop(version.key, None)
    keys = [*todo.bundles_deleted, *todo.object_keys]
    for start in range(0, len(keys), BATCH):
        batch = keys[start : start + BATCH]
        registry.s3.delete_objects(
            Bucket=registry.bucket,
            Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
        )
        say(f"deleted {start + len(batch)}/{len(keys)} objects")
    return todo.summary()

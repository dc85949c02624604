"""The batch models' registry: versioned artifacts of ``iotcast retrain``, which one is current.

Layout (the checkpoints' ``models/<app>/`` prefix, docs/checkpoints.md), in S3 or under a
local directory (the same keys below it):

- ``models/<app>/_batch/v<N>/model.pkl``: the pickled
  :class:`~online_models.retrain.BatchModel` (only lists, floats and strings inside);
- ``models/<app>/_batch/v<N>/manifest.json``: what it was trained on and how it validated
  (:func:`online_models.retrain.manifest`), with the sha256 and size of ``model.pkl``;
- ``models/<app>/_batch/current.json``: the version the processors should use, who made it
  current, when and why, and the history of such changes (newest last);
- ``models/<app>/_batch/v<N>/verdict.json``: the end of the version's shadow in the
  processors (``accepted`` or ``refused``, the shadow errors beside those of what it was
  to replace, which process judged and when), written once (:mod:`stream.batch_watch`);
- ``models/<app>/_batch/v<N>/events/<UTC stamp>-<kind>-<process>.json``: each step of the
  version's life in a processor (shadow, active, refused), one object each;
- ``models/<app>/_batch/v<N>/shadow/<process>.json``: a processor's shadow errors so far
  (rewritten each poll while it shadows the version), so that the verdict is judged on
  every processor's devices, not one's.

Versions are numbered 1, 2, ... in the order written; a version is never rewritten. With
``IOTCAST_HMAC_KEY`` set, manifests are HMAC-SHA256 signed (as the checkpoints' are), and a
model's bytes are handed out only under a manifest whose signature holds. The
model and the verdict are written create-only (S3's conditional write, ``If-None-Match:
*``, which AWS S3 and moto honour): two retrain jobs at once get two numbers, and of
processors judging a version at once exactly one verdict stands. ``current.json`` is
written only if it is still as read (``If-Match`` on its ETag), else read again: a
promote and a rollback at once both land in its history, in order. A model is unpickled
only after its bytes match the sha256 of its manifest. Promote and
rollback only move ``current.json``; the processors started with ``--batch-expert`` pick
it up within seconds (:mod:`stream.batch_watch`): a version with no verdict goes into
shadow first, one already accepted (a rollback) is weighed at once.

>>> import tempfile
>>> reg = BatchRegistry(DirectoryObjects(tempfile.mkdtemp()), "app")
>>> v = reg.put(b"model bytes", {"scope": "global"})
>>> v, reg.versions(), reg.manifest(1)["sha256"][:12], reg.current()
(1, [1], '9cb7487000bc', None)
>>> reg.promote(1, by="ops", reason="first")["version"], reg.current()["version"]
(1, 1)
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, cast

import orjson
from botocore.exceptions import ClientError

from stream.aws import S3Client
from stream.integrity import TamperedCheckpoint, signed_json, verified_body

__all__ = [
    "BatchRegistry",
    "Manifest",
    "DirectoryObjects",
    "Objects",
    "S3Objects",
    "UnknownBatchVersion",
    "batch_prefix",
    "shadow_totals",
]

Manifest = dict[str, object]  # a manifest.json or current.json, as read
_VERSION = re.compile(r"v(\d+)/manifest\.json$")
CREATE_ATTEMPTS = 5  # a conditional write that conflicts with another in flight
SET_ATTEMPTS = 5  # reads of current.json a promote or rollback makes while others change it
MAX_HISTORY = 100


class UnknownBatchVersion(LookupError):
    """No such batch version (the message lists what exists), or its bytes fail their hash."""


def batch_prefix(app: str) -> str:
    """Where an application's batch models live.

    >>> batch_prefix("iotcast")
    'models/iotcast/_batch/'
    """
    return f"models/{app}/_batch/"


class Objects(Protocol):
    """Keys to bytes: S3 or a directory."""

    def get(self, key: str) -> bytes | None: ...
    def get_tagged(self, key: str) -> tuple[bytes | None, str | None]: ...
    def put(self, key: str, body: bytes) -> None: ...
    def swap(self, key: str, body: bytes, tag: str | None) -> bool: ...
    def create(self, key: str, body: bytes) -> bool: ...
    def keys(self, prefix: str) -> Iterator[str]: ...


class S3Objects:
    """A bucket through a boto3 S3 client."""

    def __init__(self, s3: S3Client, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    def get(self, key: str) -> bytes | None:
        return self.get_tagged(key)[0]

    def get_tagged(self, key: str) -> tuple[bytes | None, str | None]:
        """The object's bytes and its ETag; (None, None) when there is none."""
        try:
            got = self.s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None, None
            raise
        return got["Body"].read(), got["ETag"]

    def put(self, key: str, body: bytes) -> None:
        kind = "application/json" if key.endswith(".json") else "application/octet-stream"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=kind)

    def create(self, key: str, body: bytes) -> bool:
        """Write ``key`` only if it does not exist; False if it does."""
        return self.swap(key, body, None)

    def swap(self, key: str, body: bytes, tag: str | None) -> bool:
        """Write ``key`` only if it is still as read (its ETag ``tag``; None: only if it does
        not exist): S3's conditional writes, ``If-Match`` and ``If-None-Match: *``. False
        if it changed. A conflict with another conditional write in flight is retried, as
        S3 asks."""
        kind = "application/json" if key.endswith(".json") else "application/octet-stream"
        for attempt in range(CREATE_ATTEMPTS):
            try:
                if tag is None:
                    self.s3.put_object(
                        Bucket=self.bucket, Key=key, Body=body, ContentType=kind, IfNoneMatch="*"
                    )
                else:
                    self.s3.put_object(
                        Bucket=self.bucket, Key=key, Body=body, ContentType=kind, IfMatch=tag
                    )
                return True
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                    return False
                if code != "ConditionalRequestConflict" or attempt == CREATE_ATTEMPTS - 1:
                    raise
                time.sleep(0.1 * 2**attempt)
        raise AssertionError("unreachable")

    def keys(self, prefix: str) -> Iterator[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            for obj in page.get("Contents", ()):
                yield obj["Key"]


class DirectoryObjects:
    """A local directory holding the same keys as files (written atomically)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def get(self, key: str) -> bytes | None:
        path = self.root / key
        return path.read_bytes() if path.is_file() else None

    def get_tagged(self, key: str) -> tuple[bytes | None, str | None]:
        """The file's bytes and their sha256; (None, None) when there is none."""
        raw = self.get(key)
        return raw, None if raw is None else hashlib.sha256(raw).hexdigest()

    def swap(self, key: str, body: bytes, tag: str | None) -> bool:
        """Write ``key`` only if it is still as read (``tag`` from :meth:`get_tagged`; None:
        only if it does not exist), under a lock file beside it; False if it changed."""
        if tag is None:
            return self.create(key, body)
        path = self.root / key
        with open(path.with_name(f".{path.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.get_tagged(key)[1] != tag:
                return False
            self.put(key, body)
            return True

    def put(self, key: str, body: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(body)
        os.replace(tmp, path)

    def create(self, key: str, body: bytes) -> bool:
        """Write ``key`` only if it does not exist (a hard link, atomic); False if it does."""
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(body)
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink()

    def keys(self, prefix: str) -> Iterator[str]:
        base = self.root / prefix
        if not base.is_dir():
            return
        for path in sorted(base.rglob("*")):
            if path.is_file():
                yield path.relative_to(self.root).as_posix()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def shadow_totals(
    shadows: Iterable[Manifest], references: Mapping[str, str] | None = None
) -> tuple[dict[tuple[int, str], list[float]], int]:
    """Processors' shadow errors (:meth:`BatchRegistry.shadows`) added up per horizon and
    reference: [error sum, scores, the reference's error sum, its scores]; with
    ``references`` (horizon -> reference name), only where a processor shadowed against
    that reference. And how many processors added something.

    >>> a = {"reference": {"60": "persistence"}, "sums": {"60": [7.0, 30, 10.0, 30]}}
    >>> b = {"reference": {"60": "v1"}, "sums": {"60": [7.0, 10, 10.0, 10]}}
    >>> shadow_totals([a, b])
    ({(60, 'persistence'): [7.0, 30, 10.0, 30], (60, 'v1'): [7.0, 10, 10.0, 10]}, 2)
    >>> shadow_totals([a, b], {"60": "v1"})
    ({(60, 'v1'): [7.0, 10, 10.0, 10]}, 1)
    """
    totals: dict[tuple[int, str], list[float]] = {}
    processors = 0
    for body in shadows:
        refs = cast("dict[str, str]", body.get("reference", {}))
        sums = cast("dict[str, list[float]]", body.get("sums", {}))
        same = [h for h in sums if references is None or refs.get(h) == references.get(h)]
        for h in same:
            total = totals.setdefault((int(h), refs.get(h, "?")), [0.0, 0, 0.0, 0])
            for i, x in enumerate(sums[h]):
                total[i] += x
        processors += bool(same)
    return totals, processors


def _who(process: object) -> str:
    """A process name as a key's part.

    >>> _who("ip-10-0-0-1:4242/worker 1")
    'ip-10-0-0-1_4242_worker_1'
    """
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(process))[:64]


class BatchRegistry:
    """The batch versions of one application in ``objects`` (see the module docstring).
    With ``hmac_key`` (``IOTCAST_HMAC_KEY``, the checkpoints' key) each manifest is signed
    when written and its signature checked before its model's bytes are handed out."""

    def __init__(self, objects: Objects, app: str, hmac_key: str | None = None) -> None:
        self.objects = objects
        self.app = app
        self.prefix = batch_prefix(app)
        self.hmac_key = hmac_key

    def versions(self) -> list[int]:
        """The version numbers written, oldest first."""
        found = []
        for key in self.objects.keys(self.prefix):
            m = _VERSION.search(key[len(self.prefix) :])
            if m:
                found.append(int(m.group(1)))
        return sorted(found)

    def _key(self, version: int, name: str) -> str:
        return f"{self.prefix}v{version}/{name}"

    def resolve(self, ref: str | int | None) -> int:
        """A version number from ``3``, ``v3`` or ``None`` (the current one)."""
        if ref is None:
            cur = self.current()
            if cur is None:
                raise UnknownBatchVersion(
                    "no batch version is current yet (iotcast models batch promote V)"
                )
            return int(cast(int, cur["version"]))
        text = str(ref).lstrip("v")
        if not text.isdigit():
            raise UnknownBatchVersion(f"{ref!r} is not a batch version (a number such as 3 or v3)")
        version = int(text)
        have = self.versions()
        if version not in have:
            known = ", ".join(f"v{v}" for v in have) or "none yet (iotcast retrain writes them)"
            raise UnknownBatchVersion(f"no batch version v{version}; versions: {known}")
        return version

    def put(self, model: bytes, manifest: Manifest) -> int:
        """Write a new version (the model, then its manifest, which makes it visible); its number.

        The number is claimed by writing the model create-only: two jobs writing at once
        get two numbers, and neither overwrites the other's model (a model left by a job
        that died before its manifest keeps its number, unused)."""
        version = max(self.versions(), default=0) + 1
        while not self.objects.create(self._key(version, "model.pkl"), model):
            version = max(max(self.versions(), default=0), version) + 1
        body = dict(manifest)
        body.update(
            version=version,
            app=self.app,
            key=self._key(version, "model.pkl"),
            sha256=hashlib.sha256(model).hexdigest(),
            bytes=len(model),
            written=body.get("written") or _now(),
        )
        self.objects.put(self._key(version, "manifest.json"), signed_json(body, self.hmac_key))
        return version

    def manifest(self, ref: str | int | None, *, verify: bool = False) -> Manifest:
        """Version ``ref``'s manifest (its signature left out); ``verify``: with an HMAC key,
        only if its signature holds."""
        version = self.resolve(ref)
        raw = self.objects.get(self._key(version, "manifest.json"))
        if raw is None:
            raise UnknownBatchVersion(f"batch version v{version} has no manifest")
        try:
            return verified_body(raw, self.hmac_key if verify else None, "its manifest")
        except TamperedCheckpoint as exc:
            raise UnknownBatchVersion(f"batch version v{version}: {exc}: refused") from None

    def model_bytes(self, ref: str | int | None) -> bytes:
        """The model's bytes, after its manifest's signature (with an HMAC key) and then the
        manifest's sha256 hold (never unpickled here)."""
        man = cast("dict[str, Any]", self.manifest(ref, verify=True))
        raw = self.objects.get(str(man["key"]))
        if raw is None:
            raise UnknownBatchVersion(f"batch version v{man['version']}: {man['key']} is missing")
        digest = hashlib.sha256(raw).hexdigest()
        if digest != man["sha256"]:
            raise UnknownBatchVersion(
                f"batch version v{man['version']}: {man['key']} has sha256 {digest[:12]}..., "
                f"its manifest says {str(man['sha256'])[:12]}... (corrupt or replaced): refused"
            )
        return raw

    def current(self) -> Manifest | None:
        """``current.json``: the current version and its history, or None before a promotion."""
        raw = self.objects.get(self.prefix + "current.json")
        return None if raw is None else orjson.loads(raw)  # type: ignore[no-any-return]

    def _set(
        self, action: str, by: str, reason: str, choose: Callable[[dict[str, Any] | None], int]
    ) -> Manifest:
        """Write ``current.json`` with the version ``choose(current)`` picks, only if nobody
        changed it since it was read (a conditional write); read and choose again if they
        did, so that two changes at once both land in the history, in order."""
        key = self.prefix + "current.json"
        for _ in range(SET_ATTEMPTS):
            raw, tag = self.objects.get_tagged(key)
            cur: dict[str, Any] | None = None if raw is None else orjson.loads(raw)
            version = choose(cur)
            entry = {
                "version": version,
                "previous": None if cur is None else cur.get("version"),
                "action": action,
                "by": by,
                "reason": reason,
                "at": _now(),
            }
            history = [*(cur or {}).get("history", []), entry][-MAX_HISTORY:]
            body = {**entry, "history": history}
            if self.objects.swap(key, orjson.dumps(body, option=orjson.OPT_INDENT_2), tag):
                return body
        raise RuntimeError(
            f"{key} changed under each of {SET_ATTEMPTS} attempts to {action}: "
            "another promote or rollback is running; try again"
        )

    def promote(self, ref: str | int, *, by: str, reason: str = "") -> Manifest:
        """Make version ``ref`` current (its bytes verified first); the new ``current.json``."""
        version = self.resolve(ref)
        self.model_bytes(version)
        return self._set("promote", by, reason, lambda _cur: version)

    # ------------------------------------------------------------ verdicts and events
    def verdict(self, version: int) -> Manifest | None:
        """The version's verdict after its shadow, or None (not judged yet)."""
        raw = self.objects.get(self._key(version, "verdict.json"))
        return None if raw is None else orjson.loads(raw)  # type: ignore[no-any-return]

    def put_verdict(self, version: int, verdict: Manifest) -> Manifest:
        """Write the version's verdict unless one exists; the verdict that stands (written
        create-only: of processors judging at the same moment, exactly one verdict stands)."""
        existing = self.verdict(version)
        if existing is not None:
            return existing
        body = {**verdict, "version": version}
        key = self._key(version, "verdict.json")
        if self.objects.create(key, orjson.dumps(body, option=orjson.OPT_INDENT_2)):
            return body
        stands = self.verdict(version)
        if stands is None:
            raise RuntimeError(f"{key}: refused as existing, then not found")
        return stands

    def put_shadow(self, version: int, by: str, sums: Manifest) -> None:
        """A processor's shadow errors of the version so far (replacing its earlier ones)."""
        self.objects.put(self._key(version, f"shadow/{_who(by)}.json"), orjson.dumps(sums))

    def shadows(self, version: int, *, other_than: str = "") -> list[Manifest]:
        """The latest shadow errors of the version of every processor but ``other_than``."""
        mine = self._key(version, f"shadow/{_who(other_than)}.json")
        out = []
        for key in self.objects.keys(self._key(version, "shadow/")):
            raw = None if key == mine or not key.endswith(".json") else self.objects.get(key)
            if raw is not None:
                out.append(orjson.loads(raw))
        return out

    def put_event(self, version: int, event: Manifest) -> str:
        """Record one step of the version's life; the key written."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        who = _who(event.get("by", ""))
        key = self._key(version, f"events/{stamp}-{event.get('kind', 'event')}-{who}.json")
        self.objects.put(key, orjson.dumps({**event, "version": version}))
        return key

    def events(self, version: int) -> list[Manifest]:
        """The version's recorded steps, oldest first."""
        out = []
        for key in sorted(self.objects.keys(self._key(version, "events/"))):
            raw = self.objects.get(key)
            if raw is not None:
                out.append(orjson.loads(raw))
        return out

    def summary(self, events: int = 5) -> Manifest | None:
        """What an operator sees: the current version, how it became current, its verdict
        and its last ``events`` steps (None before any version is current)."""
        cur = self.current()
        if cur is None:
            return None
        version = int(cast(int, cur["version"]))
        return {
            "current": version,
            "made_current": {k: cur.get(k) for k in ("action", "by", "at", "reason")},
            "verdict": self.verdict(version),
            "events": self.events(version)[-events:],
        }

    def rollback(self, to: str | int | None = None, *, by: str, reason: str = "") -> Manifest:
        """Make ``to`` current (default: the version current before the present one)."""

        def choose(cur: dict[str, Any] | None) -> int:
            if cur is None:
                raise UnknownBatchVersion("no batch version is current: nothing to roll back")
            target = to
            if target is None:
                earlier = [e["version"] for e in cur["history"] if e["version"] != cur["version"]]
                if not earlier:
                    raise UnknownBatchVersion(
                        f"v{cur['version']} is the only version ever current: give --to"
                    )
                target = earlier[-1]
            version = self.resolve(target)
            self.model_bytes(version)
            return version

        return self._set("rollback", by, reason, choose)

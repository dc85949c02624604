"""The model registry: every checkpointed version of a device's models in S3, verified.

The shard manifests ``checkpoints/<app>/<shard>/manifest.json`` name each device's
current version.  Its earlier versions are found two ways (:mod:`stream.checkpoint`):

- in bundles: each version record names the one before it (``previous``, with its
  sha256), so the versions of a device are a hash chain walked back from the
  manifest, one small ranged GET per version, newest first, until the first
  version or one that retention deleted;
- as objects of their own, ``models/<app>/<device>/all/<version-id>/``: versions
  written before bundles (``model.pkl`` and ``manifest.json``, the HMAC signature
  checked when a key is set) and pinned versions (``pinned.json``: promoted or
  rolled back to, see :meth:`ModelRegistry.pin`), one LIST per device.

:class:`ModelRegistry` merges the two and loads a version's ``DeviceModels`` only after its
bytes match the sha256 its verified record holds: a pickle runs code, so nothing
unverified is unpickled.

The batch expert's versions (``models/<app>/_batch/v<N>/``, written by ``iotcast
retrain``) have a registry of their own, :class:`stream.batch_registry.BatchRegistry`.

A version id is ``<version, 8 digits>-<writer>``; operators may name it by the number alone:

>>> parse_version("00000012-3fa9c2d1"), parse_version("12")
(12, 12)
>>> version_matches("00000012-3fa9c2d1", "12"), version_matches("00000012-3fa9c2d1", "13")
(True, False)
>>> raw = b'{"device": "d1", "sha256": "ab", "key": "k", "version": 1, "samples": 5}'
>>> verify_beside(raw, hmac_key=None)["samples"]
5
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import orjson
from botocore.exceptions import ClientError

from online_models import checkpoint_format
from online_models.records import ModelAtHorizon
from stream.bundle import Extent
from stream.checkpoint import (
    ArtifactKey,
    CheckpointStore,
    DeviceEntry,
    EntryMetrics,
    ModelFigures,
    ShardManifest,
    TamperedCheckpoint,
    VersionRecord,
    signed_json,
    verified_body,
)

if TYPE_CHECKING:
    from online_models.device import DeviceModels

__all__ = [
    "ArtifactManifest",
    "ModelRegistry",
    "Pin",
    "UnknownVersion",
    "Version",
    "parse_version",
    "verify_beside",
    "version_matches",
]


class UnknownVersion(LookupError):
    """No such device or version in the bucket (the message lists what exists)."""


def parse_version(version: str) -> int:
    """The version number of ``00000012-writer`` or ``12``."""
    head = version.split("-", 1)[0]
    try:
        return int(head)
    except ValueError:
        raise UnknownVersion(
            f"{version!r} is not a version (a number, or an id like 00000012-3fa9c2d1)"
        ) from None


def version_matches(version_id: str, ref: str) -> bool:
    """Does ``ref`` (a number or a full id) name ``version_id``?"""
    if "-" in ref:
        return version_id == ref
    return parse_version(version_id) == parse_version(ref)


ArtifactManifest = VersionRecord  # an artifact's ``manifest.json`` (the objects layout)


def verify_beside(raw: bytes, hmac_key: str | None) -> ArtifactManifest:
    """The body of an artifact's ``manifest.json``, its signature checked when a key is set."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise TamperedCheckpoint(
            "unreadable", f"artifact manifest is not valid JSON: {exc}"
        ) from None
    signature = body.pop("signature", None)
    if hmac_key:
        if not signature:
            raise TamperedCheckpoint(
                "unsigned", "artifact manifest carries no signature but an HMAC key is set"
            )
        expected = hmac.new(
            hmac_key.encode(), orjson.dumps(body, option=orjson.OPT_SORT_KEYS), hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(expected, str(signature.get("value", ""))):
            raise TamperedCheckpoint(
                "bad_signature",
                f"manifest of {body.get('key')!r} fails its HMAC-SHA256 signature (tampered, or another key)",
            )
    return cast(ArtifactManifest, body)  # what put_device writes; the reader checks what it uses


def _order(version_id: str) -> tuple[int, str]:
    return parse_version(version_id), version_id


@dataclass(frozen=True)
class Version:
    """One checkpointed version of a device's models, as its record or ``manifest.json`` says.

    ``offset`` is None for a version stored as objects of its own (written before bundles,
    or a pinned copy), else the artifact's place in the bundle ``key``; ``record`` is the
    extent of its version record there and ``previous`` that of the version before it.
    ``pinned``: an operator promoted it or rolled back to it (never pruned).
    """

    device: str
    version_id: str
    version: int
    key: str
    sha256: str
    samples: int
    size: int = 0
    created: str = ""
    shard_id: str = ""
    sequence: str | None = None
    metrics: EntryMetrics = field(default_factory=lambda: EntryMetrics())
    format: int = checkpoint_format.LEGACY
    offset: int | None = None
    record: Extent | None = None
    encoding: str = ""
    previous: Extent | None = None
    pinned: bool = False

    @classmethod
    def from_record(
        cls, device: str, body: VersionRecord, record: Extent | None = None, pinned: bool = False
    ) -> Version:
        """From a version record (``record``: where it was read in a bundle) or a
        ``manifest.json`` (objects)."""
        previous = body.get("previous")
        return cls(
            device=device,
            version_id=str(body.get("version_id") or ArtifactKey.parse(body["key"]).version_id),
            version=int(body["version"]),
            key=body["key"],
            sha256=body["sha256"],
            samples=int(body.get("samples", 0)),
            size=int(body.get("size", 0)),
            created=body.get("created", ""),
            shard_id=body.get("shard_id", ""),
            sequence=body.get("sequence"),
            metrics=body.get("metrics", {}),
            format=int(body.get("format", checkpoint_format.LEGACY)),
            offset=body.get("offset"),
            record=record,
            encoding=body.get("encoding", ""),
            previous=None if not previous else Extent(**previous),
            pinned=pinned,
        )

    @property
    def entry(self) -> DeviceEntry:
        return DeviceEntry(
            self.version, self.key, self.sha256, self.samples, self.metrics, self.size,
            self.format, offset=self.offset, record=self.record, version_id=self.version_id,
            created=self.created, encoding=self.encoding,
        )  # fmt: skip

    @property
    def layout(self) -> str:
        """``bundle`` or ``object`` (:mod:`stream.checkpoint`)."""
        return "object" if self.offset is None else "bundle"

    def record_dict(self) -> VersionRecord:
        """The version as a record (what ``pinned.json`` keeps of it)."""
        out: VersionRecord = {
            "device": self.device,
            "shard_id": self.shard_id,
            "sequence": self.sequence,
            "created": self.created,
            "version": self.version,
            "version_id": self.version_id,
            "key": self.key,
            "offset": self.offset,
            "sha256": self.sha256,
            "samples": self.samples,
            "metrics": self.metrics,
            "size": self.size,
            "format": self.format,
            "encoding": self.encoding,
        }
        return out

    def champion(self) -> dict[str, str]:
        return dict(self.metrics.get("champion", {}))

    def figures(self, model: str, horizon: str | int) -> ModelFigures:
        key = str(ModelAtHorizon(model, int(horizon)))
        return self.metrics.get("models", {}).get(key, ModelFigures()).copy()

    def model_names(self) -> list[str]:
        return sorted({ModelAtHorizon.parse(k).model for k in self.metrics.get("models", {})})

    def as_dict(self) -> dict[str, object]:
        return {
            "device": self.device,
            "version_id": self.version_id,
            "version": self.version,
            "key": self.key,
            "offset": self.offset,
            "layout": self.layout,
            "sha256": self.sha256,
            "samples": self.samples,
            "size": self.size,
            "created": self.created,
            "shard_id": self.shard_id,
            "sequence": self.sequence,
            "metrics": self.metrics,
            "format": self.format,
            "pinned": self.pinned,
        }


@dataclass(frozen=True)
class Pin:
    """Why a version is kept whatever retention says: ``pinned.json`` in its folder."""

    kind: str  # promote, rollback
    by: str = ""
    reason: str = ""
    command: str = ""
    at: str = ""


class ModelRegistry:
    """Versions of every device's models for one application (see the module docstring).

    ``store`` is a :class:`~stream.checkpoint.CheckpointStore`; every call blocks.
    """

    def __init__(self, store: CheckpointStore) -> None:
        self.store = store
        self.s3 = store.s3
        self.bucket = store.bucket
        self.app = store.app
        self._current: dict[str, tuple[str, DeviceEntry]] | None = None

    # ------------------------------------------------------------------ listing
    def _prefixes(self, prefix: str) -> list[str]:
        out: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "Delimiter": "/"}
        while True:
            page = self.s3.list_objects_v2(**kwargs)
            out += [p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", [])]
            if not page.get("IsTruncated"):
                return out
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def _folders(self, device: str) -> dict[str, set[str]]:
        """Version id -> the files in its folder, of the device's versions stored as objects."""
        prefix = ArtifactKey.versions_prefix(self.app, device)
        out: dict[str, set[str]] = {}
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        while True:
            page = self.s3.list_objects_v2(**kwargs)
            for obj in page.get("Contents", []):
                vid, _, name = obj["Key"][len(prefix) :].partition("/")
                out.setdefault(vid, set()).add(name)
            if not page.get("IsTruncated"):
                return out
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def devices(self) -> list[str]:
        """Devices with at least one checkpointed version."""
        folders = set(self._prefixes(f"{ArtifactKey.MODELS}/{self.app}/"))
        folders.discard(ArtifactKey.BUNDLES)
        return sorted(folders | set(self._held()))

    def chain(self, device: str, start: Extent | None = None) -> Iterator[Version]:
        """The device's versions in bundles, newest first: from the current one (or the
        record at ``start``) back along ``previous``, until the first one or one whose
        bundle retention deleted.  Each record is checked against the sha256 its successor
        (or the signed manifest) holds."""
        extent = start
        if extent is None:
            held = self._held().get(device)
            extent = held[1].record if held else None
        while extent is not None:
            try:
                body = self.store.read_record(extent)
            except TamperedCheckpoint as exc:
                if exc.reason == "missing_artifact":
                    return  # older versions were pruned
                raise
            if body.get("device") != device:
                raise TamperedCheckpoint(
                    "wrong_place", f"{extent.key}@{extent.offset} holds {body.get('device')!r}"
                )
            version = Version.from_record(device, body, extent)
            yield version
            extent = version.previous

    def versions(
        self, device: str, limit: int = 0, below: str | None = None
    ) -> tuple[list[Version], bool]:
        """The device's versions newest first (older than version id ``below`` if given),
        at most ``limit`` (0: all), and whether there are more."""
        folders = self._folders(device)
        bound = _order(below) if below else None
        found: dict[str, Version] = {}
        for v in self.chain(device):
            if bound is not None and _order(v.version_id) >= bound:
                continue
            found[v.version_id] = v
            if limit and len(found) > limit:
                break
        ids = {v for v in folders if bound is None or _order(v) < bound} | set(found)
        ranked = sorted(ids, key=_order, reverse=True)
        shown = ranked[:limit] if limit else ranked
        out = []
        for vid in shown:
            pinned = ArtifactKey.PIN in folders.get(vid, ())
            v = found.get(vid) or self._object_version(device, vid, folders[vid])
            out.append(v if v.pinned == pinned else _with(v, pinned=pinned))
        return out, len(ranked) > len(shown)

    def version_ids(self, device: str) -> list[str]:
        """Every version id of ``device`` still stored, oldest first."""
        ids = set(self._folders(device)) | {v.version_id for v in self.chain(device)}
        return sorted(ids, key=_order)

    def _object_version(self, device: str, version_id: str, files: set[str]) -> Version:
        where = ArtifactKey(self.app, device, version_id)
        if ArtifactKey.MANIFEST in files:
            return self._manifest_version(where, pinned=ArtifactKey.PIN in files)
        return self._pinned_version(where)

    def _get(self, key: str) -> bytes | None:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None
            raise

    def _manifest_version(self, where: ArtifactKey, pinned: bool = False) -> Version:
        raw = self._get(where.manifest_key)
        if raw is None:
            raise UnknownVersion(f"{where.manifest_key} is missing")
        body = verify_beside(raw, self.store.hmac_key)
        if body.get("device") != where.device or not str(body.get("key", "")).startswith(
            where.prefix
        ):
            raise TamperedCheckpoint(
                "wrong_place",
                f"{where.manifest_key} describes {body.get('key')!r}, not this version",
            )
        return Version.from_record(where.device, body, pinned=pinned)

    def _pinned_version(self, where: ArtifactKey) -> Version:
        raw = self._get(where.pin_key)
        if raw is None:
            raise UnknownVersion(f"{where.pin_key} is missing")
        body: Any = verified_body(raw, self.store.hmac_key, where.pin_key)
        record, extent = body["version"], body.get("record")
        if record.get("device") != where.device or record.get("version_id") != where.version_id:
            raise TamperedCheckpoint("wrong_place", f"{where.pin_key} describes another version")
        return Version.from_record(
            where.device, record, None if extent is None else Extent(**extent), pinned=True
        )

    def version(self, device: str, version_id: str) -> Version:
        """The version (its record verified): a copy of its own first, else its pin, else
        found along the device's chain of bundle versions."""
        where = ArtifactKey(self.app, device, version_id)
        for read in (self._manifest_version, self._pinned_version):
            try:
                return read(where)
            except UnknownVersion:
                pass
        for v in self.chain(device):
            if v.version_id == version_id:
                return v
            if _order(v.version_id) < _order(version_id):
                break
        raise UnknownVersion(
            f"device {device!r} has no version {version_id!r} (no {where.manifest_key}, not in "
            "its bundles' chain: never written, or pruned)"
        )

    def resolve(self, device: str, ref: str) -> str:
        """The version id that ``ref`` (a number or an id) names; UnknownVersion if none."""
        ids = set(self._folders(device))
        want = parse_version(ref)
        for v in self.chain(device):
            ids.add(v.version_id)
            if v.version < want:
                break
        if not ids:
            raise UnknownVersion(
                f"device {device!r} has no checkpointed versions under models/{self.app}/"
            )
        matches = sorted((v for v in ids if version_matches(v, ref)), key=_order)
        if not matches:
            shown = ", ".join(sorted(ids, key=_order)[-5:])
            raise UnknownVersion(f"device {device!r} has no version {ref!r}; newest: {shown}")
        return matches[-1]

    # ------------------------------------------------------------------ current
    def shard_manifests(self) -> dict[str, ShardManifest]:
        """Every shard's manifest (verified), by shard id."""
        out = {}
        for shard in self._prefixes(f"checkpoints/{self.app}/"):
            manifest = self.store.load_shard_manifest(shard)
            if manifest is not None:
                out[shard] = manifest
        return out

    def current(
        self, manifests: dict[str, ShardManifest] | None = None
    ) -> dict[str, tuple[str, DeviceEntry]]:
        """Device -> (shard, entry) of its current version: the newest a shard manifest names."""
        best: dict[str, tuple[str, DeviceEntry]] = {}
        for shard, manifest in (self.shard_manifests() if manifests is None else manifests).items():
            for device, entry in manifest.devices.items():
                held = best.get(device)
                if held is None or (entry.version, entry.samples) > (
                    held[1].version,
                    held[1].samples,
                ):
                    best[device] = (shard, entry)
        if manifests is None:
            self._current = best
        return best

    def _held(self) -> dict[str, tuple[str, DeviceEntry]]:
        """:meth:`current`, read once per registry (a command's view of the manifests)."""
        return self._current if self._current is not None else self.current()

    # --------------------------------------------------------------------- pins
    def pin(self, version: Version, pin: Pin, *, copy: bool) -> str:
        """Keep ``version`` whatever retention says; returns the key of its ``pinned.json``.

        ``copy``: a version in a bundle is first copied to objects of its own (its bytes
        verified on the way), so that no bundle deletion can reach it (a rollback's target;
        retention copies a promoted version's too before deleting its bundle).
        """
        where = ArtifactKey(self.app, version.device, version.version_id)
        if copy and version.offset is not None:
            version = self.materialize(version)
        body: dict[str, object] = {
            "pin": {"kind": pin.kind, "by": pin.by, "reason": pin.reason,
                    "command": pin.command, "at": pin.at or _now()},
            "version": version.record_dict(),
            "record": None if version.record is None else _extent_json(version.record),
        }  # fmt: skip
        self.store.put_object(
            where.pin_key, signed_json(body, self.store.hmac_key), "application/json"
        )
        return where.pin_key

    def materialize(self, version: Version) -> Version:
        """Copy a bundle version to objects of its own (``model.pkl``, ``manifest.json``);
        the copy's version (same id, samples, metrics, format)."""
        payload = self.payload(version)  # verified against the record's sha256
        self.store.put_device(
            version.device, version.version, payload, version.samples, version.metrics,
            shard_id=version.shard_id, sequence=version.sequence,
            version_id_=version.version_id, created=version.created, fmt=version.format,
        )  # fmt: skip
        return self._manifest_version(ArtifactKey(self.app, version.device, version.version_id))

    # --------------------------------------------------------------------- load
    def payload(self, version: Version) -> bytes:
        """The version's pickle, its bytes checked against the record's sha256."""
        return self.store.load_device(version.device, version.entry)

    def load(self, version: Version) -> DeviceModels:
        """The version's ``DeviceModels``: format checked, sha256 matched, then unpickled."""
        models = self.store.load_models(version.device, version.entry)
        if getattr(models, "device", version.device) != version.device:
            raise TamperedCheckpoint(
                "wrong_device", f"{version.key} holds the models of {models.device!r}"
            )
        return models


def _with(version: Version, *, pinned: bool) -> Version:
    return replace(version, pinned=pinned)


def _extent_json(e: Extent) -> dict[str, object]:
    return {"key": e.key, "offset": e.offset, "length": e.length, "sha256": e.sha256}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")

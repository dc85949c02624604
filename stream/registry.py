"""The model registry: every checkpointed version of a device's models in S3, verified.

The processor writes a device's models as ``models/<app>/<device>/all/<version-id>/model.pkl``
with a ``manifest.json`` beside it (:meth:`stream.checkpoint.CheckpointStore.put_device`);
the shard manifests ``checkpoints/<app>/<shard>/manifest.json`` say which version is the
current one.  :class:`ModelRegistry` lists those versions, reads their manifests (the HMAC
signature checked when a key is set) and loads a version's ``DeviceModels`` only after its
bytes match the manifest's sha256: a pickle runs code, so nothing unverified is unpickled.

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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict, cast

import orjson
from botocore.exceptions import ClientError

from online_models import checkpoint_format
from stream.checkpoint import (
    CheckpointStore,
    DeviceEntry,
    EntryMetrics,
    ModelFigures,
    ShardManifest,
    TamperedCheckpoint,
)

if TYPE_CHECKING:
    from online_models.device import DeviceModels

__all__ = [
    "ArtifactManifest",
    "ModelRegistry",
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


class ArtifactManifest(TypedDict, total=False):
    """An artifact's ``manifest.json`` (:meth:`stream.checkpoint.CheckpointStore.put_device`):
    the device's :class:`~stream.checkpoint.DeviceEntry` and where it was written from."""

    device: str
    shard_id: str
    sequence: str | None
    created: str
    version: int
    key: str
    sha256: str
    samples: int
    metrics: EntryMetrics
    size: int
    format: int


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


@dataclass(frozen=True)
class Version:
    """One checkpointed version of a device's models, as its ``manifest.json`` describes it."""

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

    @property
    def entry(self) -> DeviceEntry:
        return DeviceEntry(
            self.version, self.key, self.sha256, self.samples, self.metrics, self.size, self.format
        )

    def champion(self) -> dict[str, str]:
        return dict(self.metrics.get("champion", {}))

    def figures(self, model: str, horizon: str | int) -> ModelFigures:
        return self.metrics.get("models", {}).get(f"{model}@{horizon}", ModelFigures()).copy()

    def model_names(self) -> list[str]:
        return sorted({k.split("@", 1)[0] for k in self.metrics.get("models", {})})

    def as_dict(self) -> dict[str, object]:
        return {
            "device": self.device,
            "version_id": self.version_id,
            "version": self.version,
            "key": self.key,
            "sha256": self.sha256,
            "samples": self.samples,
            "size": self.size,
            "created": self.created,
            "shard_id": self.shard_id,
            "sequence": self.sequence,
            "metrics": self.metrics,
            "format": self.format,
        }


class ModelRegistry:
    """Versions of every device's models for one application (see the module docstring).

    ``store`` is a :class:`~stream.checkpoint.CheckpointStore`; every call blocks.
    """

    def __init__(self, store: CheckpointStore) -> None:
        self.store = store
        self.s3 = store.s3
        self.bucket = store.bucket
        self.app = store.app

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

    def devices(self) -> list[str]:
        """Devices with at least one checkpointed version."""
        return sorted(self._prefixes(f"models/{self.app}/"))

    def version_ids(self, device: str) -> list[str]:
        """Every version id of ``device``, oldest first."""
        ids = self._prefixes(f"models/{self.app}/{device}/all/")
        return sorted(ids, key=lambda v: (parse_version(v), v))

    def version(self, device: str, version_id: str) -> Version:
        """The version's manifest (signature verified when a key is set)."""
        key = f"models/{self.app}/{device}/all/{version_id}/manifest.json"
        try:
            raw = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                raise UnknownVersion(
                    f"device {device!r} has no version {version_id!r} ({key} is missing)"
                ) from None
            raise
        body = verify_beside(raw, self.store.hmac_key)
        if body.get("device") != device or not str(body.get("key", "")).startswith(
            f"models/{self.app}/{device}/all/{version_id}/"
        ):
            raise TamperedCheckpoint(
                "wrong_place", f"{key} describes {body.get('key')!r}, not this version"
            )
        return Version(
            device=device,
            version_id=version_id,
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
        )

    def resolve(self, device: str, ref: str) -> str:
        """The version id that ``ref`` (a number or an id) names; UnknownVersion if none."""
        ids = self.version_ids(device)
        if not ids:
            raise UnknownVersion(
                f"device {device!r} has no checkpointed versions under models/{self.app}/"
            )
        matches = [v for v in ids if version_matches(v, ref)]
        if not matches:
            shown = ", ".join(ids[-5:])
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
        return best

    # --------------------------------------------------------------------- load
    def payload(self, version: Version) -> bytes:
        """The artifact's bytes, checked against the manifest's sha256."""
        return self.store.load_device(version.device, version.entry)

    def load(self, version: Version) -> DeviceModels:
        """The version's ``DeviceModels``: format checked, sha256 matched, then unpickled."""
        models = self.store.load_models(version.device, version.entry)
        if getattr(models, "device", version.device) != version.device:
            raise TamperedCheckpoint(
                "wrong_device", f"{version.key} holds the models of {models.device!r}"
            )
        return models

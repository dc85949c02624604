"""Checkpoints in S3: the shard manifest, the bundle of each checkpoint, device versions.

A shard's checkpoint is committed by one S3 object, its manifest
``checkpoints/<app>/<shard-id>/manifest.json``: the last sequence number learned
and, for every device of the shard, a :class:`DeviceEntry` saying where its
models are (a pickled ``DeviceModels``), their sha256, sample count, metrics and
model-set format (:mod:`online_models.checkpoint_format`).

Where the models are (the layout; both are read, only the first is written):

- **bundle** (this code): every checkpoint writes the shard's changed devices as
  one object, ``models/<app>/_bundles/<shard-id>/<UTC stamp>-<writer>.bin``
  (:mod:`stream.bundle`): for each device its artifact (the pickle, zlib) then
  its *version record* (:class:`VersionRecord`, JSON: what the old per-device
  ``manifest.json`` held, plus ``previous``, the extent and sha256 of the
  device's version record before it).  The entry records the artifact's
  ``offset`` and ``size`` in the bundle and the record's extent (``record``):
  restoring a device is one ranged GET, listing its versions walks the chain of
  records back from the manifest, one small ranged GET each
  (:mod:`stream.registry`).  Requests per checkpoint: the bundle (one PUT, or a
  multipart upload: 2 + one per 8 MiB part), then the manifest, whatever the
  number of devices.
- **objects** (the code before issue 26, still read; pinned versions are
  written so): ``models/<app>/<device>/all/<version>/model.pkl`` with a
  ``manifest.json`` beside it, two PUTs per device (:meth:`CheckpointStore.put_device`).

The bundle is written first, the manifest last: a crash between the two leaves an
unreferenced bundle (``iotcast models prune`` deletes it), never a manifest that
points at something missing.  With an HMAC key, manifests carry an HMAC-SHA256
signature; loading verifies the signature and every artifact's and record's
sha256 and refuses what does not match (:class:`TamperedCheckpoint`), and refuses
a model-set format this code cannot read before unpickling anything.

>>> m = ShardManifest("shardId-0", "42", {}, finished=False)
>>> raw = m.to_json(hmac_key="k")
>>> ShardManifest.from_json(raw, hmac_key="k").sequence
'42'
>>> try:
...     ShardManifest.from_json(raw.replace(b'"42"', b'"43"'), hmac_key="k")
... except TamperedCheckpoint as e:
...     print("refused:", e.reason)
refused: bad_signature
"""

from __future__ import annotations

import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypedDict, TypeVar, cast

import orjson
from botocore.exceptions import ClientError

from online_models import checkpoint_format
from stream.aws import GetObjectOutput, S3Client
from stream.bundle import BundleS3, Extent, get_extent, get_extents, put_stream, spans
from stream.integrity import TamperedCheckpoint, sha256_hex, signed_json, verified_body

if TYPE_CHECKING:
    from online_models.device import DeviceModels

_R = TypeVar("_R")
_T = TypeVar("_T")
_U = TypeVar("_U")

__all__ = [
    "ArtifactKey",
    "CheckpointS3",
    "CheckpointStore",
    "DeviceEntry",
    "EntryMetrics",
    "ModelFigures",
    "ShardManifest",
    "TamperedCheckpoint",
    "VersionRecord",
    "bundle_key",
    "device_artifact_key",
    "shard_manifest_key",
    "sha256_hex",
    "signed_json",
    "verified_body",
]

HISTORY = 32  # bundles of a device's newest versions a manifest entry names (retention reads them)
ENCODING = "zlib"  # how a bundle stores an artifact: the pickle, zlib level 1 (2-4x smaller)


class CheckpointS3(S3Client, BundleS3, Protocol):
    """The S3 calls of the checkpoints: the store's, and a bundle's (boto3's client has them)."""

    def get_object(self, *, Bucket: str, Key: str, Range: str = ...) -> GetObjectOutput: ...

    def delete_objects(self, *, Bucket: str, Delete: DeleteRequest) -> object: ...


class _Key(TypedDict):
    Key: str


class DeleteRequest(TypedDict):
    Objects: list[_Key]
    Quiet: bool


def shard_manifest_key(app: str, shard_id: str) -> str:
    return f"checkpoints/{app}/{shard_id}/manifest.json"


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def bundles_prefix(app: str, shard_id: str | None = None) -> str:
    """``models/<app>/_bundles/`` (every shard's bundles), or one shard's folder in it."""
    base = f"{ArtifactKey.MODELS}/{app}/{ArtifactKey.BUNDLES}/"
    return base if shard_id is None else f"{base}{shard_id}/"


def bundle_key(app: str, shard_id: str, writer: str, at: datetime | None = None) -> str:
    """Where one checkpoint of a shard puts its devices: sorts in the order written.

    >>> bundle_key("iotcast", "shardId-0", "3fa9c2d1", datetime(2026, 12, 7, tzinfo=UTC))
    'models/iotcast/_bundles/shardId-0/20261207T000000000000Z-3fa9c2d1.bin'
    """
    return f"{bundles_prefix(app, shard_id)}{_stamp(at or datetime.now(UTC))}-{writer}.bin"


@dataclass(frozen=True)
class ArtifactKey:
    """Where one version of a device's models lives as objects of its own (the layout before
    bundles, and every pinned version), built and parsed here only:
    ``models/<app>/<device>/all/<version_id>/model.pkl``, its ``manifest.json`` beside it
    and, when an operator pinned it, ``pinned.json``.  A version id is
    ``<version, 8 digits>-<writer>``.

    >>> key = ArtifactKey.parse("models/iotcast/b8:27:eb:bf:9d:51/all/00000012-3fa9c2d1/model.pkl")
    >>> key.device, key.version_id, key.version
    ('b8:27:eb:bf:9d:51', '00000012-3fa9c2d1', 12)
    >>> str(key) == "models/iotcast/b8:27:eb:bf:9d:51/all/00000012-3fa9c2d1/model.pkl"
    True
    >>> key.manifest_key
    'models/iotcast/b8:27:eb:bf:9d:51/all/00000012-3fa9c2d1/manifest.json'
    >>> ArtifactKey.parse("models/a/d/all/00000001-x/other.bin")
    Traceback (most recent call last):
    ...
    ValueError: not a model artifact key: 'models/a/d/all/00000001-x/other.bin'
    """

    app: str
    device: str
    version_id: str

    MODELS: ClassVar[str] = "models"
    ALL: ClassVar[str] = "all"  # the model-set segment: every model of the device in one pickle
    FILE: ClassVar[str] = "model.pkl"
    MANIFEST: ClassVar[str] = "manifest.json"
    PIN: ClassVar[str] = "pinned.json"
    BUNDLES: ClassVar[str] = "_bundles"  # models/<app>/_bundles/: not a device

    @classmethod
    def parse(cls, key: str) -> ArtifactKey:
        """The key's parts; ValueError when ``key`` is not an artifact's (or its manifest's)."""
        parts = key.split("/")
        if (
            len(parts) < 6
            or parts[0] != cls.MODELS
            or parts[-3] != cls.ALL
            or parts[-1] not in (cls.FILE, cls.MANIFEST, cls.PIN)
        ):
            raise ValueError(f"not a model artifact key: {key!r}")
        return cls(parts[1], "/".join(parts[2:-3]), parts[-2])

    @classmethod
    def versions_prefix(cls, app: str, device: str) -> str:
        """``models/<app>/<device>/all/``: where every version of the device lives."""
        return f"{cls.MODELS}/{app}/{device}/{cls.ALL}/"

    @property
    def prefix(self) -> str:
        """``models/<app>/<device>/all/<version_id>/``: the version's folder."""
        return f"{self.versions_prefix(self.app, self.device)}{self.version_id}/"

    @property
    def manifest_key(self) -> str:
        return self.prefix + self.MANIFEST

    @property
    def pin_key(self) -> str:
        """``pinned.json``: the version was promoted or rolled back to; never pruned."""
        return self.prefix + self.PIN

    @property
    def version(self) -> int:
        """The version number (the id's leading digits)."""
        return int(self.version_id.split("-", 1)[0])

    def __str__(self) -> str:
        return self.prefix + self.FILE


def device_artifact_key(app: str, device: str, version_id: str) -> str:
    """``models/<app>/<device>/all/<version_id>/model.pkl`` (:class:`ArtifactKey`)."""
    return str(ArtifactKey(app, device, version_id))


def version_id(version: int, writer: str) -> str:
    """``00000012-3fa9c2d1``: a version number and the process that wrote it.

    >>> version_id(12, "3fa9c2d1")
    '00000012-3fa9c2d1'
    """
    return f"{version:08d}-{writer}"


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class ModelFigures(TypedDict, total=False):
    """One model's figures at one horizon in a manifest (``ErrorStats.as_dict()``, in part)."""

    n: int | None
    mae: float | None
    rmse: float | None
    rolling_mae: float | None


class EntryMetrics(TypedDict, total=False):
    """What a manifest keeps of a device's figures (:func:`stream.state.entry_metrics`):
    champion by horizon (a string), the last reading's time, figures by ``model@horizon``."""

    champion: dict[str, str]
    last_ts: float | None
    models: dict[str, ModelFigures]


class ExtentDict(TypedDict):
    """An :class:`~stream.bundle.Extent` in JSON."""

    key: str
    offset: int
    length: int
    sha256: str


def _extent_dict(e: Extent) -> ExtentDict:
    return {"key": e.key, "offset": e.offset, "length": e.length, "sha256": e.sha256}


def _extent(d: Mapping[str, Any]) -> Extent:
    return Extent(str(d["key"]), int(d["offset"]), int(d["length"]), str(d["sha256"]))


class VersionRecord(TypedDict, total=False):
    """One version of a device, as its record (bundle) or ``manifest.json`` (objects) says:
    the :class:`DeviceEntry` and where it was written from; in a bundle, ``previous`` is
    the extent of the device's record before it (None: the first in a bundle)."""

    device: str
    shard_id: str
    sequence: str | None
    created: str
    version: int
    version_id: str
    key: str
    offset: int | None
    sha256: str
    samples: int
    metrics: EntryMetrics
    size: int
    format: int
    encoding: str
    previous: ExtentDict | None


@dataclass(frozen=True)
class DeviceEntry:
    """Where a device's models of one checkpoint live and what they hold.

    ``offset`` is None for an object of its own (``key`` is the artifact), else the
    artifact's first byte in the bundle ``key`` (``size`` bytes from there), and
    ``record`` the extent of its :class:`VersionRecord`; ``history`` names the bundles of
    the device's newest versions, newest (this one's) first, at most :data:`HISTORY`:
    what retention keeps (:mod:`stream.retention`).  ``format`` is the model-set
    format (absent from manifests written before formats were recorded:
    :data:`online_models.checkpoint_format.LEGACY`); ``encoding`` how the pickle is
    stored (``zlib``, or ``""``: as is).

    >>> e = DeviceEntry(3, "models/app/d1/all/00000003-ab12cd34/model.pkl", "e3b0", 1200)
    >>> e.samples, e.format, e.version_id, e.extent
    (1200, 1, '00000003-ab12cd34', None)
    >>> b = DeviceEntry(4, "models/app/_bundles/s/x.bin", "e3b0", 1, size=10, offset=20,
    ...                 version_id="00000004-ab12cd34")
    >>> b.extent.range_header, DeviceEntry.from_dict(b.to_dict()) == b
    ('bytes=20-29', True)
    """

    version: int
    key: str
    sha256: str
    samples: int
    metrics: EntryMetrics = field(default_factory=lambda: EntryMetrics())
    size: int = 0
    format: int = checkpoint_format.LEGACY
    offset: int | None = None
    record: Extent | None = None
    version_id: str = ""
    created: str = ""
    encoding: str = ""
    history: tuple[str, ...] = ()  # bundles of its newest versions, this one first (HISTORY)

    def __post_init__(self) -> None:
        if not self.version_id:  # objects: the id is in the key
            object.__setattr__(self, "version_id", ArtifactKey.parse(self.key).version_id)

    @property
    def extent(self) -> Extent | None:
        """The artifact's bytes in its bundle (None: an object of its own)."""
        return (
            None if self.offset is None else Extent(self.key, self.offset, self.size, self.sha256)
        )

    def to_dict(self, bundles: dict[str, int] | None = None) -> dict[str, object]:
        """The entry in JSON; with ``bundles`` (a manifest's table of bundle keys, filled
        here), ``history`` is written as indices into it."""
        out: dict[str, object] = {
            "version": self.version,
            "key": self.key,
            "sha256": self.sha256,
            "samples": self.samples,
            "metrics": self.metrics,
            "size": self.size,
            "format": self.format,
            "version_id": self.version_id,
        }
        if self.offset is not None:
            out["offset"] = self.offset
            out["created"] = self.created
            out["encoding"] = self.encoding
            if self.record is not None:
                out["record"] = _extent_dict(self.record)
            if bundles is None:
                out["history"] = list(self.history)
            else:
                out["history"] = [bundles.setdefault(k, len(bundles)) for k in self.history]
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, object], bundles: list[str] | None = None) -> DeviceEntry:
        """An entry of a manifest of either layout (TypeError/KeyError/IndexError: malformed);
        ``bundles``: the manifest's table ``history`` indexes."""
        fields: dict[str, Any] = dict(d)
        record = fields.pop("record", None)
        history = fields.pop("history", ())
        keys = tuple(bundles[i] for i in history) if bundles is not None else tuple(history)
        return cls(**fields, record=None if record is None else _extent(record), history=keys)


@dataclass
class ShardManifest:
    """The commit point of one shard's checkpoint.

    ``sequence`` is the last Kinesis sequence number whose record is reflected
    in the devices' models (a decimal string; compare as integers).
    ``finished`` is set once a closed shard (after a split or merge) has been
    consumed to its end: its children may start.

    >>> m = ShardManifest("shardId-000000000001", "49680594449644772342458435545619960643467926871906189330", {})
    >>> m.sequence_int > 10**55, m.finished
    (True, False)
    """

    shard_id: str
    sequence: str | None
    devices: dict[str, DeviceEntry]
    finished: bool = False
    created: str = field(default_factory=_now_iso)
    writer: str = ""

    def to_json(self, hmac_key: str | None = None) -> bytes:
        """Compact JSON (a dense shard's manifest holds thousands of entries), signed; the
        bundle keys the entries' histories name are written once, in ``bundles``."""
        table: dict[str, int] = {}
        devices = {d: e.to_dict(table) for d, e in sorted(self.devices.items())}
        body: dict[str, object] = {
            "shard_id": self.shard_id,
            "sequence": self.sequence,
            "finished": self.finished,
            "created": self.created,
            "writer": self.writer,
            "devices": devices,
        }
        if table:
            body["bundles"] = list(table)
        return signed_json(body, hmac_key, indent=False)

    @classmethod
    def from_json(cls, raw: bytes, hmac_key: str | None = None) -> ShardManifest:
        body: Any = verified_body(raw, hmac_key, "manifest")  # fields checked here
        try:
            table = [str(k) for k in body.get("bundles", [])]
            return cls(
                shard_id=body["shard_id"],
                sequence=body["sequence"],
                devices={d: DeviceEntry.from_dict(e, table) for d, e in body["devices"].items()},
                finished=bool(body.get("finished", False)),
                created=body.get("created", ""),
                writer=body.get("writer", ""),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise TamperedCheckpoint("malformed", f"manifest lacks a field: {exc}") from None

    @property
    def sequence_int(self) -> int | None:
        return None if self.sequence is None else int(self.sequence)


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "InvalidRange", "416")


def _encode(payload: bytes) -> tuple[bytes, str]:
    data = zlib.compress(payload, 1)
    return data, sha256_hex(data)


def decode(data: bytes, encoding: str, where: str) -> bytes:
    """An artifact's pickle from its stored (and verified) bytes."""
    if encoding == "":
        return data
    if encoding == ENCODING:
        return zlib.decompress(data)
    raise TamperedCheckpoint(
        "incompatible_format", f"{where} is stored as {encoding!r}, which this code cannot read"
    )


Artifact = tuple[str, int, bytes, int, EntryMetrics]  # device, version, pickle, samples, metrics
Mapper = Callable[[Callable[[_T], _U], Iterable[_T]], Iterator[_U]]


class CheckpointStore:
    """Reads and writes checkpoints in one bucket for one application (consumer group).

    ``s3`` is a boto3 S3 client; every method blocks (run them off the event loop).

    >>> from stream.checkpoint import shard_manifest_key
    >>> store = CheckpointStore(s3=None, bucket="iotcast", app="iotcast")
    >>> shard_manifest_key(store.app, "shardId-000000000000")
    'checkpoints/iotcast/shardId-000000000000/manifest.json'
    """

    def __init__(
        self,
        s3: CheckpointS3 | S3Client,
        bucket: str,
        app: str,
        hmac_key: str | None = None,
        *,
        part_workers: int = 4,
    ) -> None:
        self.s3 = cast(CheckpointS3, s3)
        self.bucket = bucket
        self.app = app
        self.hmac_key = hmac_key
        self.writer = uuid.uuid4().hex[:8]
        self.part_workers = part_workers  # a bundle's parts uploaded at a time

    # ------------------------------------------------------------------ write
    def put_bundle(
        self,
        shard_id: str,
        sequence: str | None,
        artifacts: list[Artifact],
        committed: Mapping[str, DeviceEntry],
        mapper: Mapper[bytes, tuple[bytes, str]] = map,
    ) -> dict[str, DeviceEntry]:
        """Write the changed devices of one checkpoint of a shard as one bundle; their entries.

        ``committed`` (the shard's entries before this checkpoint) gives each record its
        ``previous``; ``mapper`` (a pool's ``map``) compresses and hashes the artifacts.
        One PUT, or a multipart upload of 8 MiB parts (:func:`stream.bundle.put_bundle`).
        """
        if not artifacts:
            return {}
        created = _now_iso()
        key = bundle_key(self.app, shard_id, self.writer)
        entries: dict[str, DeviceEntry] = {}

        def chunks() -> Iterator[bytes]:  # compressed on the pool while the parts go up
            offset = 0
            stored = mapper(_encode, [a[2] for a in artifacts])
            for (device, version, _, samples, metrics), (data, digest) in zip(
                artifacts, stored, strict=True
            ):
                before = committed.get(device)
                vid = version_id(version, self.writer)
                record: VersionRecord = {
                    "device": device,
                    "shard_id": shard_id,
                    "sequence": sequence,
                    "created": created,
                    "version": version,
                    "version_id": vid,
                    "key": key,
                    "offset": offset,
                    "sha256": digest,
                    "samples": samples,
                    "metrics": metrics,
                    "size": len(data),
                    "format": checkpoint_format.FORMAT,
                    "encoding": ENCODING,
                    "previous": _extent_dict(before.record) if before and before.record else None,
                }
                raw = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
                at = offset + len(data)
                entries[device] = DeviceEntry(
                    version, key, digest, samples, metrics, len(data), checkpoint_format.FORMAT,
                    offset=offset, record=Extent(key, at, len(raw), sha256_hex(raw)),
                    version_id=vid, created=created, encoding=ENCODING,
                    history=(key, *(before.history if before else ()))[:HISTORY],
                )  # fmt: skip
                offset = at + len(raw)
                yield data
                yield raw

        put_stream(self.s3, self.bucket, key, chunks(), workers=self.part_workers)
        return entries

    def put_device(
        self,
        device: str,
        version: int,
        payload: bytes,
        samples: int,
        metrics: EntryMetrics,
        *,
        shard_id: str,
        sequence: str | None,
        version_id_: str | None = None,
        created: str | None = None,
        fmt: int = checkpoint_format.FORMAT,
    ) -> DeviceEntry:
        """Write one device's artifact as an object of its own, then the ``manifest.json``
        beside it (two PUTs: the layout before bundles, and a pinned version's copy).

        ``payload`` is a pickle of the device's models in format ``fmt`` (this code's, unless
        a pinned version's copy keeps its own).
        """
        artifact = ArtifactKey(self.app, device, version_id_ or version_id(version, self.writer))
        key = str(artifact)
        digest = sha256_hex(payload)
        self.s3.put_object(
            Bucket=self.bucket, Key=key, Body=payload, ContentType="application/octet-stream"
        )
        entry = DeviceEntry(version, key, digest, samples, metrics, len(payload), fmt)
        beside = {
            "device": device,
            "shard_id": shard_id,
            "sequence": sequence,
            "created": created or _now_iso(),
            **entry.to_dict(),
        }
        self.s3.put_object(
            Bucket=self.bucket,
            Key=artifact.manifest_key,
            Body=signed_json(beside, self.hmac_key),
            ContentType="application/json",
        )
        return entry

    def put_shard_manifest(self, manifest: ShardManifest) -> None:
        manifest.writer = self.writer
        manifest.created = _now_iso()
        self.s3.put_object(
            Bucket=self.bucket,
            Key=shard_manifest_key(self.app, manifest.shard_id),
            Body=manifest.to_json(self.hmac_key),
            ContentType="application/json",
        )

    def put_object(
        self, key: str, body: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)

    # ------------------------------------------------------------------- read
    def load_shard_manifest(self, shard_id: str) -> ShardManifest | None:
        """The shard's manifest (signature verified when a key is set), or None if it has none."""
        try:
            obj = self.s3.get_object(Bucket=self.bucket, Key=shard_manifest_key(self.app, shard_id))
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None
            raise
        return ShardManifest.from_json(obj["Body"].read(), self.hmac_key)

    def _stored(self, device: str, entry: DeviceEntry) -> bytes:
        extent = entry.extent
        try:
            if extent is not None:
                return get_extent(self.s3, self.bucket, extent)  # one ranged GET, hash checked
            payload = self.s3.get_object(Bucket=self.bucket, Key=entry.key)["Body"].read()
        except ClientError as exc:
            if _missing(exc):
                raise TamperedCheckpoint(
                    "missing_artifact", f"artifact {entry.key} of device {device!r} is missing"
                ) from None
            raise
        if sha256_hex(payload) != entry.sha256:
            raise TamperedCheckpoint(
                "bad_sha256",
                f"artifact {entry.key} of device {device!r} does not match the sha256 in its "
                "manifest (tampered or corrupted); refusing to load it",
            )
        return payload

    def load_device(self, device: str, entry: DeviceEntry) -> bytes:
        """The device's pickle, its stored bytes checked against the entry's sha256 first
        (a bundle: one ranged GET of its bytes only)."""
        return decode(self._stored(device, entry), entry.encoding, f"artifact of {device!r}")

    def load_devices(
        self,
        entries: Mapping[str, DeviceEntry],
        mapper: Mapper[list[Extent] | str, list[tuple[str, bytes]]] = map,
    ) -> dict[str, bytes]:
        """Many devices' pickles (a takeover): a bundle's extents are read in runs, one
        ranged GET per run (:func:`stream.bundle.spans`); ``mapper`` runs the GETs."""
        by_bundle: dict[str, list[Extent]] = {}
        alone: list[str] = []
        device_at: dict[tuple[str, int], str] = {}
        for device, entry in entries.items():
            extent = entry.extent
            if extent is None:
                alone.append(device)
            else:
                by_bundle.setdefault(extent.key, []).append(extent)
                device_at[(extent.key, extent.offset)] = device
        runs = [run for extents in by_bundle.values() for run in spans(extents)]

        def read(job: list[Extent] | str) -> list[tuple[str, bytes]]:
            if isinstance(job, str):
                return [(job, self.load_device(job, entries[job]))]
            try:
                datas = get_extents(self.s3, self.bucket, job)
            except ClientError as exc:
                if _missing(exc):
                    raise TamperedCheckpoint(
                        "missing_artifact", f"bundle {job[0].key} is missing"
                    ) from None
                raise
            out = []
            for extent, data in zip(job, datas, strict=True):
                device = device_at[(extent.key, extent.offset)]
                out.append((device, decode(data, entries[device].encoding, device)))
            return out

        jobs: list[list[Extent] | str] = [*runs, *alone]
        return {device: data for part in mapper(read, jobs) for device, data in part}

    def read_record(self, extent: Extent) -> VersionRecord:
        """A version record of a bundle (one ranged GET), checked against its sha256."""
        try:
            raw = get_extent(self.s3, self.bucket, extent)
        except ClientError as exc:
            if _missing(exc):
                raise TamperedCheckpoint(
                    "missing_artifact", f"bundle {extent.key} is gone (pruned)"
                ) from None
            raise
        return cast(VersionRecord, orjson.loads(raw))

    def models_from(self, device: str, entry: DeviceEntry, payload: bytes) -> DeviceModels:
        """The ``DeviceModels`` of a verified pickle: format checked, unpickled, migrated."""
        try:
            return checkpoint_format.loads(payload, entry.format, device)
        except checkpoint_format.IncompatibleFormat as exc:
            raise TamperedCheckpoint("incompatible_format", str(exc)) from None

    def load_models(self, device: str, entry: DeviceEntry) -> DeviceModels:
        """The device's ``DeviceModels``: format checked, bytes verified, unpickled, migrated.

        A format this code cannot read raises :class:`TamperedCheckpoint` with reason
        ``incompatible_format`` (the shard is refused, as for a failed verification) and
        a message that says what to do; nothing is fetched or unpickled.
        """
        self.check_format(device, entry)
        return self.models_from(device, entry, self.load_device(device, entry))

    @staticmethod
    def check_format(device: str, entry: DeviceEntry) -> None:
        """TamperedCheckpoint (``incompatible_format``) when this code cannot read the entry's
        model-set format: checked before anything is fetched."""
        try:
            checkpoint_format.check(entry.format, device)
        except checkpoint_format.IncompatibleFormat as exc:
            raise TamperedCheckpoint("incompatible_format", str(exc)) from None


def retry(
    call: Callable[..., _R], *args: object, attempts: int = 5, delay: float = 0.2, **kwargs: object
) -> _R:
    """Call ``call`` up to ``attempts`` times on S3/DynamoDB client errors, then raise."""
    for attempt in range(1, attempts + 1):
        try:
            return call(*args, **kwargs)
        except (ClientError, OSError):
            if attempt == attempts:
                raise
            time.sleep(delay * 2 ** (attempt - 1))
    raise AssertionError("unreachable")

"""Checkpoints in S3: device model artifacts and the per-shard manifest.

A shard's checkpoint is committed by one S3 object, its manifest
``checkpoints/<app>/<shard-id>/manifest.json``: the last sequence number
learned and, for every device of the shard, the artifact that holds its
models (``models/<app>/<device>/all/<version>/model.pkl``, a pickled
``DeviceModels``, with a ``manifest.json`` beside it), its sha256, sample
count and metrics.  Artifacts are written first, the manifest last: a crash
between the two leaves unreferenced artifacts, never a manifest that points
at something missing.  With an HMAC key, manifests carry an HMAC-SHA256
signature; loading verifies the signature and every artifact's sha256 and
refuses what does not match (:class:`TamperedCheckpoint`).  Each device entry records the
model-set format of its artifact (:mod:`online_models.checkpoint_format`);
:meth:`CheckpointStore.load_models` refuses a format this code cannot read before
fetching or unpickling anything.

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

import hashlib
import hmac
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar, cast

import orjson
from botocore.exceptions import ClientError

from online_models import checkpoint_format
from stream.aws import S3Client

if TYPE_CHECKING:
    from online_models.device import DeviceModels

_R = TypeVar("_R")

__all__ = [
    "CheckpointStore",
    "DeviceEntry",
    "EntryMetrics",
    "ModelFigures",
    "ShardManifest",
    "TamperedCheckpoint",
    "device_artifact_key",
    "shard_manifest_key",
    "sha256_hex",
    "signed_json",
    "verified_body",
]


class TamperedCheckpoint(RuntimeError):
    """A manifest or artifact that fails verification; ``reason`` says which check failed.

    >>> TamperedCheckpoint("bad_sha256", "artifact x does not match").reason
    'bad_sha256'
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``.

    >>> sha256_hex(b"")[:12]
    'e3b0c44298fc'
    """
    return hashlib.sha256(data).hexdigest()


def _sign(body: bytes, key: str) -> str:
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def signed_json(body: dict[str, object], hmac_key: str | None) -> bytes:
    """``body`` as indented JSON, with an HMAC-SHA256 ``signature`` of its canonical form when a key is set.

    >>> verified_body(signed_json({"a": 1}, "k"), "k", "doc")
    {'a': 1}
    """
    if hmac_key:
        canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
        body = {**body, "signature": {"alg": "HMAC-SHA256", "value": _sign(canonical, hmac_key)}}
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)


def verified_body(raw: bytes, hmac_key: str | None, what: str) -> dict[str, object]:
    """Parse a document written by :func:`signed_json`; with a key, check its signature.

    ``what`` names the document in the :class:`TamperedCheckpoint` raised on failure; the
    caller checks the fields it reads.
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise TamperedCheckpoint("unreadable", f"{what} is not valid JSON: {exc}") from None
    signature = body.pop("signature", None)
    if hmac_key:
        if not signature:
            raise TamperedCheckpoint(
                "unsigned", f"{what} carries no signature but an HMAC key is configured"
            )
        expected = _sign(orjson.dumps(body, option=orjson.OPT_SORT_KEYS), hmac_key)
        if not hmac.compare_digest(expected, str(signature.get("value", ""))):
            raise TamperedCheckpoint(
                "bad_signature",
                f"{what} fails its HMAC-SHA256 signature (tampered, or written with another key)",
            )
    return cast("dict[str, object]", body)


def shard_manifest_key(app: str, shard_id: str) -> str:
    return f"checkpoints/{app}/{shard_id}/manifest.json"


def device_artifact_key(app: str, device: str, version_id: str) -> str:
    """``models/<app>/<device>/all/<version_id>/model.pkl``."""
    return f"models/{app}/{device}/all/{version_id}/model.pkl"


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


@dataclass(frozen=True)
class DeviceEntry:
    """Where a device's models of one checkpoint live and what they hold.

    ``format`` is the artifact's model-set format (absent from manifests written before
    formats were recorded: :data:`online_models.checkpoint_format.LEGACY`).

    >>> e = DeviceEntry(3, "models/app/d1/all/00000003-ab12cd34/model.pkl", "e3b0", 1200)
    >>> e.samples, e.format
    (1200, 1)
    """

    version: int
    key: str
    sha256: str
    samples: int
    metrics: EntryMetrics = field(default_factory=lambda: EntryMetrics())
    size: int = 0
    format: int = checkpoint_format.LEGACY


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
        body: dict[str, object] = {
            "shard_id": self.shard_id,
            "sequence": self.sequence,
            "finished": self.finished,
            "created": self.created,
            "writer": self.writer,
            "devices": {d: asdict(e) for d, e in sorted(self.devices.items())},
        }
        return signed_json(body, hmac_key)

    @classmethod
    def from_json(cls, raw: bytes, hmac_key: str | None = None) -> ShardManifest:
        body: Any = verified_body(raw, hmac_key, "manifest")  # fields checked here
        try:
            return cls(
                shard_id=body["shard_id"],
                sequence=body["sequence"],
                devices={d: DeviceEntry(**e) for d, e in body["devices"].items()},
                finished=bool(body.get("finished", False)),
                created=body.get("created", ""),
                writer=body.get("writer", ""),
            )
        except (KeyError, TypeError) as exc:
            raise TamperedCheckpoint("malformed", f"manifest lacks a field: {exc}") from None

    @property
    def sequence_int(self) -> int | None:
        return None if self.sequence is None else int(self.sequence)


class CheckpointStore:
    """Reads and writes checkpoints in one bucket for one application (consumer group).

    ``s3`` is a boto3 S3 client; every method blocks (run them off the event loop).

    >>> from stream.checkpoint import shard_manifest_key
    >>> store = CheckpointStore(s3=None, bucket="iotcast", app="iotcast")
    >>> shard_manifest_key(store.app, "shardId-000000000000")
    'checkpoints/iotcast/shardId-000000000000/manifest.json'
    """

    def __init__(self, s3: S3Client, bucket: str, app: str, hmac_key: str | None = None) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.app = app
        self.hmac_key = hmac_key
        self.writer = uuid.uuid4().hex[:8]

    # ------------------------------------------------------------------ write
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
    ) -> DeviceEntry:
        """Write one device's artifact, then the ``manifest.json`` beside it.

        ``payload`` is :func:`online_models.checkpoint_format.dumps` of the device's models,
        so it is recorded as this code's format.
        """
        version_id = f"{version:08d}-{self.writer}"
        key = device_artifact_key(self.app, device, version_id)
        digest = sha256_hex(payload)
        self.s3.put_object(
            Bucket=self.bucket, Key=key, Body=payload, ContentType="application/octet-stream"
        )
        entry = DeviceEntry(
            version, key, digest, samples, metrics, len(payload), checkpoint_format.FORMAT
        )
        beside = {
            "device": device,
            "shard_id": shard_id,
            "sequence": sequence,
            "created": _now_iso(),
            **asdict(entry),
        }
        body = orjson.dumps(beside, option=orjson.OPT_SORT_KEYS)
        if self.hmac_key:
            beside["signature"] = {"alg": "HMAC-SHA256", "value": _sign(body, self.hmac_key)}
        self.s3.put_object(
            Bucket=self.bucket,
            Key=key.rsplit("/", 1)[0] + "/manifest.json",
            Body=orjson.dumps(beside, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2),
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

    def load_device(self, device: str, entry: DeviceEntry) -> bytes:
        """The artifact's bytes, after checking them against the manifest's sha256."""
        try:
            obj = self.s3.get_object(Bucket=self.bucket, Key=entry.key)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                raise TamperedCheckpoint(
                    "missing_artifact", f"artifact {entry.key} of device {device!r} is missing"
                ) from None
            raise
        payload = obj["Body"].read()
        if sha256_hex(payload) != entry.sha256:
            raise TamperedCheckpoint(
                "bad_sha256",
                f"artifact {entry.key} of device {device!r} does not match the sha256 in its "
                "manifest (tampered or corrupted); refusing to load it",
            )
        return payload

    def load_models(self, device: str, entry: DeviceEntry) -> DeviceModels:
        """The device's ``DeviceModels``: format checked, bytes verified, unpickled, migrated.

        A format this code cannot read raises :class:`TamperedCheckpoint` with reason
        ``incompatible_format`` (the shard is refused, as for a failed verification) and
        a message that says what to do; nothing is fetched or unpickled.
        """
        try:
            checkpoint_format.check(entry.format, device)
            return checkpoint_format.loads(self.load_device(device, entry), entry.format, device)
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

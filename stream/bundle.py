"""Many devices' artifacts in one S3 object, each at a byte range: a checkpoint bundle.

A checkpoint of a shard holding thousands of devices written as one object per
device costs a PUT per device (and a second for its manifest). A bundle is one
object: the artifacts back to back, in the order given; each device's
:class:`Extent` (key, offset, length, sha256) goes into the shard manifest, and
restoring one device is one ranged GET of its bytes, checked against its hash.

Writes (:func:`put_stream`): one ``PutObject`` when the bundle fits in one part,
else a multipart upload of ``part_size`` parts (S3's minimum part is 5 MiB; 8 MiB
by default), uploaded ``workers`` at a time while the next part fills, so memory
stays at about ``(workers + 1) * part_size`` whatever the shard holds. Requests per
bundle: 1, or 2 + one per part. A failed part is retried by botocore's own
retries; if the upload still fails, it is aborted (no orphaned parts billed) and
the error raised: the checkpoint fails and is retried by its caller, and the
DynamoDB sequence number does not move (the checkpoint protocol).

>>> payloads = {"d1": b"abc", "d2": b"defgh"}
>>> extents = layout("models/iotcast/_bundles/x.bin", payloads)
>>> [(e.offset, e.length) for e in extents.values()]
[(0, 3), (3, 5)]
>>> extents["d2"].range_header
'bytes=3-7'
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, TypedDict

from stream.aws import Readable
from stream.integrity import TamperedCheckpoint

__all__ = [
    "PART_SIZE",
    "BundleS3",
    "Extent",
    "check_extent",
    "get_extent",
    "get_extents",
    "layout",
    "put_bundle",
    "put_stream",
    "spans",
]

log = logging.getLogger(__name__)

PART_SIZE = 8 * 1024 * 1024
MIN_PART_SIZE = 5 * 1024 * 1024  # S3's rule for every part but the last


class _Upload(TypedDict):
    UploadId: str


class _Part(TypedDict):
    ETag: str


class _Body(TypedDict):
    Body: Readable


class _CompletedPart(TypedDict):
    PartNumber: int
    ETag: str


class _Parts(TypedDict):
    Parts: list[_CompletedPart]


class BundleS3(Protocol):
    """The S3 calls a bundle makes (boto3's client has them)."""

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, ContentType: str) -> object: ...

    def create_multipart_upload(self, *, Bucket: str, Key: str, ContentType: str) -> _Upload: ...

    def upload_part(
        self, *, Bucket: str, Key: str, UploadId: str, PartNumber: int, Body: bytes
    ) -> _Part: ...

    def complete_multipart_upload(
        self, *, Bucket: str, Key: str, UploadId: str, MultipartUpload: _Parts
    ) -> object: ...

    def abort_multipart_upload(self, *, Bucket: str, Key: str, UploadId: str) -> object: ...

    def get_object(self, *, Bucket: str, Key: str, Range: str = ...) -> _Body: ...


@dataclass(frozen=True, slots=True)
class Extent:
    """Where one device's artifact lies in a bundle, and its hash."""

    key: str
    offset: int
    length: int
    sha256: str

    @property
    def range_header(self) -> str:
        """The HTTP ``Range`` of these bytes (inclusive end, as RFC 9110 has it)."""
        return f"bytes={self.offset}-{self.offset + self.length - 1}"


def layout(key: str, payloads: Mapping[str, bytes]) -> dict[str, Extent]:
    """The extents ``put_bundle`` gives these payloads, in their order (no I/O)."""
    out: dict[str, Extent] = {}
    offset = 0
    for device, data in payloads.items():
        out[device] = Extent(key, offset, len(data), hashlib.sha256(data).hexdigest())
        offset += len(data)
    return out


def _parts(payloads: Iterable[bytes], part_size: int) -> Iterator[bytes]:
    buf = bytearray()
    for data in payloads:
        buf += data
        while len(buf) >= part_size:
            yield bytes(buf[:part_size])
            del buf[:part_size]
    if buf:
        yield bytes(buf)


def put_bundle(
    s3: BundleS3,
    bucket: str,
    key: str,
    payloads: Mapping[str, bytes],
    *,
    part_size: int = PART_SIZE,
    workers: int = 4,
) -> dict[str, Extent]:
    """Write ``payloads`` (device -> artifact bytes) as one object; return each device's extent.

    Blocks (run it off the event loop). Raises what S3 raised after aborting a
    multipart upload it started.
    """
    extents = layout(key, payloads)
    put_stream(s3, bucket, key, payloads.values(), part_size=part_size, workers=workers)
    return extents


def put_stream(
    s3: BundleS3,
    bucket: str,
    key: str,
    chunks: Iterable[bytes],
    *,
    part_size: int = PART_SIZE,
    workers: int = 4,
) -> int:
    """Write the concatenation of ``chunks`` as one object, as they come; its size.

    One ``PutObject`` if it ends within one part; else a multipart upload, started when
    the first part is full, so the parts go up while the next chunks are made (a
    checkpoint compresses its devices meanwhile). Blocks; raises what S3 raised, after
    aborting the multipart upload.
    """
    if part_size < MIN_PART_SIZE:
        raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum part)")
    parts = _parts(chunks, part_size)
    first = next(parts, b"")
    second = next(parts, None)
    if second is None:
        s3.put_object(Bucket=bucket, Key=key, Body=first, ContentType="application/octet-stream")
        return len(first)
    upload_id = s3.create_multipart_upload(
        Bucket=bucket, Key=key, ContentType="application/octet-stream"
    )["UploadId"]
    slots = threading.BoundedSemaphore(workers)  # parts in flight: memory stays bounded

    def send(number: int, body: bytes) -> _CompletedPart:
        try:
            etag = s3.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
            )["ETag"]
            return {"PartNumber": number, "ETag": etag}
        finally:
            slots.release()

    total = 0
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bundle-part") as pool:
            futures: list[Future[_CompletedPart]] = []
            for number, body in enumerate(itertools.chain((first, second), parts), start=1):
                slots.acquire()
                total += len(body)
                futures.append(pool.submit(send, number, body))
            done = [f.result() for f in futures]
        s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}
        )
    except BaseException:
        log.warning("bundle %s: upload failed; aborting its multipart upload %s", key, upload_id)
        try:
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except Exception as exc:  # the original error matters more; the abort is logged
            log.warning("bundle %s: abort failed too (%s); a lifecycle rule clears it", key, exc)
        raise
    return total


def check_extent(extent: Extent, data: bytes) -> bytes:
    """``data`` if it is the extent's bytes (its length and sha256), else TamperedCheckpoint."""
    if len(data) != extent.length:
        raise TamperedCheckpoint(
            "truncated",
            f"{extent.key} bytes {extent.offset}+{extent.length}: read {len(data)} bytes",
        )
    if hashlib.sha256(data).hexdigest() != extent.sha256:
        raise TamperedCheckpoint(
            "bad_sha256",
            f"{extent.key} bytes {extent.offset}+{extent.length}: sha256 differs from the "
            "manifest's (tampered or corrupted); refusing to load it",
        )
    return data


def get_extent(s3: BundleS3, bucket: str, extent: Extent) -> bytes:
    """Read one device's artifact with a ranged GET, checked against its length and hash."""
    data = s3.get_object(Bucket=bucket, Key=extent.key, Range=extent.range_header)["Body"].read()
    return check_extent(extent, data)


def spans(
    extents: Iterable[Extent], *, gap: int = 1 << 20, most: int = 64 << 20
) -> list[list[Extent]]:
    """Extents of one object grouped into runs one ranged GET each reads: sorted by offset,
    a run grows while the next extent starts within ``gap`` bytes of its end and the run
    stays under ``most`` bytes (a takeover restores a shard's devices in a few GETs).

    >>> e = [Extent("k", o, 10, "") for o in (0, 10, 5000, 30)]
    >>> [[x.offset for x in run] for run in spans(e, gap=100, most=1000)]
    [[0, 10, 30], [5000]]
    """
    runs: list[list[Extent]] = []
    for extent in sorted(extents, key=lambda e: e.offset):
        if runs:
            run = runs[-1]
            end = run[-1].offset + run[-1].length
            if extent.offset - end <= gap and extent.offset + extent.length - run[0].offset <= most:
                run.append(extent)
                continue
        runs.append([extent])
    return runs


def get_extents(s3: BundleS3, bucket: str, run: list[Extent]) -> list[bytes]:
    """The bytes of a run of extents of one object (:func:`spans`) with one ranged GET,
    each checked against its length and hash, in the run's order."""
    start = run[0].offset
    end = max(e.offset + e.length for e in run)
    data = s3.get_object(Bucket=bucket, Key=run[0].key, Range=f"bytes={start}-{end - 1}")[
        "Body"
    ].read()
    view = memoryview(data)
    return [
        check_extent(e, bytes(view[e.offset - start : e.offset - start + e.length])) for e in run
    ]

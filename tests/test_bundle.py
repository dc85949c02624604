"""Checkpoint bundles on the real moto server: request counts, ranged restores, tampering."""

from __future__ import annotations

import os

import pytest

from iotcast.settings import Settings
from stream.bundle import MIN_PART_SIZE, get_extent, put_bundle
from stream.checkpoint import TamperedCheckpoint
from tests.support import S3Calls as Calls
from tests.support import create_bucket


@pytest.fixture
def s3(settings_moto_only: Settings):
    create_bucket(settings_moto_only)
    return settings_moto_only.client("s3"), settings_moto_only.bucket


def test_small_bundle_is_one_put_and_each_device_restores_alone(s3):
    client, bucket = s3
    calls = Calls(client)
    payloads = {f"dev-{i}": os.urandom(1000 + i) for i in range(500)}
    extents = put_bundle(client, bucket, "models/app/_bundles/shard-0/1.bin", payloads)
    assert calls.names() == ["PutObject"]
    calls.seen.clear()
    assert get_extent(client, bucket, extents["dev-137"]) == payloads["dev-137"]
    ((name, params),) = calls.seen
    assert name == "GetObject"
    e = extents["dev-137"]
    assert params["Range"] == f"bytes={e.offset}-{e.offset + e.length - 1}"


def test_large_bundle_is_a_multipart_upload_of_bounded_requests(s3):
    client, bucket = s3
    calls = Calls(client)
    # 2,600 devices of 8 KiB: 20.3 MiB, three parts of 8 MiB at most
    payloads = {f"dev-{i}": os.urandom(8 * 1024) for i in range(2600)}
    extents = put_bundle(client, bucket, "models/app/_bundles/shard-0/2.bin", payloads)
    names = calls.names()
    assert names[0] == "CreateMultipartUpload" and names[-1] == "CompleteMultipartUpload"
    parts = names.count("UploadPart")
    total = sum(len(p) for p in payloads.values())
    assert parts == -(-total // (8 * 1024 * 1024)) == 3
    assert len(names) == parts + 2
    for device in ("dev-0", "dev-1023", "dev-1024", "dev-2599"):  # across part boundaries
        assert get_extent(client, bucket, extents[device]) == payloads[device]


def test_a_changed_byte_is_refused(s3):
    client, bucket = s3
    payloads = {"a": b"x" * 100, "b": b"y" * 100}
    extents = put_bundle(client, bucket, "k.bin", payloads)
    client.put_object(Bucket=bucket, Key="k.bin", Body=b"x" * 100 + b"y" * 99 + b"z")
    with pytest.raises(TamperedCheckpoint, match="sha256"):
        get_extent(client, bucket, extents["b"])
    assert get_extent(client, bucket, extents["a"]) == payloads["a"]


def test_a_failed_part_aborts_the_upload_and_raises(s3):
    client, bucket = s3
    calls = Calls(client)

    def refuse(params, **_):
        if params.get("PartNumber") == 2:
            raise ConnectionError("S3 refused part 2")

    client.meta.events.register("provide-client-params.s3.UploadPart", refuse)
    payloads = {f"dev-{i}": os.urandom(1024 * 1024) for i in range(12)}
    with pytest.raises(ConnectionError, match="part 2"):
        put_bundle(client, bucket, "failed.bin", payloads, part_size=MIN_PART_SIZE)
    assert "AbortMultipartUpload" in calls.names()
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert "Contents" not in client.list_objects_v2(Bucket=bucket, Prefix="failed.bin")

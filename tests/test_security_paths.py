"""Keys read from S3 never become paths outside the folder the demo copies checkpoints to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iotcast.demo.summary import download_checkpoints


@pytest.mark.parametrize(
    "key", ["../../escaped.pkl", "models/app/../../../escaped.pkl", "/tmp/x.pkl"]
)
def test_a_manifest_naming_a_key_outside_is_refused(
    settings, boto, tmp_path: Path, key: str
) -> None:
    s3 = boto("s3")
    s3.create_bucket(Bucket=settings.bucket)
    s3.put_object(Bucket=settings.bucket, Key=key.lstrip("/"), Body=b"not a model")
    manifest = {"shard_id": "shardId-0", "devices": {"d1": {"key": key, "samples": 1}}}
    s3.put_object(
        Bucket=settings.bucket,
        Key=f"checkpoints/{settings.app}/shardId-0/manifest.json",
        Body=json.dumps(manifest).encode(),
    )
    dest = tmp_path / "out" / "checkpoints"
    with pytest.raises(ValueError, match="refusing to copy S3 key"):
        download_checkpoints(s3, settings.bucket, settings.app, dest)
    assert not list(tmp_path.rglob("escaped.pkl")) and not Path("/tmp/x.pkl").exists()

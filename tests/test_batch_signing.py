"""Batch versions under an HMAC key: manifests signed when written, checked before a model's
bytes are handed out, on S3 (moto server).

The attack: whoever can write to the bucket replaces a version's model with a pickle that
runs code, and its manifest's sha256 with the new bytes' hash. Without a key the sha256
check passes; with one, the forged manifest fails its signature and nothing is unpickled
(the pickle here would create a file if it ever were).
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import orjson
import pytest

from online_models.batch_expert import BatchExpert
from online_models.batch_live import LiveExperts
from online_models.retrain import BatchModel
from stream.batch_registry import BatchRegistry, S3Objects, UnknownBatchVersion
from stream.batch_watch import BatchWatch
from tests import support

KEY = "a key the processors and the retrain job share"


class RunsCode:
    """A pickle that creates ``marker`` when it is loaded (stands for any code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


def model() -> bytes:
    return pickle.dumps(
        BatchModel(
            per_horizon=60,
            scope="global",
            experts={"*": BatchExpert([], 0.1)},
            horizons=(60, 900),
        )
    )


@pytest.fixture
def objects(settings_moto_only) -> S3Objects:
    support.create_bucket(settings_moto_only)
    return S3Objects(settings_moto_only.client("s3"), settings_moto_only.bucket)


def forge(objects: S3Objects, reg: BatchRegistry, version: int, payload: bytes) -> None:
    """Replace the version's model and its manifest's sha256, as an attacker without the key."""
    key = reg._key(version, "manifest.json")
    body = orjson.loads(objects.get(key) or b"{}")
    body["sha256"] = hashlib.sha256(payload).hexdigest()
    objects.put(str(body["key"]), payload)
    objects.put(key, orjson.dumps(body))


def test_a_signed_version_loads_and_a_forged_one_is_refused_before_unpickling(
    objects: S3Objects, tmp_path: Path
) -> None:
    reg = BatchRegistry(objects, "app", KEY)
    version = reg.put(model(), {"job": 1})
    assert b'"signature"' in (objects.get(reg._key(version, "manifest.json")) or b"")
    assert "signature" not in reg.manifest(version)
    assert pickle.loads(reg.model_bytes(version)).experts["*"].predict_change([]) == 0.1

    marker = tmp_path / "code-ran"
    forge(objects, reg, version, pickle.dumps(RunsCode(marker)))
    with pytest.raises(UnknownBatchVersion, match="fails its HMAC-SHA256 signature"):
        reg.model_bytes(version)
    # without a key, the forged manifest's sha256 matches: only the key tells them apart
    assert BatchRegistry(objects, "app").model_bytes(version) == pickle.dumps(RunsCode(marker))

    # a processor with the key refuses it in its poll, says why, and unpickles nothing
    live = LiveExperts()
    watch = BatchWatch(reg, "proc-1", (60, 900), live=live)
    reg.promote(reg.put(model(), {"job": 2}), by="test")  # v2 is fine ...
    forge(objects, reg, 2, pickle.dumps(RunsCode(marker)))  # ... until it is replaced
    watch.poll()
    watch.poll()  # writes the verdict
    verdict = reg.verdict(2)
    assert verdict is not None and verdict["outcome"] == "refused"
    assert "fails its HMAC-SHA256 signature" in str(verdict["reason"])
    assert (live.version("shadow"), live.version("active")) == (None, None)
    assert not marker.exists()


def test_an_unsigned_version_is_refused_where_a_key_is_set(objects: S3Objects) -> None:
    version = BatchRegistry(objects, "app").put(model(), {})  # a job without the key
    with pytest.raises(UnknownBatchVersion, match="carries no signature"):
        BatchRegistry(objects, "app", KEY).model_bytes(version)
    signed = BatchRegistry(objects, "app", KEY).put(model(), {})
    with pytest.raises(UnknownBatchVersion, match="fails its HMAC-SHA256 signature"):
        BatchRegistry(objects, "app", "another key").model_bytes(signed)


def test_show_says_whether_the_signature_holds_and_the_fleets_shadow_so_far(
    objects: S3Objects, settings_moto_only, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    from iotcast.cli import connection_flags, main

    flags = connection_flags(settings_moto_only)
    reg = BatchRegistry(objects, settings_moto_only.app, KEY)
    version = reg.put(model(), {})
    for who, sums in (("proc-1", [7.0, 30, 10.0, 30]), ("proc-2", [7.0, 10, 10.0, 10])):
        body = {"by": who, "reference": {"60": "persistence"}, "sums": {"60": sums}}
        reg.put_shadow(version, who, body)
    monkeypatch.setenv("IOTCAST_HMAC_KEY", KEY)
    assert main(["models", "batch", "show", str(version), *flags]) == 0
    out = capsys.readouterr().out
    assert "signature: holds (HMAC-SHA256)" in out
    assert "so far on 2 processor(s): 60 s 0.700x persistence (n 40)" in out
    forge(objects, reg, version, b"not the model")
    assert main(["models", "batch", "show", str(version), *flags]) == 0
    assert "signature: REFUSED: " in capsys.readouterr().out

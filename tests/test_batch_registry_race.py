"""Two writers of the batch registry at the same moment: exactly one verdict stands, and
two retrain jobs get two version numbers, on S3 (moto server) and in a directory.

The stores are real (S3's conditional write, ``If-None-Match: *``, on moto; a hard link
in a directory). The moment is forced: the second writer's read happens before the
first one's write, as two processors or two jobs polling at once would do. Before the
fix, the second verdict overwrote the first, and each processor believed its own
(one served the version, the other refused it); the second job's model overwrote the
first's under the same number.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from iotcast.settings import Settings
from stream.batch_registry import BatchRegistry, DirectoryObjects, Objects, S3Objects
from tests import support


class ReadBeforeTheOther(BatchRegistry):
    """A registry whose first look (at a verdict, at the versions) was taken before the
    other writer wrote: the timing is forced, the store is not faked."""

    def __init__(self, objects: Objects, app: str) -> None:
        super().__init__(objects, app)
        self.stale = {"verdict", "versions"}

    def verdict(self, version: int):  # type: ignore[no-untyped-def]
        if "verdict" in self.stale:
            self.stale.discard("verdict")
            return None
        return super().verdict(version)

    def versions(self) -> list[int]:
        if "versions" in self.stale:
            self.stale.discard("versions")
            return []
        return super().versions()


@pytest.fixture(params=["s3", "directory"])
def objects(request: pytest.FixtureRequest, tmp_path: Path) -> Objects:
    if request.param == "directory":
        return DirectoryObjects(tmp_path)
    settings: Settings = request.getfixturevalue("settings_moto_only")
    support.create_bucket(settings)
    return S3Objects(settings.client("s3"), settings.bucket)


def test_two_processors_judging_at_once_leave_one_verdict_and_both_follow_it(objects) -> None:
    first, second = BatchRegistry(objects, "app"), ReadBeforeTheOther(objects, "app")
    version = first.put(b"model", {})
    mine = first.put_verdict(version, {"outcome": "accepted", "by": "p1", "serves": [900]})
    assert mine["outcome"] == "accepted"
    stands = second.put_verdict(version, {"outcome": "refused", "by": "p2", "reason": "worse"})
    assert (stands["outcome"], stands["by"]) == ("accepted", "p1")  # the second adopts it
    assert first.verdict(version) == mine  # and did not overwrite it


def test_two_retrain_jobs_writing_at_once_get_two_versions(objects) -> None:
    first, second = BatchRegistry(objects, "app"), ReadBeforeTheOther(objects, "app")
    assert first.put(b"first job's model", {"job": 1}) == 1
    assert second.put(b"second job's model", {"job": 2}) == 2  # it too saw no version
    assert first.versions() == [1, 2]
    assert first.model_bytes(1) == b"first job's model"  # its sha256 checked: not overwritten
    assert first.model_bytes(2) == b"second job's model"
    assert (first.manifest(1)["job"], first.manifest(2)["job"]) == (1, 2)

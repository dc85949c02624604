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


class ReadsBeforeTheOther:
    """The store, whose reads of ``key`` answer what it held before the other writer's
    change until this command first writes ``key``: the other change landed between this
    command's reads and its write (the timing is forced; every write goes to the store)."""

    def __init__(self, objects: Objects, key: str, before: tuple[bytes | None, str | None]):
        self.objects, self.key = objects, key
        self.before: tuple[bytes | None, str | None] | None = before

    def get_tagged(self, key: str) -> tuple[bytes | None, str | None]:
        if key == self.key and self.before is not None:
            return self.before
        return self.objects.get_tagged(key)

    def get(self, key: str) -> bytes | None:
        if key == self.key and self.before is not None:
            return self.before[0]
        return self.objects.get(key)

    def swap(self, key: str, body: bytes, tag: str | None) -> bool:
        self.before = None if key == self.key else self.before
        return self.objects.swap(key, body, tag)

    def put(self, key: str, body: bytes) -> None:
        self.before = None if key == self.key else self.before
        self.objects.put(key, body)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.objects, name)


def test_a_promote_and_a_rollback_at_once_both_land_in_the_history(objects) -> None:
    first = BatchRegistry(objects, "app")
    for job in (1, 2, 3):
        first.put(f"model {job}".encode(), {})
    first.promote(1, by="ops")
    key = first.prefix + "current.json"
    before = objects.get_tagged(key)  # what the second operator's command read ...
    first.promote(3, by="weekly retrain")  # ... before this one wrote
    second = BatchRegistry(ReadsBeforeTheOther(objects, key, before), "app")  # type: ignore[arg-type]
    body = second.rollback(to=2, by="ops", reason="v3 looks off")
    history = [(e["action"], e["version"], e["previous"]) for e in body["history"]]
    assert history == [("promote", 1, None), ("promote", 3, 1), ("rollback", 2, 3)]
    assert first.current() == body

"""The readings archive (issue 28): its format (what Firehose writes: raw records, a newline
after each), ``iotcast archive`` on kinesalite + moto, a restart that loses nothing, a crash
that repeats a buffer, and ``iotcast retrain --from-s3`` training on what it wrote."""

from __future__ import annotations

import gzip
import json
import math
import time
from typing import Any

import pytest

from iotcast.cli import connection_flags, main
from iotcast.settings import Settings
from stream.batch_registry import BatchRegistry, S3Objects
from telemetry.archive import (
    ArchiveError,
    ArchiveFormatError,
    Archiver,
    join_records,
    positions_key,
    readings_of,
    readings_prefix,
    split_records,
)
from telemetry.envelope import pack
from telemetry.reading import Reading, encode
from tests.packing import put_packed
from tests.support import create_resources, endpoints_env, items_of, put_records

HOUR = 3600.0


def _hourly(device: str, start: float, hours: int, mean: float) -> list[Reading]:
    out = []
    for i in range(hours):
        t = start + HOUR * i
        temp = mean + 4.0 * math.sin(2 * math.pi * t / 86_400) + 0.3 * math.sin(i * 0.7)
        out.append(Reading(t, device, temp=round(temp, 2), humidity=50.0))
    return out


def test_split_records_reads_packed_and_json_records_with_or_without_newlines() -> None:
    one = encode(Reading(1_594_512_094.0, "a1", temp=21.5))
    pretty = json.dumps(
        {"data": {"temp": 22.0}, "device_id": "a1", "ts": 1_594_512_095.0}, indent=2
    )
    batch = json.dumps([{"data": {"temp": 23.0}, "device_id": "b2", "ts": 1_594_512_096.0}] * 2)
    # lengths of 10 bytes put a newline inside the packed record's header
    tricky = pack([b"\n" * 10, one], "shardId-000000000001")
    squeezed = pack([one] * 50, "shardId-000000000002", compress=True)
    records = [one, tricky, pretty.encode(), squeezed, batch.encode(), b"not json"]
    blob = join_records(records)
    assert list(split_records(blob)) == records
    # Firehose without the delimiter processor: the records still come apart
    assert list(split_records(b"".join(records[:4]))) == records[:4]
    got = readings_of(blob)
    assert got.records == 6
    assert len(got.readings) == 1 + 1 + 1 + 50 + 2
    assert got.refused == 2  # the packed "\n" * 10 message and "not json"
    with pytest.raises(ArchiveFormatError, match="truncated"):
        list(split_records(squeezed[:-5]))
    with pytest.raises(ArchiveFormatError, match="truncated"):
        list(split_records(tricky[:-3]))


def _archived(settings: Settings) -> tuple[list[str], list[Reading]]:
    s3 = settings.client("s3")
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=settings.bucket, Prefix=readings_prefix(settings.app)
        )
        for o in page.get("Contents", ())
    ]
    readings: list[Reading] = []
    for key in keys:
        body = gzip.decompress(s3.get_object(Bucket=settings.bucket, Key=key)["Body"].read())
        readings += readings_of(body).readings
    return keys, readings


class _PositionsRefused:
    """An S3 client whose writes of the positions object fail: a crash between writing an
    archive object and saving how far it reached."""

    def __init__(self, s3: Any) -> None:
        self._s3 = s3

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)

    def put_object(self, **kw: Any) -> Any:
        if kw["Key"].endswith("positions.json"):
            from botocore.exceptions import EndpointConnectionError

            raise EndpointConnectionError(endpoint_url="http://s3.invalid")
        return self._s3.put_object(**kw)


def test_archive_restart_loses_nothing_and_retrain_trains_on_it(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    create_resources(settings, shards=2)
    now = time.time()
    start = (now // HOUR - 24 * 14) * HOUR
    readings = sorted(
        _hourly("a", start, 24 * 14 - 1, 20.0) + _hourly("b", start, 24 * 14 - 1, 26.0),
        key=lambda r: r.ts,
    )
    half = len(readings) // 2
    first, second = readings[:half], readings[half:]
    put_records(settings, items_of(first))  # single JSON readings, as an IoT rule writes
    argv = ["archive", "--until-idle", "1", "--poll-interval", "0.1", *connection_flags(settings)]
    with endpoints_env(settings):
        assert main(argv) == 0
        err = capsys.readouterr().err
        assert "reading shardId-000000000000 from its oldest record" in err and "wrote" in err
        keys1, got1 = _archived(settings)
        assert sorted((r.device, r.ts) for r in got1) == sorted((r.device, r.ts) for r in first)

        put_packed(settings, items_of(second), per_record=50)  # packed, as the bridge writes
        assert main(argv) == 0  # the restart resumes after the saved positions
        assert "after " in capsys.readouterr().err
        keys2, got2 = _archived(settings)
        assert set(keys1) < set(keys2)
        assert sorted((r.device, r.ts) for r in got2) == sorted((r.device, r.ts) for r in readings)

        # a crash after an object is written, before its positions are saved: the next
        # start writes that buffer again (at least once), and loses nothing
        extra = _hourly("c", start, 24 * 14 - 1, 18.0)
        put_records(settings, items_of(extra))
        s3, kinesis = settings.client("s3"), settings.client("kinesis")
        crashing = Archiver(
            kinesis, _PositionsRefused(s3), stream=settings.stream, bucket=settings.bucket,
            app=settings.app, attempts=2, retry_pause=0.0,
        )  # fmt: skip
        with pytest.raises(ArchiveError, match="saving the archive positions failed 2 times"):
            crashing.run(poll_interval=0.0, until_idle=0.5)
        again = Archiver(
            kinesis, s3, stream=settings.stream, bucket=settings.bucket, app=settings.app
        )
        assert again.run(poll_interval=0.1, until_idle=1.0) == len(extra)
        _, got3 = _archived(settings)
        everything = readings + extra
        assert len(got3) == len(everything) + len(extra)  # the repeated buffer
        assert {(r.device, r.ts) for r in got3} == {(r.device, r.ts) for r in everything}
        positions = json.loads(
            s3.get_object(Bucket=settings.bucket, Key=positions_key(settings.app))["Body"].read()
        )
        assert sorted(positions["shards"]) == ["shardId-000000000000", "shardId-000000000001"]

        # the retrain job reads the archive and counts each (device, ts) once
        retrain = ["retrain", "--from-s3", "--days", "20", "--horizon", "3600", "--quiet"]
        assert main([*retrain, "--json", *connection_flags(settings)]) == 0
    man = json.loads(capsys.readouterr().out)
    assert man["window"]["devices"] == ["a", "b", "c"]
    assert man["window"]["readings"] == len(everything)
    assert man["validation"]["3600"]["mae"] < man["validation"]["3600"]["persistence_mae"]
    reg = BatchRegistry(S3Objects(settings.client("s3"), settings.bucket), settings.app)
    assert reg.versions() == [1]


def test_archive_says_what_failed_when_the_bucket_is_missing(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    settings.client("kinesis").create_stream(StreamName=settings.stream, ShardCount=1)
    with endpoints_env(settings):
        code = main(["archive", "--until-idle", "0", *connection_flags(settings)])
    assert code == 1
    assert (
        f"cannot read s3://{settings.bucket}/{positions_key(settings.app)}"
        in capsys.readouterr().err
    )


def test_archive_follows_a_split_to_the_children_and_marks_the_parent_done(
    settings: Settings,
) -> None:
    create_resources(settings, shards=1)
    start = (time.time() // HOUR - 48) * HOUR
    a, b = _hourly("a", start, 24, 20.0), _hourly("a", start + 24 * HOUR, 24, 20.0)
    put_records(settings, items_of(a))
    kinesis, s3 = settings.client("kinesis"), settings.client("s3")

    def archiver() -> Archiver:
        return Archiver(
            kinesis, s3, stream=settings.stream, bucket=settings.bucket, app=settings.app
        )

    assert archiver().run(poll_interval=0.1, until_idle=0.5) == len(a)
    (parent,) = kinesis.list_shards(StreamName=settings.stream)["Shards"]
    kinesis.split_shard(
        StreamName=settings.stream, ShardToSplit=parent["ShardId"], NewStartingHashKey=str(2**127)
    )
    kinesis.get_waiter("stream_exists").wait(
        StreamName=settings.stream, WaiterConfig={"Delay": 0.2}
    )
    put_records(settings, items_of(b))  # lands on the children
    assert archiver().run(poll_interval=0.1, until_idle=1.0) == len(b)
    _, got = _archived(settings)
    assert sorted(r.ts for r in got) == [r.ts for r in a + b]  # each once
    positions = json.loads(
        s3.get_object(Bucket=settings.bucket, Key=positions_key(settings.app))["Body"].read()
    )["shards"]
    assert positions[parent["ShardId"]].get("closed") is True
    children = {s["ShardId"] for s in kinesis.list_shards(StreamName=settings.stream)["Shards"]}
    children.discard(parent["ShardId"])
    assert set(positions) - {parent["ShardId"]} <= children and len(positions) >= 2

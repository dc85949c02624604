"""The packed record's envelope: round trips, old records, and refusals of anything else."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry.envelope import MAGIC, EnvelopeError, header_size, is_packed, pack, unpack
from telemetry.reading import decode_message

OLD = b'{"data":{"temp":21.5},"device_id":"a1","ts":1594512094.0}'


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(max_size=300), min_size=1, max_size=50),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz-0123456789", max_size=40),
    st.booleans(),
)
def test_any_messages_come_back_as_packed(messages: list[bytes], shard: str, z: bool) -> None:
    record = pack(messages, shard, compress=z)
    u = unpack(record)
    assert u.messages == messages and u.shard == shard and u.version == 1
    assert is_packed(record)
    if not z:
        assert len(record) == header_size(shard) + sum(4 + len(m) for m in messages)


def test_an_old_single_reading_record_is_one_message() -> None:
    u = unpack(OLD)
    assert u.messages == [OLD] and u.shard is None and u.version == 0
    assert not is_packed(OLD)
    batch = b"[" + OLD + b"," + OLD + b"]"  # an AWS IoT rule's record of a device's batch
    assert unpack(batch).messages == [batch]
    assert len(decode_message(batch).parts) == 2


@pytest.mark.parametrize(
    ("data", "reason", "words"),
    [
        (MAGIC + b"\x01", "bad_envelope", "truncated header"),
        (MAGIC + b"\x02\x00\x00", "unknown_version", "version 2"),
        (MAGIC + b"\x01\x80\x00" + struct.pack(">II", 1, 1) + b"x", "unknown_version", "flags"),
        (MAGIC + b"\x01\x00\x00" + struct.pack(">II", 1, 5) + b"x", "bad_envelope", "1 messages"),
        (MAGIC + b"\x01\x00\x00" + struct.pack(">I", 0), "bad_envelope", "0 messages"),
        (MAGIC + b"\x01\x00\x00" + struct.pack(">I", 9), "bad_envelope", "do not fit"),
        (MAGIC + b"\x01\x01\x00" + b"not zlib", "bad_envelope", "not zlib"),
        (MAGIC + b"\x01\x00\x02\xff\xfe", "bad_envelope", "ASCII"),
    ],
)
def test_a_damaged_or_newer_record_is_refused_whole(data: bytes, reason: str, words: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        unpack(data)
    assert info.value.reason == reason and words in str(info.value)


def test_a_packed_record_of_a_minutes_readings_fits_one_put_unit() -> None:
    readings = [OLD] * 300
    record = pack(readings, "shardId-000000000000")
    assert len(record) < 25_000 and len(unpack(record)) == 300
    assert len(pack(readings, "shardId-000000000000", compress=True)) < len(record) / 5

"""Per-device events: what happened to one device, as records, not metric series.

A device's first reading, a promotion, a drift, a model reset, a device
gone quiet, and a sensor anomaly's start and end (kinds :data:`ANOMALY_KINDS`,
``figures`` holding the anomaly: ``phase``, ``start_ts``, ``end_ts``, ``value``,
``expected_low``, ``expected_high``, ``score``;
:func:`online_models.device.anomaly_event`) each become one record
(:class:`stream.records.EventRecord`), one JSON object (:func:`event_record`)::

    {"kind": "event", "event": "promotion", "device": "d1", "ts": 1594512000.0,
     "at": "2026-12-06T22:10:00.123+00:00", "model": "linear", "horizon": 900,
     "reason": "rolling MAE 0.10 < 0.95 x 0.20", "figures": {...}, "shard": "shardId-0"}

``ts`` is the event time of the reading that caused it (None for ``quiet``,
which no reading causes; for a ``silent`` anomaly the sweep found, the shard's
event time then), ``at`` the processor's wall clock. They go:

- into the processor's log, one JSON line each (logger ``iotcast.events``);
- to the predictions stream beside the predictions, told apart by
  ``"kind": "event"`` (prediction records carry ``"kind": "prediction"``);
- to S3 with the shard's next checkpoint, before it commits
  (``events/<app>/<day>/<HHMMSS>-<shard>-<uuid>.jsonl``, :func:`events_key`), which
  is what ``iotcast status --events`` and the analysis page read
  (:func:`read_events`). A crash between that write and the commit replays
  the records, which makes the same events again: readers drop repeats with
  :func:`event_identity`.

>>> from online_models.records import Event
>>> line = event_record("d1", Event("drift", "linear", 900, "ADWIN", {"after": 0.4}, ts=5.0),
...                     "shardId-0", at=0.0)
>>> d = orjson.loads(line); (d["kind"], d["event"], d["device"], d["ts"], d["at"][:19])
('event', 'drift', 'd1', 5.0, '1970-01-01T00:00:00')
>>> events_key("iotcast", "shardId-0", "2026-12-06T22:10:05+00:00")[:43]
'events/iotcast/2026-12-06/221005-shardId-0-'
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Literal, TypedDict, cast

import orjson

from online_models import anomaly
from online_models.records import Event
from stream.aws import S3Client
from stream.records import EventRecord, encode

__all__ = [
    "ANOMALY_KINDS",
    "EVENT_KINDS",
    "EventLine",
    "event_identity",
    "event_line",
    "event_record",
    "events_key",
    "read_events",
]

# The kinds of sensor anomaly (online_models.anomaly.Watch; online_models.device.anomaly_event).
ANOMALY_KINDS = anomaly.KINDS
# Every other kind of event the processor records.
EVENT_KINDS = ("first_reading", "promotion", "drift", "model_reset", "quiet")
PREFIX = "events/"

log = logging.getLogger("iotcast.events")


class EventLine(TypedDict):
    """One event as :func:`read_events` reads it back (what :func:`event_record` wrote)."""

    kind: Literal["event"]
    event: str
    device: str
    ts: float | None
    at: str
    model: str | None
    horizon: int | None
    reason: str
    figures: dict[str, object]
    shard: str


# What makes two records the same event: event, device, ts (or the minute, for quiet),
# model, horizon.
# event, device, ts, model, horizon; and for an anomaly its phase, start and value (two gases
# rising at one reading are two events of one kind)
EventIdentity = tuple[
    str | None, str | None, float | str | None, str | None, int | None, object, object, object
]


def event_record(device: str, event: Event, shard: str, at: float) -> bytes:
    """One event as a JSON line (see the module docstring); ``at`` is the wall clock."""
    return event_line(EventRecord.of(device, event, shard, at))


def event_line(record: EventRecord) -> bytes:
    """The record's line in S3 and in the log: its encoding and a newline."""
    return encode(record) + b"\n"


def events_key(app: str, shard: str, now_iso: str | None = None) -> str:
    """The S3 key of one checkpoint's events: by app and day, then time, shard, a unique tail."""
    now = now_iso or datetime.now(UTC).isoformat(timespec="seconds")
    return (
        f"{PREFIX}{app}/{now[:10]}/{now[11:19].replace(':', '')}-{shard}-{uuid.uuid4().hex}.jsonl"
    )


def event_identity(event: EventLine) -> EventIdentity:
    """What makes two records the same event (a replay after a crash makes it twice).

    >>> a = {"event": "drift", "device": "d1", "ts": 5.0, "model": "linear", "horizon": 900,
    ...      "at": "x"}
    >>> event_identity(a) == event_identity({**a, "at": "y"})
    True
    >>> co = {"event": "gas_rise", "device": "d1", "ts": 5.0, "model": "", "horizon": 0,
    ...       "figures": {"phase": "start", "start_ts": 1.0, "value": 0.02}}
    >>> lpg = {**co, "figures": {**co["figures"], "value": 0.05}}
    >>> event_identity(co) == event_identity(lpg)  # two gases at one reading: two events
    False
    """
    ts: float | str | None = event.get("ts")
    if ts is None:  # quiet: no reading caused it; one a minute at most per device
        ts = str(event.get("at", ""))[:16]
    figures = event.get("figures")
    f = figures if isinstance(figures, dict) else {}
    return (
        event.get("event"), event.get("device"), ts, event.get("model"), event.get("horizon"),
        f.get("phase"), f.get("start_ts"), f.get("value"),
    )  # fmt: skip


def read_events(
    s3: S3Client,
    bucket: str,
    app: str,
    *,
    days: int = 1,
    device: str | None = None,
    now: datetime | None = None,
) -> list[EventLine]:
    """The events of the last ``days`` days (today included) from S3, oldest first,
    repeats dropped; only ``device``'s when given. Blocks (boto3)."""
    now = now or datetime.now(UTC)
    seen: set[EventIdentity] = set()
    out: list[EventLine] = []
    for key in _keys(s3, bucket, f"{PREFIX}{app}/", _days(now, days)):
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        for event in _parse(body.splitlines()):
            if device is not None and event.get("device") != device:
                continue
            identity = event_identity(event)
            if identity not in seen:
                seen.add(identity)
                out.append(event)
    out.sort(key=lambda e: str(e.get("at", "")))
    return out


def _days(now: datetime, days: int) -> list[str]:
    return [(now - timedelta(days=i)).date().isoformat() for i in range(max(days, 1) - 1, -1, -1)]


def _keys(s3: S3Client, bucket: str, prefix: str, days: list[str]) -> Iterator[str]:
    paginator = s3.get_paginator("list_objects_v2")
    for day in days:
        for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}{day}/"):
            for obj in page.get("Contents", []):
                yield obj["Key"]


def _parse(lines: Iterable[bytes]) -> Iterator[EventLine]:
    for line in lines:
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a torn line of a partial write; the replay wrote the event again
        if isinstance(event, dict) and event.get("kind") == "event":
            yield cast(EventLine, event)  # as written by event_record

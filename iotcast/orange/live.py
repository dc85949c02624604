"""The live fleet's recent readings for the Telemetry widget: the last hours of a Kinesis
stream of the stack, as readings.

What a person means by "the last N hours of my fleet" is what the devices measured, every
sensor of every device, as a CSV file of the public format holds it; the stack keeps that
in the **telemetry stream** (``iot-telemetry``, where the bridges and the IoT rule write
every reading: packed records, single readings and device batches, ``docs/records.md``),
for the stream's retention (24 hours by default, up to a year). So the widget reads that
stream by default, and the same workflows (Forecast Evaluation, Line Chart) run on it as
on a file. It also reads the **predictions stream** (``iot-predictions``,
:func:`stream.records.decode_records`): what the processors served, one row per reading
they learned, with the target's value (``actual``) as its sensor column and, per horizon,
the served forecast and its interval bounds as extra columns (``served_900s``,
``low80_900s``, ``high80_900s``...). Which one a stream holds is told by its records, not
its name. S3 holds no readings: the processors keep models (checkpoints), events and dead
letters there, the bridges dead letters only, so it cannot answer "the last N hours".

The window is by arrival in the stream (Kinesis' ``AT_TIMESTAMP`` iterator): a replayed
file's readings carry their own old timestamps and are still "the last hours" of the
stream. Every shard is read, closed ones (a reshard's parents) too, from that moment up
to the stream's tip as it was when the read began; a packed record addressed to another
shard (a stray copy after a reshard, sent again where it belongs) is skipped, as the
processor skips it. The telemetry stream's readings are kept as they came, duplicates too
(as a file keeps them: the evaluation counts and skips them, as the processor does); a
prediction record met twice (a processor's restart writes it again) is kept once per
(device, time).

>>> rows = prediction_rows({"kind": "prediction", "version": 2, "device": "d1", "ts": 10.0,
...     "actual": 21.5, "forecasts": [{"horizon": 900, "model": "ridge", "prediction": 21.7,
...     "target_ts": 910.0, "intervals": [[0.8, 21.5, 21.9], [0.95, 21.3, 22.1]]}]})
>>> rows[0].temp, rows[0].extra
(21.5, (('served_900s', 21.7), ('low80_900s', 21.5), ('high80_900s', 21.9), ('low95_900s', 21.3), ('high95_900s', 22.1)))
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from iotcast.settings import Settings
from telemetry.envelope import EnvelopeError, unpack
from telemetry.reading import InvalidReading, Reading, decode_message

__all__ = [
    "LiveError",
    "LiveRead",
    "MAX_READINGS",
    "prediction_rows",
    "read_recent",
    "where_of",
]

MAX_READINGS = 2_000_000  # beyond this the read stops and says so (memory, not time)
GET_LIMIT = 10_000  # records per GetRecords (Kinesis' largest)
THROTTLE_RETRIES = 10
AT_TIMESTAMP_WAIT_S = 3.0  # for an iterator at a time (see _iterator)


class LiveError(ValueError):
    """Nothing could be read: the stack does not answer, the stream does not exist, or no
    reading arrived in the window; the message says which, and where it looked."""


class Stop(Exception):
    """The caller asked the running read to stop (the widget's Cancel)."""


@dataclass
class LiveRead:
    """What a read found: the readings (by time), and what it met on the way."""

    readings: list[Reading]
    where: str
    kind: str = "telemetry"  # or "predictions": what the stream's records were
    records: int = 0  # Kinesis records read
    shards: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # parts not readable, by reason
    events: int = 0  # event records of the predictions stream (not readings)
    repeated: int = 0  # prediction records met again (same device and time), kept once
    stray: int = 0  # packed records addressed to another shard, skipped
    truncated: bool = False  # stopped at MAX_READINGS


def where_of(settings: Settings, stream: str) -> str:
    """The stream and its endpoint, as messages name them."""
    return f"stream {stream} ({settings.endpoint('kinesis') or 'AWS ' + str(settings.region)})"


def prediction_rows(record: Mapping[str, Any], target: str = "temp") -> list[Reading]:
    """The reading a prediction record was made at (its ``actual`` as ``target``), with the
    served forecast and interval bounds of each horizon as extra fields; an older record
    (version 1, one horizon) likewise. A record without an actual gives none."""
    actual = record.get("actual")
    if actual is None:
        return []
    forecasts = record.get("forecasts")
    if forecasts is None:  # version 1: the record is one horizon's forecast
        forecasts = [record]
    extra: list[tuple[str, float]] = []
    for f in forecasts:
        h, value = f.get("horizon"), f.get("prediction")
        if h is None or value is None:
            continue
        extra.append((f"served_{int(h)}s", float(value)))
        for level, low, high in f.get("intervals") or ():
            pct = f"{100 * float(level):g}"
            extra += [(f"low{pct}_{int(h)}s", float(low)), (f"high{pct}_{int(h)}s", float(high))]
    reading = Reading(float(record["ts"]), str(record["device"]), extra=tuple(extra))
    return [_with(reading, target, float(actual))]


def _with(reading: Reading, target: str, value: float) -> Reading:
    from dataclasses import replace

    return replace(reading, **{target: value})


def _shards(kinesis: Any, stream: str) -> list[dict[str, Any]]:
    shards: list[dict[str, Any]] = []
    kw: dict[str, Any] = {"StreamName": stream}
    while True:
        page = kinesis.list_shards(**kw)
        shards += page["Shards"]
        token = page.get("NextToken")
        if not token:
            return shards
        kw = {"NextToken": token}


def _get(kinesis: Any, iterator: str) -> dict[str, Any]:
    """GetRecords, waiting out a throttle (five calls a second per shard on AWS)."""
    from botocore.exceptions import ClientError

    for attempt in range(THROTTLE_RETRIES):
        try:
            return kinesis.get_records(ShardIterator=iterator, Limit=GET_LIMIT)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code not in ("ProvisionedThroughputExceededException", "LimitExceededException"):
                raise
            time.sleep(min(0.2 * 2**attempt, 2.0))
    return kinesis.get_records(ShardIterator=iterator, Limit=GET_LIMIT)


def _iterator(
    settings: Settings, kinesis: Any, stream: str, shard: str, start: datetime, timeout: float
) -> tuple[str | None, bool]:
    """A shard iterator at ``start`` (``AT_TIMESTAMP``), and whether records before it will
    come too. kinesalite 3.3 never answers ``AT_TIMESTAMP`` on a shard where no record
    arrived at or after that time (its ``head`` of an empty match never calls back): after
    a short wait the shard is read from its start (``TRIM_HORIZON``) and the records
    before the window are skipped, which gives the same readings."""
    from botocore.config import Config
    from botocore.exceptions import ReadTimeoutError

    quick = settings.client(
        "kinesis",
        config=Config(
            connect_timeout=timeout, read_timeout=AT_TIMESTAMP_WAIT_S, retries={"max_attempts": 1}
        ),
    )
    try:
        got = quick.get_shard_iterator(
            StreamName=stream, ShardId=shard, ShardIteratorType="AT_TIMESTAMP", Timestamp=start
        )
        return got.get("ShardIterator"), False
    except ReadTimeoutError:
        got = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )
        return got.get("ShardIterator"), True


class _Reader:
    """Turns the records of one read into readings (both kinds of stream), once each."""

    def __init__(self, out: LiveRead, target: str) -> None:
        self.out = out
        self.target = target
        self.seen: set[tuple[str, float]] = set()
        self.kinds: dict[str, int] = {}

    def record(self, data: bytes, shard: str) -> None:
        out = self.out
        out.records += 1
        try:
            u = unpack(data)
        except EnvelopeError as exc:
            out.refused[exc.reason] = out.refused.get(exc.reason, 0) + 1
            return
        if u.shard and u.shard != shard:
            out.stray += 1
            return
        for message in u:
            out.readings += self._readings(message)

    def _readings(self, message: bytes) -> Iterator[Reading]:
        if b'"kind"' in message:  # an output record of the processors, not a device's
            try:
                obj = orjson.loads(message)
            except orjson.JSONDecodeError:
                obj = None
            if isinstance(obj, dict) and obj.get("kind") in ("prediction", "event"):
                self.kinds[obj["kind"]] = self.kinds.get(obj["kind"], 0) + 1
                if obj["kind"] == "event":
                    self.out.events += 1
                    return
                try:
                    rows = prediction_rows(obj, self.target)
                except (KeyError, TypeError, ValueError):
                    self._refuse("bad_prediction")
                    return
                for r in rows:  # a processor's restart writes a reading's record again
                    if (r.device, r.ts) in self.seen:
                        self.out.repeated += 1
                    else:
                        self.seen.add((r.device, r.ts))
                        yield r
                return
        self.kinds["reading"] = self.kinds.get("reading", 0) + 1
        for part in decode_message(message).parts:
            if isinstance(part, InvalidReading):
                self._refuse(part.reason)
            else:
                yield part

    def _refuse(self, reason: str) -> None:
        self.out.refused[reason] = self.out.refused.get(reason, 0) + 1


def read_recent(
    settings: Settings,
    stream: str,
    hours: float,
    *,
    target: str = "temp",
    progress: Callable[[float], None] | None = None,
    stop: Callable[[], bool] | None = None,
    now: datetime | None = None,
    timeout: float = 5.0,
) -> LiveRead:
    """The readings that arrived in ``stream`` in the last ``hours`` (see the module
    docstring), sorted by time. ``progress(percent)`` is called as the shards are read
    (by arrival time reached); ``stop()`` returning True stops the read (:class:`Stop`).
    Raises :class:`LiveError` when the stack does not answer, the stream does not exist,
    or nothing usable arrived in the window."""
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    if hours <= 0:
        raise LiveError("the window must be more than 0 hours")
    where = where_of(settings, stream)
    now = now or datetime.now(UTC)
    start = now - timedelta(hours=hours)
    span = (now - start).total_seconds()
    out = LiveRead([], where)
    reader = _Reader(out, target)
    config = Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 2})
    try:
        kinesis = settings.client("kinesis", config=config)
        shards = _shards(kinesis, stream)
        out.shards = len(shards)
        for i, shard in enumerate(shards):
            sid = shard["ShardId"]
            iterator, older = _iterator(settings, kinesis, stream, sid, start, timeout)
            reached = start  # the arrival time read up to, for the progress
            while iterator:
                if stop is not None and stop():
                    raise Stop
                page = _get(kinesis, iterator)
                records = page.get("Records", [])
                for rec in records:
                    arrived = rec.get("ApproximateArrivalTimestamp")
                    if arrived is not None and arrived > now:  # arrived after the read began
                        iterator = None
                        break
                    if older and arrived is not None and arrived < start:
                        continue  # read from the shard's start: before the window
                    reached = arrived or reached
                    reader.record(rec["Data"], sid)
                    if len(out.readings) >= MAX_READINGS:
                        out.truncated = True
                        break
                else:
                    iterator = page.get("NextShardIterator")
                    if not records and not page.get("MillisBehindLatest"):
                        iterator = None  # at the tip: nothing more has arrived
                if out.truncated:
                    break
                if progress is not None:
                    done = min(max((reached - start).total_seconds() / span, 0.0), 1.0)
                    progress(100.0 * (i + done) / len(shards))
            if out.truncated:
                break
            if progress is not None:
                progress(100.0 * (i + 1) / len(shards))
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ResourceNotFoundException":
            raise LiveError(f"no such stream: {where}") from exc
        raise LiveError(f"{where}: {code or type(exc).__name__}: {exc}"[:400]) from exc
    except (BotoCoreError, OSError) as exc:
        raise LiveError(f"nothing answers for {where}: {type(exc).__name__}: {exc}"[:400]) from exc
    if reader.kinds.get("prediction", 0) > reader.kinds.get("reading", 0):
        out.kind = "predictions"
    if not out.readings:
        raise LiveError(_nothing(out, hours))
    out.readings.sort(key=lambda r: r.ts)
    return out


def _nothing(out: LiveRead, hours: float) -> str:
    """Why a read found no reading, in words."""
    said = f"no reading arrived in {out.where} in the last {hours:g} hours"
    found = []
    if out.records:
        found.append(f"{out.records:,} records read")
    if out.events:
        found.append(f"{out.events:,} events (not readings)")
    if out.refused:
        found.append("refused: " + ", ".join(f"{k} {n:,}" for k, n in sorted(out.refused.items())))
    return said + (f" ({'; '.join(found)})" if found else "")

"""The records the processor writes to the predictions stream, their one encoder and reader.

Two kinds, told apart on the wire by ``"kind"``: a prediction
(:class:`PredictionRecord`, one per reading learned, carrying every horizon's
forecast: the served one, or every model's with ``--predictions all``) and an
event (:class:`EventRecord`, :mod:`stream.events`). Each is a small dataclass whose
fields, in order, are the JSON object's keys (slotted, not frozen: a frozen one
costs five times as much to make, and the hot loop makes one or two a reading;
nothing changes a record once made); :func:`encode` is the only place a record
becomes bytes (a message of the output writer's packed records; an event's line in
S3 and in the log, with a newline). :func:`decode_records` is the readers' side: the
records one Kinesis record of the predictions stream holds. ``docs/records.md``
("The predictions stream") is the reference for consumers.

>>> from online_models.records import Event, Prediction
>>> made = [Prediction("served", 0, 10.0, 10.0, 21.4, "linear", (21.2, 21.6, 21.0, 21.8)),
...         Prediction("served", 60, 10.0, 70.0, 21.5, "persistence")]
>>> encode(PredictionRecord.of("d1", 10.0, 21.4, made))
b'{"kind":"prediction","version":2,"device":"d1","ts":10.0,"actual":21.4,"forecasts":[{"horizon":0,"model":"linear","prediction":21.4,"target_ts":10.0,"intervals":[[0.8,21.2,21.6],[0.95,21.0,21.8]]},{"horizon":60,"model":"persistence","prediction":21.5,"target_ts":70.0,"intervals":null}]}'
>>> r = EventRecord.of("d1", Event("quiet", "", 0, "no reading for 300 s", {}), "shardId-0", at=0.0)
>>> r.kind, r.ts, r.model, r.horizon, r.at
('event', None, None, None, '1970-01-01T00:00:00.000+00:00')
>>> from telemetry.envelope import pack
>>> [d["kind"] for d in decode_records(pack([encode(r), encode(r)]))]
['event', 'event']
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import orjson

from online_models.intervals import DEFAULT_LEVELS
from online_models.records import Event, Prediction
from telemetry.envelope import unpack

__all__ = [
    "PREDICTION_VERSION",
    "EventRecord",
    "Forecast",
    "OutputRecord",
    "PredictionRecord",
    "decode_records",
    "encode",
]

PREDICTION_VERSION = 2  # 1: one record per horizon, without "version" (before packing)


@dataclass(slots=True)
class Forecast:
    """One horizon's forecast in a :class:`PredictionRecord`: ``model`` is the model it came
    from (for the served forecast, the champion's name at the time), ``target_ts`` the time
    it is for (the record's ``ts`` + ``horizon``)."""

    horizon: int
    model: str
    prediction: float
    target_ts: float
    # the served forecast's prediction intervals, [level, low, high] per level (None for
    # another model's forecast, or before the band has enough residuals for one)
    intervals: list[tuple[float, float, float]] | None = None


@dataclass(slots=True)
class PredictionRecord:
    """The forecasts made at one reading of ``device`` (event time ``ts``), every horizon in
    one record; ``actual`` is the reading's value of the target (what the nowcast, horizon
    0, is scored against)."""

    kind: Literal["prediction"] = field(default="prediction", init=False)
    version: int = field(default=PREDICTION_VERSION, init=False)
    device: str
    ts: float
    actual: float | None
    forecasts: list[Forecast]

    @classmethod
    def of(
        cls,
        device: str,
        ts: float,
        actual: float | None,
        made: Iterable[Prediction],
        levels: tuple[float, ...] = DEFAULT_LEVELS,
    ) -> PredictionRecord:
        """The record of the predictions ``made`` at a reading of ``device`` at ``ts``;
        ``levels`` are the levels of the served forecasts' intervals (``Prediction.bounds``)."""
        return cls(
            device,
            ts,
            actual,
            [
                Forecast(
                    p.horizon,
                    p.source or p.model,
                    p.value,
                    p.target_ts,
                    [(v, p.bounds[2 * i], p.bounds[2 * i + 1]) for i, v in enumerate(levels)]
                    if p.bounds
                    else None,
                )
                for p in made
            ],
        )


@dataclass(slots=True)
class EventRecord:
    """One event (:mod:`stream.events`): ``ts`` the event time of the reading that caused it
    (None for ``quiet``), ``at`` the processor's wall clock (ISO 8601, milliseconds),
    ``model`` and ``horizon`` None for an event about the device rather than a model."""

    kind: Literal["event"] = field(default="event", init=False)
    event: str
    device: str
    ts: float | None
    at: str
    model: str | None
    horizon: int | None
    reason: str
    figures: dict[str, object]
    shard: str

    @classmethod
    def of(cls, device: str, event: Event, shard: str, at: float) -> EventRecord:
        """The record of ``event`` of ``device`` on ``shard``; ``at`` is the wall clock."""
        return cls(
            event.kind,
            device,
            event.ts if event.ts else None,
            datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds"),
            event.model or None,
            event.horizon if event.model else None,
            event.reason,
            event.figures,
            shard,
        )


# What goes to the output stream: predictions and events, told apart by "kind".
OutputRecord = PredictionRecord | EventRecord


def encode(record: OutputRecord) -> bytes:
    """The record as one JSON object, its fields in order (numpy figures as numbers)."""
    return orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY)


def decode_records(data: bytes) -> list[dict[str, object]]:
    """The output records one Kinesis record of the predictions stream holds, as JSON
    objects: a packed record's messages, or an older processor's record (one object, a
    prediction of one horizon without ``"version"``, or an event). Raises
    :class:`telemetry.envelope.EnvelopeError` for a packed record it cannot read."""
    return [orjson.loads(m) for m in unpack(data)]

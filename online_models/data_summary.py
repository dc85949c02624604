"""What a telemetry file holds, per device, before any model runs on it.

:func:`summarize` streams a CSV file (or readings) in chunks through pandas and
keeps, per device: rows, first and last reading, span, cadence (the median
interval), gaps (silences over 5 minutes, the models' ``gap`` feature),
duplicates and late arrivals (a timestamp at or before the newest seen so
far: what the model sets skip), glitches (temperature 0.0 with humidity near 1 %:
what the models do not learn), the share of readings with the light on and
with motion (of the readings that carry that sensor; empty for a device
without it), the sensors and extra fields the device sent (``sensors``) and
how many values validation dropped or clipped (``dropped``, ``clipped``: from
``Reading.notes``); and each sensor's mean per time bin, for small charts (at
most ``points`` bins per device; empty where a device has no such sensor).
Memory is bounded by the bins, not by the file.

>>> from telemetry.generate import generate
>>> s = summarize(generate(days=0.5, seed=1))
>>> list(s.devices.columns)  # doctest: +NORMALIZE_WHITESPACE
['device', 'rows', 'first', 'last', 'span_hours', 'cadence_s', 'gaps', 'duplicates', 'late',
 'glitches', 'light_pct', 'motion_pct', 'sensors', 'dropped', 'clipped']
>>> int(s.devices.rows.sum()) == s.rows, len(s.devices), s.devices.sensors[0]
(True, 3, 'co, humidity, light, lpg, motion, smoke, temp')
>>> list(s.sensors.columns)
['device', 'time', 'temp', 'humidity', 'co', 'lpg', 'smoke']
>>> bool(s.sensors.groupby("device").size().max() <= 400)
True
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd

from online_models.analysis import Source, readings_of
from online_models.evaluate import DeviceInput
from online_models.features import GAP_S
from telemetry.csvfile import BadRows
from telemetry.reading import FIELDS

__all__ = ["CHUNK_ROWS", "SENSORS", "DataSummary", "count_rows", "summarize"]

CHUNK_ROWS = 50_000
SENSORS = ("temp", "humidity", "co", "lpg", "smoke")
BIN_S = 60.0


def count_rows(path: str | Path) -> int:
    """Data rows of a CSV file (lines after the header), counted fast without parsing.

    >>> import tempfile, os
    >>> f = tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False)
    >>> _ = f.write('"ts","device"\\n"1","d"\\n"2","d"\\n'); f.close()
    >>> count_rows(f.name); os.unlink(f.name)
    2
    """
    n = 0
    last = b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    n += last != b"\n"  # a last line without its newline
    return max(n - 1, 0)


@dataclass
class DataSummary:
    """Per-device figures (``devices``) and binned sensor means (``sensors``) of a file."""

    devices: pd.DataFrame
    sensors: pd.DataFrame
    rows: int
    bad_rows: BadRows = field(default_factory=BadRows)


# One reading as a row of :data:`FIELDS`: ts, device, then the sensors (None where absent).
_Row = tuple[
    float,
    str,
    float | None,
    float | None,
    bool | None,
    float | None,
    bool | None,
    float | None,
    float | None,
]


class _Totals:
    """The running totals of :func:`summarize`, one chunk at a time."""

    def __init__(self) -> None:
        self.newest: dict[str, float] = {}  # per device: the newest timestamp so far
        self.per_device: pd.DataFrame | None = None
        self.bins: pd.DataFrame | None = None
        self.intervals: dict[str, Counter[float]] = {}  # per device: interval (0.1 s) -> count
        self.inputs: dict[str, DeviceInput] = {}  # per device: sensors sent, values dropped

    def add(self, rows: list[_Row]) -> None:
        df = pd.DataFrame.from_records(rows, columns=list(FIELDS))
        by = df.groupby("device", sort=False)
        # the newest timestamp before each row, within the chunk and from the chunks before
        before = by.ts.cummax().groupby(df.device).shift()
        carried = df.device.map(self.newest).astype(float)
        dt = df.ts - np.fmax(before, carried)
        df["duplicates"] = dt == 0
        df["late"] = dt < 0
        df["gaps"] = dt > GAP_S
        df["glitches"] = (df.temp == 0.0) & (df.humidity < 5.0)
        df["rows"] = 1
        stats = df.groupby("device").agg(
            rows=("rows", "sum"),
            first=("ts", "min"),
            last=("ts", "max"),
            gaps=("gaps", "sum"),
            duplicates=("duplicates", "sum"),
            late=("late", "sum"),
            glitches=("glitches", "sum"),
            light=("light", "sum"),
            light_n=("light", "count"),
            motion=("motion", "sum"),
            motion_n=("motion", "count"),
        )
        self.per_device = _combine(self.per_device, stats)
        newest = stats["last"].combine(pd.Series(self.newest), max, np.nan).to_dict()
        self.newest.update(cast("dict[str, float]", newest))
        step = pd.DataFrame({"device": df.device, "step": dt.clip(upper=86_400.0).round(1)})
        for key, n in step[dt > 0].value_counts().items():
            device, value = cast("tuple[str, float]", key)
            self.intervals.setdefault(device, Counter())[value] += n
        good = df[~df.glitches]
        bins = good.groupby(["device", (good.ts // BIN_S) * BIN_S])[list(SENSORS)].agg(
            ["sum", "count"]
        )
        self.bins = bins if self.bins is None else self.bins.add(bins, fill_value=0)


def _combine(a: pd.DataFrame | None, b: pd.DataFrame) -> pd.DataFrame:
    if a is None:
        return b
    both = a.add(b, fill_value=0)
    both["first"] = a["first"].combine(b["first"], min, np.inf).reindex(both.index)
    both["last"] = a["last"].combine(b["last"], max, -np.inf).reindex(both.index)
    return both


def _median(counts: Counter[float]) -> float:
    total = sum(counts.values())
    if not total:
        return math.nan
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if seen * 2 >= total:
            return float(value)
    return math.nan  # pragma: no cover


def summarize(
    source: Source,
    *,
    limit: int | None = None,
    points: int = 400,
    progress: Callable[[int], None] | None = None,
) -> DataSummary:
    """Summarize a CSV path, open file or readings (see the module docstring): the first
    ``limit`` rows; at most ``points`` sensor bins per device; ``progress(rows_read)`` as in
    :func:`online_models.analysis.analyse` (raise ``Cancelled`` from it to stop)."""
    bad = BadRows()
    totals = _Totals()
    chunk: list[_Row] = []
    rows = 0
    inputs = totals.inputs
    for r in readings_of(source, limit=limit, bad_rows=bad, progress=progress):
        inp = inputs.get(r.device)
        if inp is None:
            inp = inputs[r.device] = DeviceInput()
        inp.add(r)
        chunk.append((r.ts, r.device, r.co, r.humidity, r.light, r.lpg, r.motion, r.smoke, r.temp))
        if len(chunk) >= CHUNK_ROWS:
            totals.add(chunk)
            rows += len(chunk)
            chunk = []
    if chunk:
        totals.add(chunk)
        rows += len(chunk)
    return DataSummary(_devices(totals), _sensors(totals, points), rows, bad)


def _devices(t: _Totals) -> pd.DataFrame:
    cols = ["device", "rows", "first", "last", "span_hours", "cadence_s", "gaps", "duplicates"]
    cols += ["late", "glitches", "light_pct", "motion_pct", "sensors", "dropped", "clipped"]
    if t.per_device is None:
        return pd.DataFrame(columns=cols)
    d = t.per_device.reset_index().sort_values("device").reset_index(drop=True)
    d["span_hours"] = (d["last"] - d["first"]) / 3600.0
    d["light_pct"] = 100.0 * d.light / d.light_n.where(d.light_n > 0)
    d["motion_pct"] = 100.0 * d.motion / d.motion_n.where(d.motion_n > 0)
    inputs = [t.inputs.get(device, DeviceInput()) for device in d.device]
    d["sensors"] = [", ".join(inp.seen()) for inp in inputs]
    d["dropped"] = [sum(inp.dropped.values()) for inp in inputs]
    d["clipped"] = [sum(inp.clipped.values()) for inp in inputs]
    d["first"] = pd.to_datetime(d["first"], unit="s", utc=True)
    d["last"] = pd.to_datetime(d["last"], unit="s", utc=True)
    d["cadence_s"] = [_median(t.intervals.get(device, Counter())) for device in d.device]
    for c in ("rows", "gaps", "duplicates", "late", "glitches"):
        d[c] = d[c].astype(int)
    return d[cols]


def _sensors(t: _Totals, points: int) -> pd.DataFrame:
    cols = ["device", "time", *SENSORS]
    if t.bins is None or t.bins.empty:
        return pd.DataFrame(columns=cols)
    b = t.bins.copy()
    pairs = cast("Iterable[tuple[str, str]]", b.columns)  # (sensor, "sum" or "count")
    b.columns = [f"{sensor}_{what}" for sensor, what in pairs]
    b.index = b.index.set_names(["device", "bin"])
    b = b.reset_index()
    span = b.groupby("device").bin.agg(lambda s: s.max() - s.min())
    width = b.device.map(BIN_S * np.maximum(np.ceil((span / BIN_S + 1) / points), 1))
    b["bin"] = (b.bin // width) * width
    b = b.groupby(["device", "bin"], as_index=False).sum()
    for sensor in SENSORS:
        b[sensor] = b[f"{sensor}_sum"] / b[f"{sensor}_count"].replace(0, np.nan)
    b["time"] = pd.to_datetime(b.bin, unit="s", utc=True)
    return b[cols]

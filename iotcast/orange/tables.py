"""Readings and figures as Orange tables, and a table's rows back as readings.

:func:`readings_table` makes the Telemetry widget's output: one row per reading, in
arrival order; ``time`` is a :class:`~Orange.data.TimeVariable` (seconds since the
epoch, UTC: what Orange's time-series add-on reads), ``device`` a discrete variable,
the numeric sensors continuous, ``light`` and ``motion`` discrete (``false``/``true``),
an absent sensor a missing value; extra numeric fields (``pressure``) follow.
:func:`table_readings` reads such a table back, value for value (a float64 holds the
parsed number exactly), so an evaluation over the table learns from the very readings
``iotcast evaluate`` reads from the file.  :func:`frame_table` turns the evaluation's
DataFrames into tables, naming which columns are discrete.

>>> from telemetry.reading import Reading
>>> rows = [Reading(1594512000.0, "d1", temp=21.5, light=True),
...         Reading(1594512004.5, "d2", humidity=51.2, extra=(("pressure", 1013.0),))]
>>> t = readings_table(rows)
>>> [v.name for v in t.domain.attributes]
['time', 'device', 'co', 'humidity', 'light', 'lpg', 'motion', 'smoke', 'temp', 'pressure']
>>> list(table_readings(t)) == rows
True
>>> import pandas as pd
>>> f = frame_table(pd.DataFrame({"model": ["a", "b"], "mae": [0.5, 0.25]}), discrete=("model",))
>>> [type(v).__name__ for v in f.domain.attributes], f[1, "mae"]
(['DiscreteVariable', 'ContinuousVariable'], Value('mae', 0.25))
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
from Orange.data import (
    ContinuousVariable,
    DiscreteVariable,
    Domain,
    StringVariable,
    Table,
    TimeVariable,
    Variable,
)

from telemetry.reading import SENSORS, Reading

__all__ = ["TableError", "frame_table", "readings_table", "table_readings"]

TIME, DEVICE = "time", "device"
BOOLEAN = ("light", "motion")
BOOL_VALUES = ("false", "true")
DECIMALS = {"temp": 1, "humidity": 1, "co": 6, "lpg": 6, "smoke": 6}


class TableError(ValueError):
    """A table that holds no readings; the message says which column is missing or wrong."""


def _time_variable(name: str = TIME) -> TimeVariable:
    return TimeVariable(name, have_date=True, have_time=True)


def readings_table(readings: Iterable[Reading], name: str = "telemetry") -> Table:
    """One row per reading (see the module docstring)."""
    rows = list(readings)
    devices = sorted({r.device for r in rows})
    extras = sorted({k for r in rows for k, _ in r.extra})
    columns: list[Variable] = [_time_variable(), DiscreteVariable(DEVICE, values=devices)]
    for s in SENSORS:
        if s in BOOLEAN:
            columns.append(DiscreteVariable(s, values=BOOL_VALUES))
        else:
            columns.append(ContinuousVariable(s, number_of_decimals=DECIMALS.get(s)))
    columns += [ContinuousVariable(e) for e in extras]
    index = {d: float(i) for i, d in enumerate(devices)}
    x = np.full((len(rows), len(columns)), np.nan)
    for i, r in enumerate(rows):
        row = x[i]
        row[0] = r.ts
        row[1] = index[r.device]
        for j, s in enumerate(SENSORS, start=2):
            v = getattr(r, s)
            if v is not None:
                row[j] = float(v)
        for k, v in r.extra:
            row[2 + len(SENSORS) + extras.index(k)] = v
    table = Table.from_numpy(Domain(columns), x)
    table.name = name
    return table


def _find(table: Table, name: str) -> Variable | None:
    domain = table.domain
    for var in (*domain.variables, *domain.metas):
        if var.name == name:
            return var
    return None


def table_readings(table: Table) -> Iterator[Reading]:
    """The readings of a table with a time variable, ``device`` and at least one sensor
    column (any other columns are ignored; rows without a time or device are skipped)."""
    time = _find(table, TIME)
    if time is None or not time.is_continuous:
        time = next((v for v in (*table.domain.variables, *table.domain.metas) if v.is_time), None)
    if time is None:
        raise TableError("the table has no time column (a time variable, e.g. 'time')")
    device = _find(table, DEVICE)
    if device is None:
        raise TableError("the table has no 'device' column")
    sensors = {s: v for s in SENSORS if (v := _find(table, s)) is not None}
    if not sensors:
        raise TableError(f"the table has none of the sensor columns {', '.join(SENSORS)}")
    skip = {TIME, DEVICE, time.name, *SENSORS}
    extras = [
        v
        for v in table.domain.attributes
        if v.is_continuous and not v.is_time and v.name not in skip
    ]

    def column(var: Variable) -> np.ndarray:
        return np.asarray(table.get_column(var))

    ts = column(time).astype(float)
    dev = column(device)
    names = device.values if device.is_discrete else None
    values = {s: column(v) for s, v in sensors.items()}
    bool_true = {s: v.values.index("true") for s, v in sensors.items() if s in BOOLEAN}
    extra_values = [(v.name, column(v).astype(float)) for v in extras]
    for i in range(len(table)):
        t = float(ts[i])
        d = dev[i]
        if math.isnan(t) or (names is not None and math.isnan(d)) or d is None or d == "":
            continue
        fields: dict[str, float | bool] = {}
        for s, col in values.items():
            v = col[i]
            if isinstance(v, float) and math.isnan(v):
                continue
            fields[s] = int(v) == bool_true[s] if s in bool_true else float(v)
        extra = tuple((n, float(c[i])) for n, c in extra_values if not math.isnan(c[i]))
        yield Reading(t, names[int(d)] if names is not None else str(d), **fields, extra=extra)  # type: ignore[arg-type]


def frame_table(
    df: pd.DataFrame,
    *,
    discrete: Sequence[str] = (),
    times: Sequence[str] = (),
    name: str = "",
) -> Table:
    """A DataFrame as a table: ``discrete`` columns become discrete variables (values in
    sorted order, numbers numerically), ``times`` time variables (epoch seconds), booleans
    ``false``/``true``, other numbers continuous, anything else a text meta column."""
    attrs: list[Variable] = []
    metas: list[Variable] = []
    x_cols: list[np.ndarray] = []
    m_cols: list[np.ndarray] = []
    for col in df.columns:
        s = df[col]
        if col in discrete or s.dtype == bool:
            if s.dtype == bool:
                values: list[str] = list(BOOL_VALUES)
                codes = s.astype(int).to_numpy(dtype=float)
            else:
                uniq = sorted(set(s.dropna()), key=lambda v: (isinstance(v, str), v))
                values = [str(v) for v in uniq]
                lookup = {v: float(i) for i, v in enumerate(uniq)}
                codes = np.array([lookup.get(v, np.nan) for v in s], dtype=float)
            attrs.append(DiscreteVariable(str(col), values=values))
            x_cols.append(codes)
        elif col in times:
            attrs.append(_time_variable(str(col)))
            x_cols.append(s.to_numpy(dtype=float))
        elif pd.api.types.is_numeric_dtype(s):
            attrs.append(ContinuousVariable(str(col)))
            x_cols.append(s.to_numpy(dtype=float, na_value=np.nan))
        else:
            metas.append(StringVariable(str(col)))
            m_cols.append(s.fillna("").astype(str).to_numpy(dtype=object))
    n = len(df)
    x = np.column_stack(x_cols) if x_cols else np.empty((n, 0))
    m = np.column_stack(m_cols) if m_cols else None
    table = Table.from_numpy(Domain(attrs, metas=metas), x, metas=m)
    table.name = name
    return table

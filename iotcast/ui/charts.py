"""The page's charts (Plotly figures) and the one plain sentence each carries.

Every figure is built from the frames of :class:`online_models.analysis.Analysis` or
:class:`online_models.data_summary.DataSummary`, in the person's unit and language.
Temperatures are stored in °C (the source file's README says °F; its values are °C):
:class:`Units` converts values (``°F = °C x 9/5 + 32``) and errors (``x 9/5``).

>>> u = Units("temp", "F")
>>> u.value(20.0), u.error(1.0), u.fmt_error(0.5)
(68.0, 1.8, '0.90 °F')
>>> Units("humidity", "F").fmt_error(0.5)
'0.50 %'
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from iotcast.ui.text import (
    anomaly_words,
    duration_words,
    horizon_ahead,
    scenario_words,
    t,
    target_words,
)
from online_models.analysis import Analysis
from online_models.anomaly import Anomaly
from online_models.data_summary import SENSORS, DataSummary
from online_models.report.base import scored_ahead

__all__ = [
    "Units",
    "actual_figure",
    "anomaly_rows",
    "anomaly_value",
    "band_frame",
    "hour_figure",
    "interval_sentence",
    "leaderboard_rows",
    "rolling_figure",
    "scenario_figure",
    "sensor_figure",
    "sentences",
    "utc_time",
]

SERVED_COLOR, PERSISTENCE_COLOR, ACTUAL_COLOR = "#d62728", "#1f77b4", "#111111"
SHOWN_SCENARIOS = ("day", "night", "light_on", "light_off", "motion", "no_motion", "after_gap")
SHOWN_SCENARIOS += ("after_drift",)
# the served forecast's interval bands, widest first (drawn under the narrower one)
BAND_FILLS = {0.95: "rgba(214, 39, 40, 0.12)", 0.8: "rgba(214, 39, 40, 0.30)"}
# anomaly markers: (symbol, colour) per kind; kinds whose value is the target's own
MARKERS = {
    "spike": ("x", "#9467bd"),
    "stuck": ("square", "#8c564b"),
    "silent": ("triangle-down", "#7f7f7f"),
    "level_shift": ("diamond", "#ff7f0e"),
    "gas_rise": ("triangle-up", "#2ca02c"),
}
TARGET_VALUED = ("spike", "stuck", "level_shift")
MAX_EVENTS_SHOWN = 50


class Units:
    """How a target's values and errors are shown: °C or °F for temperature, % for
    humidity, the sensor's own units for the gases."""

    def __init__(self, target: str, unit: str = "C") -> None:
        self.target = target
        self.fahrenheit = target == "temp" and unit == "F"
        self.label = {"temp": "°F" if self.fahrenheit else "°C", "humidity": "%"}.get(target, "")

    def value(self, v: float) -> float:
        return v * 9.0 / 5.0 + 32.0 if self.fahrenheit else v

    def error(self, e: float) -> float:
        return e * 9.0 / 5.0 if self.fahrenheit else e

    def fmt(self, v: float | None, error: bool = False) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        v = self.error(v) if error else self.value(v)
        text = f"{v:.2f}" if self.target in ("temp", "humidity") else f"{v:.3g}"
        return f"{text} {self.label}".rstrip()

    def fmt_error(self, e: float | None) -> str:
        return self.fmt(e, error=True)


def _layout(fig: go.Figure, title: str, height: int = 320, y: str = "") -> go.Figure:
    fig.update_layout(
        title={"text": title, "font": {"size": 14}},
        height=height,
        margin={"l": 50, "r": 10, "t": 40, "b": 40},
        legend={"orientation": "h", "y": -0.25},
        template="plotly_white",
        yaxis_title=y,
        hovermode="x unified",
    )
    return fig


def _name(model: str, lang: str) -> str:
    return t(lang, "served") if model == "served" else model


# ------------------------------------------------------------------ the data
def sensor_figure(summary: DataSummary, device: str, lang: str, unit: str) -> go.Figure:
    """One small chart per sensor of one device (bin means over time): the sensors it has."""
    df = summary.sensors[summary.sensors.device == device]
    shown = [s for s in SENSORS if df[s].notna().any()] or ["temp"]
    fig = make_subplots(
        rows=1, cols=len(shown), subplot_titles=[target_words(lang, s) for s in shown]
    )
    for i, sensor in enumerate(shown, start=1):
        u = Units(sensor, unit)
        ys = df[sensor].map(u.value)
        fig.add_trace(
            go.Scatter(x=df.time, y=ys, mode="lines", line={"width": 1}, name=sensor),
            row=1,
            col=i,
        )
    fig.update_layout(
        height=170,
        showlegend=False,
        margin={"l": 30, "r": 10, "t": 30, "b": 20},
        template="plotly_white",
    )
    fig.update_annotations(font_size=11)
    fig.update_xaxes(nticks=3, tickfont={"size": 9})
    fig.update_yaxes(tickfont={"size": 9})
    return fig


# --------------------------------------------------------------- the answers
def leaderboard_rows(a: Analysis, device: str, horizon: int) -> pd.DataFrame:
    board = a.leaderboard()
    return board[(board.device == device) & (board.horizon == horizon)].reset_index(drop=True)


def _best(board: pd.DataFrame) -> str | None:
    best = board[board.best]
    return None if best.empty else str(best.model.iloc[0])


def _shown_models(a: Analysis, board: pd.DataFrame, chosen: list[str] | None) -> list[str]:
    names = [m for m in a.result.models if m in set(board.model)]
    keep = names if chosen is None else [m for m in names if m in chosen or m == "persistence"]
    return [*keep, "served"]


def actual_figure(
    a: Analysis, device: str, horizon: int, lang: str, unit: str, chosen: list[str] | None = None
) -> go.Figure:
    """Actual against each model's forecast for that moment (the served forecast in red, its
    intervals as bands around it), and a marker for each anomaly event of the device."""
    u = Units(a.result.task.target, unit)
    s = a.series()
    s = s[(s.device == device) & (s.horizon == horizon)]
    board = leaderboard_rows(a, device, horizon)
    fig = go.Figure()
    if "served" in _shown_models(a, board, chosen):
        _add_bands(fig, a, device, horizon, lang, u)  # first: under every line
    actual = s.drop_duplicates("target_ts")
    fig.add_trace(
        go.Scatter(
            x=actual.time,
            y=actual.actual.map(u.value),
            name=t(lang, "actual"),
            line={"color": ACTUAL_COLOR, "width": 2},
        )
    )
    for model in _shown_models(a, board, chosen):
        m = s[s.model == model]
        if m.empty:
            continue
        style = {"width": 1.2}
        if model == "served":
            style = {"color": SERVED_COLOR, "width": 2}
        elif model == "persistence":
            style = {"color": PERSISTENCE_COLOR, "width": 1.2, "dash": "dot"}
        fig.add_trace(
            go.Scatter(x=m.time, y=m.predicted.map(u.value), name=_name(model, lang), line=style)
        )
    _add_markers(fig, a, device, actual, lang, u)
    title = f"{t(lang, 'chart_actual')}: {target_words(lang, a.result.task.target)}, {horizon_ahead(lang, horizon)}"
    return _layout(fig, title, y=u.label)


def band_frame(a: Analysis, device: str, horizon: int) -> pd.DataFrame:
    """The served forecast's published intervals at the plot points of one device and
    horizon: ``time`` (the target time), ``value``, and ``low``/``high`` per ``level``
    (long form); forecasts published without an interval (the band's warm-up) are left out.

    >>> from online_models.analysis import analyse
    >>> from telemetry.generate import generate
    >>> a = analyse(generate(days=0.2, seed=1, devices=1), horizons=(900,))
    >>> b = band_frame(a, a.devices[0], 900)
    >>> sorted(set(b.level)), bool((b.low < b.high).all()), len(b) > 0
    ([0.8, 0.95], True, True)
    """
    levels = a.result.task.interval_levels
    rows = [
        {"target_ts": ts, "value": v, "level": level, "low": b[2 * i], "high": b[2 * i + 1]}
        for ts, v, b in a.result.bands.get((device, horizon), [])
        if len(b) == 2 * len(levels)
        for i, level in enumerate(levels)
    ]
    df = pd.DataFrame(rows, columns=["target_ts", "value", "level", "low", "high"])
    df.insert(0, "time", pd.to_datetime(df.target_ts, unit="s", utc=True))
    return df


def _pct(level: float) -> str:
    return f"{100 * level:g} %"


def _add_bands(fig: go.Figure, a: Analysis, device: str, horizon: int, lang: str, u: Units) -> None:
    """The served forecast's intervals as filled bands (the widest, lightest, first)."""
    bands = band_frame(a, device, horizon)
    for level in sorted(set(bands.level), reverse=True):
        b = bands[bands.level == level]
        name = t(lang, "band", level=_pct(level))
        fill = BAND_FILLS.get(level, "rgba(214, 39, 40, 0.2)")
        group = f"band-{level:g}"
        common = {"mode": "lines", "line": {"width": 0}, "legendgroup": group, "name": name}
        high = f"{name} ↑ %{{y:.2f}}<extra></extra>"
        low = f"{name} ↓ %{{y:.2f}}<extra></extra>"
        fig.add_trace(
            go.Scatter(
                x=b.time, y=b.high.map(u.value), showlegend=False, hovertemplate=high, **common
            )
        )
        fig.add_trace(
            go.Scatter(
                x=b.time,
                y=b.low.map(u.value),
                fill="tonexty",
                fillcolor=fill,
                hovertemplate=low,
                meta=group,
                **common,
            )
        )


def anomaly_rows(a: Analysis, device: str) -> list[Anomaly]:
    """The device's anomaly events (:class:`online_models.anomaly.Anomaly`), in start order."""
    found = [e for e in a.result.anomalies.values() if e.device == device]
    return sorted(found, key=lambda e: (e.start_ts, e.kind))


def utc_time(ts: float | None) -> str:
    """A time as the page shows it, in UTC (empty for none).

    >>> utc_time(1594512094.4), utc_time(None)
    ('2020-07-12 00:01:34', '')
    """
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def anomaly_value(e: Anomaly, u: Units, lang: str) -> tuple[str, str]:
    """An event's value and its expected range, in words of its own unit: the target's for a
    spike, a stuck value or a shift; seconds without a reading for a silence; the gas's own
    level for a gas rise."""
    if e.kind == "stuck":
        return u.fmt(e.value), t(lang, "expected_change")
    if e.kind in TARGET_VALUED:
        return u.fmt(e.value), f"{u.fmt(e.expected_low)} - {u.fmt(e.expected_high)}"
    if e.kind == "silent":
        return f"{e.value:,.0f} s", f"< {e.expected_high:,.0f} s"
    return f"{e.value:.3g}", f"< {e.expected_high:.3g}"


def _add_markers(
    fig: go.Figure, a: Analysis, device: str, actual: pd.DataFrame, lang: str, u: Units
) -> None:
    """One marker per anomaly event, at its start: at its value when the value is the
    target's, else on the measured line; one legend entry per kind."""
    events = anomaly_rows(a, device)
    if not events:
        return
    xs = actual.target_ts.to_numpy(dtype=float)
    ys = actual.actual.to_numpy(dtype=float)
    for kind in [k for k in MARKERS if any(e.kind == k for e in events)]:
        mine = [e for e in events if e.kind == kind]
        y = [
            u.value(e.value)
            if kind in TARGET_VALUED
            else (u.value(float(np.interp(e.start_ts, xs, ys))) if len(xs) else None)
            for e in mine
        ]
        hover = []
        for e in mine:
            value, expected = anomaly_value(e, u, lang)
            end = utc_time(e.end_ts) or t(lang, "ongoing")
            hover.append(
                f"{anomaly_words(lang, kind)}<br>{utc_time(e.start_ts)} - {end}<br>"
                + t(lang, "anomaly_hover", value=value, expected=expected)
            )
        symbol, colour = MARKERS[kind]
        fig.add_trace(
            go.Scatter(
                x=[datetime.fromtimestamp(e.start_ts, UTC) for e in mine],
                y=y,
                mode="markers",
                marker={"symbol": symbol, "size": 11, "color": colour, "line": {"width": 1}},
                name=anomaly_words(lang, kind),
                hovertext=hover,
                hoverinfo="text",
                meta=kind,
            )
        )


def _error_lines(
    a: Analysis, df: pd.DataFrame, x: str, y: str, lang: str, u: Units, **kw
) -> go.Figure:
    """One line per model (the served forecast thicker) of an error column over ``x``."""
    fig = go.Figure()
    for model in [*a.result.models, "served"]:
        m = df[df.model == model]
        if not m.empty:
            width = 2.5 if model == "served" else 1.2
            line = {"x": m[x], "y": m[y].map(u.error), "name": _name(model, lang)}
            fig.add_trace(go.Scatter(**line, line={"width": width}, **kw))
    return fig


def rolling_figure(a: Analysis, device: str, horizon: int, lang: str, unit: str) -> go.Figure:
    u = Units(a.result.task.target, unit)
    r = a.rolling()
    fig = _error_lines(
        a, r[(r.device == device) & (r.horizon == horizon)], "time", "rolling_mae", lang, u
    )
    return _layout(fig, t(lang, "chart_rolling"), y=f"{t(lang, 'axis_error')} ({u.label})")


def hour_figure(a: Analysis, device: str, horizon: int, lang: str, unit: str) -> go.Figure:
    u = Units(a.result.task.target, unit)
    h = a.by_hour()
    h = h[(h.device == device) & (h.horizon == horizon)]
    fig = _error_lines(a, h, "hour", "mae", lang, u, mode="lines+markers")
    fig.update_xaxes(title=t(lang, "axis_hour"), dtick=3)
    _layout(fig, t(lang, "chart_hour"), height=380, y=f"{t(lang, 'axis_error')} ({u.label})")
    fig.update_layout(legend={"y": -0.3})
    return fig


def _scenario_frame(a: Analysis, device: str, horizon: int) -> pd.DataFrame:
    s = a.scenarios()
    return s[(s.device == device) & (s.horizon == horizon) & s.scenario.isin(SHOWN_SCENARIOS)]


def scenario_figure(a: Analysis, device: str, horizon: int, lang: str, unit: str) -> go.Figure:
    u = Units(a.result.task.target, unit)
    s = _scenario_frame(a, device, horizon)
    order = [sc for sc in SHOWN_SCENARIOS if sc in set(s.scenario)]
    board = leaderboard_rows(a, device, horizon)
    best = _best(board)
    fig = go.Figure()
    for model in dict.fromkeys(m for m in (best, "persistence", "served") if m):
        m = s[s.model == model].set_index("scenario").reindex(order)
        fig.add_trace(
            go.Bar(
                y=[scenario_words(lang, sc) for sc in order],
                x=m.mae.map(u.error),
                orientation="h",
                name=_name(model, lang),
                customdata=m.n,
                hovertemplate="%{x:.3f} (n=%{customdata})",
            )
        )
    _layout(fig, t(lang, "chart_scenarios"), height=380)
    fig.update_layout(barmode="group", hovermode="closest", margin={"l": 170})
    fig.update_xaxes(title=f"{t(lang, 'axis_error')} ({u.label})")
    fig.update_yaxes(autorange="reversed")
    return fig


# ------------------------------------------------------------------ sentences
def sentences(a: Analysis, device: str, horizon: int, lang: str, unit: str) -> dict[str, str]:
    """One plain sentence per chart: ``leaderboard``, ``interval`` (the served forecast's
    ranges), ``actual``, ``rolling``, ``hour``, ``scenarios`` (empty where there is nothing to
    say yet)."""
    u = Units(a.result.task.target, unit)
    board = leaderboard_rows(a, device, horizon)
    when = horizon_ahead(lang, horizon, capital=True)
    out = {"actual": t(lang, "s_actual", ahead=horizon_ahead(lang, horizon))}
    out["interval"] = interval_sentence(a, device, horizon, lang, u)
    pers = board[board.model == "persistence"]
    best = _best(board)
    if pers.empty or best is None:
        return {**out, "leaderboard": t(lang, "s_nothing", when=when)}
    pers_mae = float(pers.mae.iloc[0])
    row = board[board.model == best].iloc[0]
    served = board[board.model == "served"]
    if best == "persistence":
        text = t(lang, "s_best_is_pers", when=when, pers=u.fmt_error(pers_mae))
    else:
        text = t(
            lang,
            "s_best",
            when=when,
            model=best,
            mae=u.fmt_error(float(row.mae)),
            pers=u.fmt_error(pers_mae),
            pct=f"{row.vs_persistence_pct:.0f}",
        )
    if not served.empty:
        text += " " + t(lang, "s_served", mae=u.fmt_error(float(served.mae.iloc[0])))
    lead = scored_ahead(a.result, device, horizon)
    if lead is not None:
        text += " " + t(lang, "s_scored_ahead", lead=duration_words(lang, lead))
    out["leaderboard"] = text
    out["rolling"] = _rolling_sentence(a, device, horizon, best, lang, u)
    out["hour"] = _hour_sentence(a, device, horizon, best, lang, u)
    out["scenarios"] = _scenario_sentence(a, device, horizon, best, lang, u)
    return out


def interval_sentence(a: Analysis, device: str, horizon: int, lang: str, u: Units) -> str:
    """How often each of the served forecast's ranges held the measured value, and how wide
    it was on average (the ``interval`` rows of ``metrics.csv``), in words."""
    band = a.result.devices[device].interval(horizon)
    parts = []
    for level in band.levels:
        cov, width = band.coverage(level), band.width(level)
        if cov is not None and width is not None:
            said = {"level": _pct(level), "cov": f"{100 * cov:.0f} %", "width": u.fmt_error(width)}
            parts.append(t(lang, "s_interval_level", **said))
    if not parts:
        return t(lang, "s_interval_none")
    return t(lang, "s_interval", n=f"{band.scored:,}", levels="; ".join(parts))


def _rolling_sentence(a: Analysis, device, horizon, best, lang, u: Units) -> str:
    r = a.rolling()
    r = r[(r.device == device) & (r.horizon == horizon)]
    last = r[r.ts == r.ts.max()].set_index("model").rolling_mae
    if best not in last or "persistence" not in last:
        return ""
    return t(lang, "s_rolling", best=u.fmt_error(last[best]), pers=u.fmt_error(last["persistence"]))


def _hour_sentence(a: Analysis, device, horizon, best, lang, u: Units) -> str:
    h = a.by_hour()
    h = h[(h.device == device) & (h.horizon == horizon) & (h.model == best)]
    return _extremes_sentence(h, "s_hour", best, lang, u, lambda r: f"{int(r.hour):02d}")


def _scenario_sentence(a: Analysis, device, horizon, best, lang, u: Units) -> str:
    s = _scenario_frame(a, device, horizon)
    s = s[(s.model == best) & (s.n > 0)]
    return _extremes_sentence(
        s, "s_scenarios", best, lang, u, lambda r: scenario_words(lang, r.scenario)
    )


def _extremes_sentence(frame, key: str, model: str, lang, u: Units, words) -> str:
    """The sentence naming the rows of ``frame`` with the highest and lowest MAE."""
    if len(frame) < 2:
        return ""
    worst, easy = frame.loc[frame.mae.idxmax()], frame.loc[frame.mae.idxmin()]
    return t(
        lang,
        key,
        model=model,
        worst=words(worst),
        worst_mae=u.fmt_error(worst.mae),
        easy=words(easy),
        easy_mae=u.fmt_error(easy.mae),
    )

"""The page's layout: four sections (data, question, results, live fleet), English at first.

Every fixed label is a :func:`label`: an element whose id names its text key, so one
callback re-renders them all in the chosen language. Ids that the tests and the
callbacks use are plain strings.
"""

from __future__ import annotations

from dash import dcc, html

from iotcast.ui.text import t
from iotcast.ui.workspace import DEFAULT_LIMIT

__all__ = ["label", "layout"]

HIDDEN = {"display": "none"}


def label(key: str, tag: type = html.Span, **kwargs) -> html.Component:
    """An element showing text ``key`` (``key#2`` for a second one of the same text)."""
    return tag(t("en", key.split("#")[0]), id={"type": "t", "key": key}, **kwargs)


def _header() -> html.Div:
    return html.Div(
        className="header",
        children=[
            html.Div([label("title", html.H1), label("subtitle", html.P, className="muted")]),
            html.Div(
                className="switches",
                children=[
                    label("language", html.Label),
                    dcc.RadioItems(
                        id="lang",
                        options=[
                            {"label": "English", "value": "en"},
                            {"label": "Español", "value": "es"},
                        ],
                        value="en",
                        inline=True,
                        persistence=True,
                    ),
                    label("units", html.Label),
                    dcc.RadioItems(
                        id="unit",
                        options=[{"label": "°C", "value": "C"}, {"label": "°F", "value": "F"}],
                        value="C",
                        inline=True,
                        persistence=True,
                    ),
                ],
            ),
        ],
    )


def _data() -> html.Section:
    return html.Section(
        id="data-section",
        className="card",
        children=[
            label("data", html.H2),
            label("data_help", html.P, className="muted"),
            dcc.Upload(id="upload", className="upload", children=label("upload", html.Div)),
            html.Div(
                className="row",
                children=[
                    dcc.Input(id="path", type="text", className="path", debounce=False),
                    html.Button(label("open"), id="open", className="button"),
                    html.Button(label("sample"), id="sample", className="button primary"),
                ],
            ),
            html.Div(id="data-message", role="alert"),
            html.Div(
                id="large",
                className="notice",
                style=HIDDEN,
                children=[
                    html.P(id="large-text"),
                    label("large_limit"),
                    dcc.Input(id="limit", type="number", min=1000, step=1000, value=DEFAULT_LIMIT),
                    label("large_rows"),
                    html.Button(label("large_ok"), id="large-ok", className="button primary"),
                    html.Button(label("large_all"), id="large-all", className="button"),
                ],
            ),
            _progress("data"),
            html.Div(id="summary"),
        ],
    )


def _progress(name: str) -> html.Div:
    return html.Div(
        id=f"{name}-progress-box",
        className="progress",
        style=HIDDEN,
        children=[
            html.Progress(id=f"{name}-progress", max="100", value="0"),
            html.Span(id=f"{name}-progress-text"),
        ],
    )


def _question(default_models: list[str]) -> html.Section:
    return html.Section(
        id="question-section",
        className="card",
        children=[
            label("question", html.H2),
            html.Div(
                className="grid",
                children=[
                    html.Div(
                        [
                            label("devices", html.H3),
                            dcc.Checklist(id="devices", options=[], value=[]),
                        ]
                    ),
                    html.Div(
                        [
                            label("target", html.H3),
                            dcc.RadioItems(id="target", value="temp"),
                            html.P(id="target-note", className="muted"),
                        ]
                    ),
                    html.Div(
                        [
                            label("horizons", html.H3),
                            dcc.Checklist(id="horizons", value=[900, 3600]),
                            html.P(id="nowcast-note", className="muted"),
                        ]
                    ),
                ],
            ),
            label("models", html.H3),
            dcc.Checklist(id="models", className="models", value=default_models),
            label("cost_note", html.P, className="muted"),
            dcc.Checklist(id="references", value=["on"]),
            html.Div(
                className="row",
                children=[
                    html.Button(label("run"), id="run", className="button primary big"),
                    html.Button(label("cancel"), id="cancel", className="button"),
                ],
            ),
            _progress("run"),
            html.Div(id="run-message", role="status"),
        ],
    )


def _chart(name: str) -> html.Div:
    return html.Div(
        className="chart",
        children=[
            dcc.Graph(id=f"g-{name}", config={"displaylogo": False}),
            html.P(id=f"s-{name}", className="sentence"),
        ],
    )


def _results() -> html.Section:
    return html.Section(
        id="results-section",
        className="card",
        children=[
            label("results", html.H2),
            html.P(id="results-empty", className="muted"),
            html.Div(
                id="results",
                style=HIDDEN,
                children=[
                    html.Div(
                        className="row",
                        children=[
                            label("show_device", html.Label),
                            dcc.Dropdown(id="view-device", clearable=False, className="select"),
                            label("show_horizon", html.Label),
                            dcc.Dropdown(id="view-horizon", clearable=False, className="select"),
                        ],
                    ),
                    label("leaderboard", html.H3),
                    html.P(id="s-leaderboard", className="sentence headline"),
                    html.Div(id="leaderboard"),
                    html.P(id="s-interval", className="sentence"),
                    label("toggle_hint", html.P, className="muted"),
                    _chart("actual"),
                    label("anomalies", html.H3),
                    html.Div(id="anomalies"),
                    _chart("rolling"),
                    html.Div(className="two", children=[_chart("hour"), _chart("scenarios")]),
                    html.Div(
                        className="row",
                        children=[
                            html.Button(label("download_html"), id="dl-html", className="button"),
                            html.Button(label("download_csv"), id="dl-csv", className="button"),
                        ],
                    ),
                    dcc.Download(id="download"),
                ],
            ),
        ],
    )


def _fleet() -> html.Section:
    return html.Section(
        id="fleet-section",
        className="card",
        children=[
            label("fleet", html.H2),
            label("fleet_help", html.P, className="muted"),
            html.Button(label("refresh"), id="refresh", className="button"),
            html.Div(id="fleet-table"),
            html.Div(
                id="fleet-actions",
                className="row",
                style=HIDDEN,
                children=[
                    dcc.Dropdown(id="fleet-device", className="select wide"),
                    dcc.Dropdown(id="fleet-model", className="select"),
                    dcc.Dropdown(
                        id="fleet-horizon", className="select", value="all", clearable=False
                    ),
                    dcc.Input(id="reason", type="text", className="path"),
                    html.Button(label("promote"), id="promote", className="button primary"),
                    dcc.Input(id="to-version", type="text", className="short"),
                    html.Button(label("rollback"), id="rollback", className="button"),
                ],
            ),
            dcc.ConfirmDialog(id="confirm-promote"),
            dcc.ConfirmDialog(id="confirm-rollback"),
            html.Pre(id="fleet-result", className="result"),
            label("events_today", html.H3),
            html.Div(id="fleet-events", role="status"),
        ],
    )


def layout(default_models: list[str]) -> html.Div:
    """The whole page; ``default_models`` are ticked at first (the catalog's default set)."""
    return html.Div(
        className="page",
        children=[
            _header(),
            dcc.Store(id="dataset"),
            dcc.Store(id="data-job"),
            dcc.Store(id="data-msg"),
            dcc.Store(id="pending"),
            dcc.Store(id="run-job"),
            dcc.Store(id="run-msg"),
            dcc.Store(id="result"),
            dcc.Store(id="fleet"),
            dcc.Store(id="costs-shown"),
            dcc.Interval(id="poll", interval=400),
            _data(),
            _question(default_models),
            _results(),
            _fleet(),
        ],
    )

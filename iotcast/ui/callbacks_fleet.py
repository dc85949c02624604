"""Callbacks of the live fleet: devices and champions from S3, promote and roll back after a
confirmation (through ``iotcast models promote|rollback``, see :mod:`iotcast.ui.fleet`), and
what happened to the chosen device today (its events, :func:`iotcast.ui.fleet.device_events`)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from dash import Input, Output, State, ctx, html
from dash.exceptions import PreventUpdate

from iotcast.ui.callbacks_data import table
from iotcast.ui.fleet import DeviceEvents, Fleet, device_events, fleet, operator_command
from iotcast.ui.layout import HIDDEN
from iotcast.ui.text import event_words, horizon_words, t
from iotcast.ui.workspace import Workspace

__all__ = ["events_view", "register"]


def register(app: Any, ws: Workspace) -> None:
    _listing(app, ws)
    _actions(app, ws)
    _events(app, ws)


def _events(app: Any, ws: Workspace) -> None:
    @app.callback(
        Output("fleet-events", "children"),
        Input("fleet-device", "value"),
        Input("fleet", "data"),
        Input("lang", "value"),
    )
    def happened(device, _data, lang):
        if not device:
            return html.P(t(lang, "events_pick"), className="muted")
        return events_view(lang, device_events(ws.settings, device))


def batch_view(lang: str, batch: dict[str, Any] | None) -> html.P | None:
    """The batch model's line: the current version and its shadow verdict."""
    if batch is None:
        return None
    verdict = batch.get("verdict")
    if verdict is None:
        said = t(lang, "batch_in_shadow")
    elif verdict.get("outcome") == "accepted":
        serves = ", ".join(horizon_words(lang, int(h)) for h in verdict.get("serves", []))
        said = t(lang, "batch_accepted", serves=serves)
    else:
        said = t(lang, "batch_refused", reason=str(verdict.get("reason", "")))
    return html.P(t(lang, "batch_current", version=batch["current"], said=said), id="fleet-batch")


def events_view(lang: str, found: DeviceEvents) -> html.Div | html.P:
    """A device's events of today as a list: time (UTC), what happened in words, and the
    processor's reason; or in words why there is none."""
    if found.error:
        text = t(lang, "events_error", device=found.device, where=found.where, error=found.error)
        return html.P(text, className="message warn")
    if not found.rows:
        return html.P(t(lang, "events_none", device=found.device), className="muted")
    items = [
        html.Li(
            [
                html.Span(str(e.get("at") or "")[11:19], className="when"),
                " ",
                html.Span(event_words(lang, e), className="what"),
                " ",
                html.Span(str(e.get("reason") or ""), className="muted why"),
            ],
            className=f"event {e.get('event')}",
        )
        for e in found.rows
    ]
    return html.Div(
        [
            html.P(t(lang, "events_of", n=len(found.rows), device=found.device)),
            html.Ul(items, id="fleet-events-list", className="events"),
        ]
    )


def _listing(app: Any, ws: Workspace) -> None:
    @app.callback(
        Output("fleet", "data"),
        Input("refresh", "n_clicks"),
        Input("fleet-result", "children"),
    )
    def refresh(_n, _result):
        return asdict(fleet(ws.settings))

    @app.callback(
        Output("fleet-table", "children"),
        Output("fleet-actions", "style"),
        Output("fleet-device", "options"),
        Output("fleet-horizon", "options"),
        Input("fleet", "data"),
        Input("lang", "value"),
    )
    def show(data, lang):
        f = Fleet(**data) if data else Fleet()
        every = [{"label": t(lang, "all_horizons"), "value": "all"}]
        if f.error:
            return (
                html.P(
                    t(lang, "fleet_none", where=f.where, error=f.error), className="message warn"
                ),
                HIDDEN,
                [],
                every,
            )
        if not f.rows:
            return html.P(t(lang, "fleet_empty"), className="muted"), HIDDEN, [], every
        header = [
            t(lang, k)
            for k in ("col_device", "col_shard", "col_version", "col_samples", "col_champion")
        ]
        rows = [
            [
                r["device"],
                r["shard"],
                str(r["version"]),
                f"{r['samples']:,}",
                ", ".join(
                    f"{horizon_words(lang, int(h))}: {m}"
                    for h, m in sorted(r["champion"].items(), key=lambda x: int(x[0]))
                ),
            ]
            for r in f.rows
        ]
        horizons = sorted({int(h) for r in f.rows for h in r["champion"]})
        options = every + [{"label": horizon_words(lang, h), "value": str(h)} for h in horizons]
        devices = [{"label": r["device"], "value": r["device"]} for r in f.rows]
        return (
            html.Div(
                [
                    table(header, rows, id="fleet-devices", className="figures"),
                    batch_view(lang, f.batch),
                ]
            ),
            {"display": "flex"},
            devices,
            options,
        )

    @app.callback(
        Output("fleet-model", "options"), Input("fleet-device", "value"), State("fleet", "data")
    )
    def models(device, data):
        rows = (data or {}).get("rows", [])
        names = next((r["models"] for r in rows if r["device"] == device), [])
        return [{"label": n, "value": n} for n in names]


def _actions(app: Any, ws: Workspace) -> None:
    @app.callback(
        Output("confirm-promote", "displayed"),
        Output("confirm-promote", "message"),
        Output("confirm-rollback", "displayed"),
        Output("confirm-rollback", "message"),
        Output("fleet-result", "children", allow_duplicate=True),
        Input("promote", "n_clicks"),
        Input("rollback", "n_clicks"),
        State("fleet-device", "value"),
        State("fleet-model", "value"),
        State("fleet-horizon", "value"),
        State("to-version", "value"),
        State("lang", "value"),
        prevent_initial_call=True,
    )
    def ask(_p, _r, device, model, horizon, version, lang):
        if ctx.triggered_id == "promote":
            if not device or not model:
                return False, "", False, "", t(lang, "pick_device_model")
            where = (
                t(lang, "all_horizons")
                if horizon in (None, "all")
                else horizon_words(lang, int(horizon))
            )
            text = t(lang, "confirm_promote", model=model, device=device, horizon=where)
            return True, text, False, "", ""
        if not device:
            return False, "", False, "", t(lang, "pick_device_model")
        which = version or t(lang, "the_one_before")
        return False, "", True, t(lang, "confirm_rollback", device=device, version=which), ""

    @app.callback(
        Output("fleet-result", "children"),
        Input("confirm-promote", "submit_n_clicks"),
        Input("confirm-rollback", "submit_n_clicks"),
        State("fleet-device", "value"),
        State("fleet-model", "value"),
        State("fleet-horizon", "value"),
        State("to-version", "value"),
        State("reason", "value"),
        State("lang", "value"),
        prevent_initial_call=True,
    )
    def act(_p, _r, device, model, horizon, version, reason, lang):
        if not device:
            raise PreventUpdate
        why = ["--reason", reason or "from the analysis page", "--by", "analysis page"]
        if ctx.triggered_id == "confirm-promote":
            extra = [] if horizon in (None, "all") else ["--horizon", str(horizon)]
            done = operator_command(ws.settings, "promote", device, model, *extra, *why)
        else:
            extra = ["--to", version.strip()] if version and version.strip() else []
            done = operator_command(ws.settings, "rollback", device, *extra, *why)
        head = (
            t(lang, "command_ok") if done.code == 0 else t(lang, "command_failed", code=done.code)
        )
        return f"{head}\n$ iotcast models {' '.join(done.argv[done.argv.index('models') + 1 :])}\n{done.output}"

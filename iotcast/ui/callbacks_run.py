"""Callbacks of the question and the results: the choices, the run in the background
(progress, cancel, cache), the leaderboard and charts with their sentences, downloads."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from iotcast.ui import charts
from iotcast.ui.callbacks_data import job_poller, table
from iotcast.ui.layout import HIDDEN
from iotcast.ui.text import anomaly_words, horizon_words, model_description, t, target_words
from iotcast.ui.workspace import TARGET_ORDER, Contents, Question, Workspace
from online_models.baselines import BASELINES
from online_models.evaluate import DeviceInput

__all__ = ["HORIZON_CHOICES", "register"]

HORIZON_CHOICES = (0, 900, 3600, 21600)
CHART_NAMES = ("actual", "rolling", "hour", "scenarios")


def _msg(key: str, kind: str = "error", **fields: Any) -> list[dict[str, Any]]:
    return [{"key": key, "fields": fields, "kind": kind}]


def model_options(ws: Workspace, lang: str) -> list[dict[str, Any]]:
    """Every catalog model: name, baseline or not, its one-line description, measured cost."""
    out = []
    for spec in ws.catalog:
        cost = ws.costs.get(spec.name)
        parts: list[Any] = [html.B(spec.name)]
        if spec.name in BASELINES:
            parts.append(html.Span(t(lang, "baseline"), className="badge"))
        parts.append(html.Span(" " + model_description(lang, spec.name, spec.description)))
        text = (
            t(lang, "cost", us=f"{cost:,.0f}" if cost >= 1 else f"{cost:.1f}")
            if cost
            else t(lang, "cost_unknown")
        )
        parts.append(html.Span(text, className="cost"))
        out.append({"label": html.Span(parts, className="model"), "value": spec.name})
    return out


def register(app: Any, ws: Workspace) -> None:
    _question(app, ws)
    _progress(app, ws)
    _results(app, ws)


def _targets(app: Any, ws: Workspace) -> None:
    # The targets are the numeric sensors the chosen devices have; the nowcast is offered when
    # one of them has another sensor. Values are written only when they must change (a target
    # the devices lack, the nowcast no longer possible): a click landing meanwhile stays.
    @app.callback(
        Output("target", "options"),
        Output("target", "value"),
        Output("target-note", "children"),
        Output("horizons", "options"),
        Output("horizons", "value"),
        Output("nowcast-note", "children"),
        Output("references", "options"),
        Input("lang", "value"),
        Input("dataset", "data"),
        Input("devices", "value"),
        Input("target", "value"),
        State("horizons", "value"),
        State("target", "options"),
        State("horizons", "options"),
    )
    def choices(lang, dataset, devices, target, horizons, shown_targets, shown_horizons):
        contents = _contents(ws, dataset)
        references = [{"label": t(lang, "references"), "value": "on"}]
        chosen = target
        if contents is None:  # no file yet: every target, every horizon
            targets, pool, nowcast = dict.fromkeys(TARGET_ORDER, 0), [], True
        else:
            pool = [d for d in devices or [] if d in contents.inputs] or contents.devices
            targets = contents.targets(pool)
            if chosen not in targets and targets:
                chosen = next(iter(targets))
            nowcast = chosen in targets and contents.nowcast_possible(chosen, pool)
        target_opts = [
            {"label": _target_label(lang, k, n, len(pool)), "value": k} for k, n in targets.items()
        ]
        horizon_opts = [
            {"label": horizon_words(lang, h), "value": h, "disabled": h == 0 and not nowcast}
            for h in HORIZON_CHOICES
        ]
        keep = [h for h in horizons or [] if h != 0 or nowcast]
        if not targets:
            target_note, nowcast_note = t(lang, "no_target"), ""
        else:
            target_note = ""
            said = target_words(lang, chosen)
            nowcast_note = "" if nowcast else t(lang, "nowcast_none", sensor=said)
        # Options are redrawn only when they change: a click on one being redrawn is lost.
        return (
            target_opts if target_opts != shown_targets else no_update,
            chosen if chosen != target else no_update,
            target_note,
            horizon_opts if horizon_opts != shown_horizons else no_update,
            keep if keep != (horizons or []) else no_update,
            nowcast_note,
            references,
        )


def _question(app: Any, ws: Workspace) -> None:
    # The models' options have callbacks of their own, so that the costs arriving late
    # redraw them only: a click on an option while it is being redrawn is lost.
    _targets(app, ws)

    @app.callback(
        Output("models", "options"),
        Output("costs-shown", "data"),
        Input("lang", "value"),
    )
    def models(lang):
        return model_options(ws, lang), bool(ws.costs)

    # Apart from the language's, which must not be re-triggered by the poll: the browser drops
    # an answer whose callback fired again before it came (the options never showed).
    @app.callback(
        Output("models", "options", allow_duplicate=True),
        Output("costs-shown", "data", allow_duplicate=True),
        Input("poll", "n_intervals"),
        State("lang", "value"),
        State("costs-shown", "data"),
        prevent_initial_call=True,
    )
    def costs(_n, lang, costs_shown):
        if costs_shown or not ws.costs:
            raise PreventUpdate
        return model_options(ws, lang), True

    @app.callback(
        Output("run-job", "data"),
        Output("run-msg", "data"),
        Input("run", "n_clicks"),
        State("dataset", "data"),
        State("devices", "value"),
        State("target", "value"),
        State("horizons", "value"),
        State("models", "value"),
        State("references", "value"),
        prevent_initial_call=True,
    )
    def run(_n, dataset, devices, target, horizons, models, references):
        contents = _contents(ws, dataset)
        if contents is None:
            return None, _msg("no_data")
        if not devices or not horizons or not models:
            return None, _msg("need_choice")
        lacking = [
            d for d in devices if target not in contents.inputs.get(d, DeviceInput()).sensors
        ]
        devices = [d for d in devices if d not in lacking]
        if not devices:
            return None, _msg("target_none", sensor=target)
        q = Question(
            path=dataset["path"],
            limit=dataset.get("limit"),
            devices=tuple(sorted(devices)),
            target=target,
            horizons=tuple(sorted(int(h) for h in horizons)),
            models=tuple(n for n in ws.catalog.names if n in models),
            references=bool(references),
        )
        job = ws.run(q, dataset["rows"])
        cached = job.state == "done"
        info = {"id": job.id, "models": list(q.models), "cached": cached, "lacking": lacking}
        info["target"] = target
        return info, (_msg("cached", "info") if cached else []) + _left_out(info)

    @app.callback(
        Output("run-msg", "data", allow_duplicate=True),
        Input("cancel", "n_clicks"),
        State("run-job", "data"),
        prevent_initial_call=True,
    )
    def cancel(_n, info):
        ws.jobs.cancel(info["id"] if info else None)
        raise PreventUpdate


def _left_out(info: dict) -> list[dict[str, Any]]:
    """The devices left out of a run for lacking its target, said with its answer."""
    if not info.get("lacking"):
        return []
    lacking = ", ".join(info["lacking"])
    return _msg("target_left_out", "info", sensor=info["target"], devices=lacking)


def _run_result(job: Any, info: dict) -> tuple[Any, list[dict[str, Any]]]:
    if job.state == "cancelled":
        return no_update, _msg("cancelled", "info")
    if job.state == "failed":
        return no_update, _msg("failed", error=job.error)
    if info.get("cached"):  # the poll delivers the answer; the message stays "reused"
        return info, _msg("cached", "info") + _left_out(info)
    rows, secs = f"{job.result.result.rows:,}", f"{job.seconds:.1f}"
    return info, _msg("done", "ok", rows=rows, secs=secs) + _left_out(info)


def _progress(app: Any, ws: Workspace) -> None:
    job_poller(app, ws, "run", "result", "running", _run_result)


def _results(app: Any, ws: Workspace) -> None:
    @app.callback(
        Output("view-device", "options"),
        Output("view-device", "value"),
        Output("view-horizon", "options"),
        Output("view-horizon", "value"),
        Input("result", "data"),
        Input("lang", "value"),
        State("view-device", "value"),
        State("view-horizon", "value"),
    )
    def views(info, lang, device, horizon):
        a = _analysis(ws, info)
        if a is None:
            return [], None, [], None
        devices, horizons = a.devices, list(a.horizons)
        d_opts = [{"label": d, "value": d} for d in devices]
        h_opts = [{"label": horizon_words(lang, h), "value": h} for h in horizons]
        return (
            d_opts,
            device if device in devices else (devices[0] if devices else None),
            h_opts,
            horizon if horizon in horizons else horizons[-1],
        )

    outputs = [Output("results", "style"), Output("results-empty", "children")]
    outputs += [Output("leaderboard", "children"), Output("s-leaderboard", "children")]
    outputs += [Output("s-interval", "children"), Output("anomalies", "children")]
    for name in CHART_NAMES:
        outputs += [Output(f"g-{name}", "figure"), Output(f"s-{name}", "children")]

    @app.callback(
        *outputs,
        Input("result", "data"),
        Input("lang", "value"),
        Input("unit", "value"),
        Input("view-device", "value"),
        Input("view-horizon", "value"),
    )
    def results(info, lang, unit, device, horizon):
        a = _analysis(ws, info)
        if a is None or device not in a.result.devices or horizon not in a.horizons:
            return [HIDDEN, t(lang, "no_result")] + [no_update] * (4 + 2 * len(CHART_NAMES))
        said = charts.sentences(a, device, horizon, lang, unit)
        out: list[Any] = [{"display": "block"}, ""]
        out += [_leaderboard(a, device, horizon, lang, unit), said.get("leaderboard", "")]
        out += [said.get("interval", ""), anomalies_view(a, device, lang, unit)]
        chosen = info.get("models")
        figures = {
            "actual": charts.actual_figure(a, device, horizon, lang, unit, chosen),
            "rolling": charts.rolling_figure(a, device, horizon, lang, unit),
            "hour": charts.hour_figure(a, device, horizon, lang, unit),
            "scenarios": charts.scenario_figure(a, device, horizon, lang, unit),
        }
        for name in CHART_NAMES:
            out += [figures[name], said.get(name, "")]
        return out

    @app.callback(
        Output("download", "data"),
        Input("dl-html", "n_clicks"),
        Input("dl-csv", "n_clicks"),
        State("result", "data"),
        prevent_initial_call=True,
    )
    def download(_html, _csv, info):
        a = _analysis(ws, info)
        if a is None:
            raise PreventUpdate
        out = ws.folder / "reports" / info["id"]
        if not (out / "report.html").exists():
            a.write_report(out)
        name = "report.html" if ctx.triggered_id == "dl-html" else "metrics.csv"
        return dcc.send_file(str(out / name), filename=f"iotcast-{a.result.task.target}-{name}")


def _target_label(lang: str, target: str, n: int, total: int) -> str:
    """The target in words, with how many of the devices have it when not all do."""
    words = target_words(lang, target)
    return words if n in (0, total) else t(lang, "target_some", sensor=words, n=n, total=total)


def _contents(ws: Workspace, dataset: dict | None) -> Contents | None:
    """The file read (its summary and what each device sent), once its reading is done."""
    job = ws.jobs.get(dataset["job"]) if dataset else None
    return job.result if job is not None and job.state == "done" else None


def _analysis(ws: Workspace, info: dict | None):
    job = ws.jobs.get(info["id"]) if info else None
    return job.result if job is not None and job.state == "done" else None


def anomalies_view(a: Any, device: str, lang: str, unit: str) -> html.Div:
    """The device's anomaly events as a list: what, start, end, value, expected range."""
    u = charts.Units(a.result.task.target, unit)
    events = charts.anomaly_rows(a, device)
    if not events:
        return html.Div(html.P(t(lang, "s_anomalies_none"), className="sentence"))
    said = t(lang, "s_anomalies", n=f"{len(events):,}")
    shown = events[: charts.MAX_EVENTS_SHOWN]
    if len(shown) < len(events):
        said += " " + t(lang, "s_anomalies_more", shown=len(shown))
    header = [t(lang, k) for k in ("col_kind", "col_start", "col_end", "col_value")]
    rows = []
    for e in shown:
        value, expected = charts.anomaly_value(e, u, lang)
        end = charts.utc_time(e.end_ts) or t(lang, "ongoing")
        what = html.Span(anomaly_words(lang, e.kind), className="kind", title=e.kind)
        rows.append([what, charts.utc_time(e.start_ts), end, value, expected])
    header.append(t(lang, "col_expected"))
    body = table(header, rows, id="anomalies-table", className="figures")
    return html.Div([html.P(said, className="sentence"), body])


def _leaderboard(a, device: str, horizon: int, lang: str, unit: str) -> html.Table:
    u = charts.Units(a.result.task.target, unit)
    board = charts.leaderboard_rows(a, device, horizon)
    header = [t(lang, k) for k in ("col_model", "col_mae", "col_rmse", "col_vs", "col_n")]
    rows = []
    for r in board.itertuples():
        name: list[Any] = [t(lang, "served") if r.model == "served" else r.model]
        if r.baseline:
            name.append(html.Span(t(lang, "baseline"), className="badge"))
        if r.best:
            name.append(html.Span("★ " + t(lang, "best_mark"), className="badge best"))
        vs = "" if r.model == "persistence" else f"{r.vs_persistence_pct:+.1f} %"
        mae = html.Span(u.fmt_error(r.mae), title=repr(u.error(r.mae)), className="mae")
        rows.append(
            [
                html.Span(name, className="name", title=r.model),
                mae,
                u.fmt_error(r.rmse),
                vs,
                f"{r.n:,}",
            ]
        )
    return table(header, rows, id="leaderboard-table", className="figures")

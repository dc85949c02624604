"""Callbacks of the page's first section: choosing the data, reading it, its summary; and
the language of every fixed label."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

from dash import ALL, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from iotcast.ui.charts import sensor_figure
from iotcast.ui.layout import HIDDEN
from iotcast.ui.text import (
    row_reason_words,
    sensor_words,
    t,
    target_words,
    value_reason_words,
    values_words,
)
from iotcast.ui.workspace import LARGE_ROWS, Contents, Workspace

__all__ = ["job_poller", "left_out", "message", "progress_view", "register", "row_reasons", "table"]

SHOWN = {"display": "block"}


def message(msgs: list[dict[str, Any]] | None, lang: str) -> list[html.Div]:
    """Stored messages (``{"key", "fields", "kind"}``) in ``lang``. Codes are stored and said
    in ``lang``: a field ``sensor`` (``humidity``), ``reason`` (why a row was refused) or
    ``reasons`` (reason -> rows)."""
    out = []
    for m in msgs or []:
        fields = dict(m.get("fields", {}))
        if "sensor" in fields:
            fields["sensor"] = target_words(lang, fields["sensor"])
        if "reason" in fields:
            fields["reason"] = row_reason_words(lang, fields["reason"])
        if "reasons" in fields:
            fields["reasons"] = row_reasons(lang, fields["reasons"])
        out.append(
            html.Div(t(lang, m["key"], **fields), className=f"message {m.get('kind', 'info')}")
        )
    return out


def row_reasons(lang: str, counts: dict[str, int]) -> str:
    """Why rows were refused, most frequent first: "no usable sensor value (10), …"."""
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{row_reason_words(lang, r)} ({n:,})" for r, n in ranked)


def table(header: list[str], rows: list[list[Any]], **kwargs: Any) -> html.Table:
    return html.Table(
        [html.Thead(html.Tr([html.Th(h) for h in header]))]
        + [html.Tbody([html.Tr([html.Td(c) for c in r]) for r in rows])],
        **kwargs,
    )


def progress_view(job: Any, lang: str, doing: str) -> tuple[dict, str, str]:
    """The progress bar of a job: its style, value (percent) and words."""
    pct = int(100 * job.fraction)
    words = t(lang, "rows_of", done=f"{job.done:,}", total=f"{job.total:,}", pct=pct)
    shown = {"display": "flex"} if job.state == "running" else HIDDEN
    return shown, str(pct), f"{t(lang, doing)}: {words}"


def _msg(key: str, kind: str = "error", **fields: Any) -> list[dict[str, Any]]:
    return [{"key": key, "fields": fields, "kind": kind}]


def register(app: Any, ws: Workspace) -> None:
    _labels_and_choice(app, ws)
    _reading(app, ws)


def _labels_and_choice(app: Any, ws: Workspace) -> None:
    @app.callback(
        Output({"type": "t", "key": ALL}, "children"),
        Output("path", "placeholder"),
        Output("reason", "placeholder"),
        Output("to-version", "placeholder"),
        Input("lang", "value"),
        State({"type": "t", "key": ALL}, "id"),
    )
    def translate(lang, ids):
        texts = [t(lang, i["key"].split("#")[0]) for i in ids]
        return texts, t(lang, "path"), t(lang, "reason"), t(lang, "to_version")

    @app.callback(
        Output("data-job", "data"),
        Output("pending", "data"),
        Output("data-msg", "data"),
        Output("large", "style"),
        Input("upload", "contents"),
        Input("open", "n_clicks"),
        Input("sample", "n_clicks"),
        Input("large-ok", "n_clicks"),
        Input("large-all", "n_clicks"),
        State("upload", "filename"),
        State("path", "value"),
        State("pending", "data"),
        State("limit", "value"),
        prevent_initial_call=True,
    )
    def choose(contents, _open, _sample, _ok, _all, filename, path_text, pending, limit):
        trigger = ctx.triggered_id
        if trigger in ("large-ok", "large-all"):
            if not pending:
                raise PreventUpdate
            use = int(limit) if trigger == "large-ok" and limit else None
            return _start(ws, Path(pending["path"]), pending["name"], use), None, [], HIDDEN
        if trigger == "upload":
            if not contents:
                raise PreventUpdate
            path, name = ws.save_upload(filename, contents), filename or "upload"
        elif trigger == "open":
            if not path_text:
                raise PreventUpdate
            path = Path(path_text.strip()).expanduser()
            name = path.name
        else:
            path, name = ws.sample(), "sample"
        problem = ws.check(path)
        if problem is not None:
            return None, None, _msg(problem.key, **problem.fields), HIDDEN
        rows = ws.rows(path)
        if rows == 0:
            return None, None, _msg("err_no_rows"), HIDDEN
        if rows > LARGE_ROWS:
            pending = {"path": str(path), "name": name, "rows": rows}
            return None, pending, _msg("large", "info", rows=f"{rows:,}"), SHOWN
        return _start(ws, path, name, None), None, [], HIDDEN


def job_poller(app: Any, ws: Workspace, prefix: str, store: str, doing: str, finish: Any) -> None:
    """Register the poll of a background job whose parts are named ``prefix-...``: its
    progress bar while it runs; once it ends, ``finish(job, info)`` gives the value for
    the ``store`` (or ``no_update``) and the messages, shown in ``prefix-message``."""

    @app.callback(
        Output(f"{prefix}-progress-box", "style"),
        Output(f"{prefix}-progress", "value"),
        Output(f"{prefix}-progress-text", "children"),
        Output(store, "data"),
        Output(f"{prefix}-msg", "data", allow_duplicate=True),
        Output(f"{prefix}-job", "data", allow_duplicate=True),
        Input("poll", "n_intervals"),
        State(f"{prefix}-job", "data"),
        State("lang", "value"),
        prevent_initial_call=True,
    )
    def poll(_n, info, lang):
        job = ws.jobs.get(info["id"]) if info else None
        if job is None:
            raise PreventUpdate
        if job.state == "running":
            return *progress_view(job, lang, doing), no_update, no_update, no_update
        value, msgs = finish(job, info)
        return HIDDEN, "0" if value is no_update else "100", "", value, msgs, None

    @app.callback(
        Output(f"{prefix}-message", "children"),
        Input(f"{prefix}-msg", "data"),
        Input("lang", "value"),
    )
    def show_message(msgs, lang):
        return message(msgs, lang)


def _read_result(job: Any, info: dict) -> tuple[Any, list[dict[str, Any]]]:
    if job.state != "done":
        return no_update, _msg("err_read", error=job.error or job.state)
    c: Contents = job.result
    s, bad = c.summary, c.summary.bad_rows
    if s.rows == 0 and bad.count:
        line = bad.examples[0].line
        reasons = dict(bad.by_reason.most_common())
        return no_update, _msg(
            "err_nothing_usable", rows=f"{bad.count:,}", reasons=reasons, line=line
        )
    if s.rows == 0:
        return no_update, _msg("err_no_rows")
    dataset = {**info, "rows": s.rows, "devices": c.devices}
    key, rows = "loaded_1" if len(s.devices) == 1 else "loaded", f"{s.rows:,}"
    msgs = _msg(key, "ok", name=info["name"], rows=rows, devices=len(s.devices))
    if bad.count:
        first = bad.examples[0]
        msgs += _msg("bad_rows", "warn", n=f"{bad.count:,}", line=first.line, reason=first.reason)
    return dataset, msgs


def _reading(app: Any, ws: Workspace) -> None:
    job_poller(app, ws, "data", "dataset", "reading", _read_result)

    @app.callback(
        Output("large-text", "children"),
        Input("pending", "data"),
        Input("lang", "value"),
    )
    def large_text(pending, lang):
        return t(lang, "large", rows=f"{pending['rows']:,}") if pending else ""

    @app.callback(
        Output("summary", "children"),
        Output("devices", "options"),
        Output("devices", "value"),
        Input("dataset", "data"),
        Input("lang", "value"),
        Input("unit", "value"),
        State("devices", "value"),
    )
    def summary(dataset, lang, unit, chosen):
        job = ws.jobs.get(dataset["job"]) if dataset else None
        if job is None or job.result is None:
            return [], [], []
        c: Contents = job.result
        devices = c.devices
        options = [{"label": d, "value": d} for d in devices]
        keep = [d for d in chosen or [] if d in devices] if ctx.triggered_id != "dataset" else []
        return _summary(c, lang, unit), options, keep or devices


def _start(ws: Workspace, path: Path, name: str, limit: int | None) -> dict[str, Any]:
    job = ws.summarize(path, limit)
    return {"id": job.id, "job": job.id, "path": str(path), "name": name, "limit": limit}


def _pct(value: float, lang: str, digits: int) -> str:
    """A share of readings, or "no sensor" for a device without that sensor (NaN)."""
    return t(lang, "no_sensor") if value != value else f"{value:.{digits}f} %"


def sensors_text(c: Contents, device: str, lang: str) -> str:
    """The sensors ``device`` sent, in words; one missing from some readings (a sensor that
    died, or was added) with the share of readings that carried it (a value dropped counts
    as carried: the sensor was there)."""
    inp = c.inputs[device]
    dropped: Counter[str] = Counter()
    for (sensor, _reason), n in inp.dropped.items():
        dropped[sensor] += n
    words = []
    for sensor, n in c.sensors(device).items():
        word = sensor_words(lang, sensor)
        carried = n + dropped[sensor]
        if carried >= inp.readings:
            words.append(word)
        else:  # floor: a sensor missing from one reading of 10,000 is not "100 %"
            pct = math.floor(100.0 * carried / inp.readings)
            words.append(t(lang, "share", sensor=word, pct=pct))
    return ", ".join(words)


def left_out(c: Contents, lang: str) -> list[html.Component]:
    """What reading the file left out, in sentences: the rows refused whole (by reason), then
    per device the values dropped (by sensor and reason) and the values set to a sensor's
    limit; or that nothing was."""
    bad = c.summary.bad_rows
    out: list[html.Component] = []
    if bad.count:
        line = bad.examples[0].line if bad.examples else "?"
        reasons = row_reasons(lang, dict(bad.by_reason))
        out.append(
            html.P(
                t(lang, "left_rows", n=f"{bad.count:,}", reasons=reasons, line=line), id="left-rows"
            )
        )
    items = []
    for device in c.devices:
        inp = c.inputs[device]
        parts = []
        if inp.dropped:
            by_sensor: dict[str, dict[str, int]] = {}
            for (sensor, reason), n in sorted(inp.dropped.items()):
                by_sensor.setdefault(sensor, {})[reason] = n
            what = []
            for sensor, reasons in sorted(by_sensor.items(), key=lambda kv: -sum(kv[1].values())):
                ranked = sorted(reasons.items(), key=lambda kv: -kv[1])
                why = ", ".join(  # the counts only when there are several reasons
                    f"{n:,} {value_reason_words(lang, r)}"
                    if len(ranked) > 1
                    else value_reason_words(lang, r)
                    for r, n in ranked
                )
                what.append(f"{values_words(lang, sum(reasons.values()), sensor)} ({why})")
            parts.append(t(lang, "left_dropped", what="; ".join(what)))
        if inp.clipped:
            what = [values_words(lang, n, sensor) for sensor, n in inp.clipped.most_common()]
            parts.append(t(lang, "left_clipped", what=", ".join(what)))
        if parts:
            items.append(html.Li([html.B(f"{device}:"), " " + "; ".join(parts) + "."]))
    if items:
        out.append(html.Ul(items, className="left-out"))
    if out:
        out.append(html.P(t(lang, "left_note"), className="muted"))
    else:
        out.append(html.P(t(lang, "left_nothing")))
    return [html.H3(t(lang, "left_out")), html.Div(out, id="left-out")]


def _summary(c: Contents, lang: str, unit: str) -> list:
    s = c.summary
    header = [
        t(lang, k)
        for k in ("col_device", "col_sensors", "col_rows", "col_span", "col_hours", "col_cadence")
    ]
    header += [
        t(lang, k)
        for k in ("col_gaps", "col_dups", "col_late", "col_glitches", "col_light", "col_motion")
    ]
    rows = [
        [
            d.device,
            sensors_text(c, d.device, lang),
            f"{d.rows:,}",
            f"{d.first:%Y-%m-%d %H:%M} – {d.last:%Y-%m-%d %H:%M}",
            f"{d.span_hours:.1f}",
            "–" if d.cadence_s != d.cadence_s else t(lang, "seconds", s=f"{d.cadence_s:.1f}"),
            f"{d.gaps:,}",
            f"{d.duplicates:,}",
            f"{d.late:,}",
            f"{d.glitches:,}",
            _pct(d.light_pct, lang, 1),
            _pct(d.motion_pct, lang, 2),
        ]
        for d in s.devices.itertuples()
    ]
    out: list = [
        html.H3(t(lang, "summary")),
        table(header, rows, id="summary-table", className="figures"),
    ]
    out.append(html.P(t(lang, "summary_note"), className="muted"))
    out += left_out(c, lang)
    for device in s.devices.device:
        out.append(html.H4(device))
        out.append(
            dcc.Graph(
                figure=sensor_figure(s, device, lang, unit),
                config={"displayModeBar": False},
                className="sensor-chart",
            )
        )
    return out

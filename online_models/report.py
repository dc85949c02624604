"""Write an evaluation's figures: ``report.md``, ``report.html``, ``metrics.csv`` and PNG plots.

:func:`write_report` renders an :class:`~online_models.evaluate.EvalResult`
into a directory. The report is built once as a list of blocks (headings,
paragraphs, tables, images) and rendered twice: Markdown (plots as files
beside it) and HTML (plots inline, base64 PNG). ``metrics.csv`` holds every
figure in long form: ``kind,device,model,horizon,scenario,metric,value``.

The best model per device and horizon is the lowest MAE among the models
scored on at least 90 % as many predictions as persistence (models that
only predict after a day of history are compared in the ``after_first_day``
scenario, where everything is scored on the same readings).

>>> from telemetry.generate import generate
>>> from online_models.catalog import load_catalog
>>> from online_models.config import TaskConfig
>>> from online_models.evaluate import prequential
>>> import tempfile, pathlib
>>> res = prequential(generate(days=0.02, seed=1), load_catalog(), TaskConfig(horizons=(0, 60)))
>>> out = pathlib.Path(tempfile.mkdtemp())
>>> paths = write_report(res, out, source="generated")
>>> sorted(p.name for p in paths)[:3]
['actual_vs_predicted.png', 'error_by_hour.png', 'metrics.csv']
>>> "## Accuracy per device, model and horizon" in (out / "report.md").read_text()
True
"""

from __future__ import annotations

import base64
import csv
import html
import math
from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from online_models.evaluate import HIST_BINS, HIST_HI, HIST_LO, EvalResult  # noqa: E402

__all__ = ["SECTIONS", "best_models", "write_metrics_csv", "write_report"]

BASELINES = ("persistence", "rolling_mean", "seasonal_naive", "batch_forest")
SCENARIO_FAMILIES = (
    ("Day vs night (06-18 h UTC)", ("day", "night")),
    ("Light on vs off", ("light_on", "light_off")),
    ("Motion (in the previous 10 min) vs none", ("motion", "no_motion")),
    ("First hour after a gap (> 5 min silence) vs all", ("after_gap", "all")),
    ("After the first day (where the frozen forest competes) vs all", ("after_first_day", "all")),
    ("First hour after a detected drift vs all", ("after_drift", "all")),
)
SECTIONS = (
    "Run",
    "Headline",
    "Accuracy per device, model and horizon",
    "By device profile",
    "By scenario",
    "After each detected drift",
    "Events",
    "Cost",
    "Plots",
)


def _f(v: float | int | None, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.{digits}f}"


def _h(h: int) -> str:
    return "nowcast" if h == 0 else f"{h} s"


def best_models(res: EvalResult) -> dict[tuple[str, int], str]:
    """(device, horizon) -> best model (see the module docstring)."""
    out = {}
    for device, dm in res.devices.items():
        for h, hz in dm.horizons.items():
            ref = hz.stats.get("persistence")
            floor = 0.9 * ref.n if ref is not None else 0
            candidates = [
                (hz.stats[m].mae, m) for m in hz.names if hz.stats[m].n and hz.stats[m].n >= floor
            ]
            if candidates:
                out[(device, h)] = min(candidates)[1]
    return out


def _best_other(res: EvalResult, device: str, h: int, best: str | None) -> str | None:
    """The best model, or the best other than persistence when persistence is the best."""
    if best != "persistence":
        return best
    hz = res.devices[device].horizons[h]
    floor = 0.9 * hz.stats["persistence"].n
    others = [
        (hz.stats[m].mae, m)
        for m in hz.names
        if m != "persistence" and hz.stats[m].n and hz.stats[m].n >= floor
    ]
    return min(others)[1] if others else None


def _best_after_first_day(res: EvalResult, device: str, h: int) -> str | None:
    candidates = []
    for m in res.devices[device].horizons[h].names:
        g = res.groups.get((device, m, h, "after_first_day"))
        if g is not None and g.n:
            candidates.append((g.mae, m))
    return min(candidates)[1] if candidates else None


# ------------------------------------------------------------------ metrics.csv
def _metric_rows(res: EvalResult, source: str) -> Iterable[tuple]:
    yield ("run", "", "", "", "", "source", source)
    yield ("run", "", "", "", "", "rows", res.rows)
    yield ("run", "", "", "", "", "wall_seconds", res.wall_s)
    yield ("run", "", "", "", "", "rows_per_second", res.rows_per_s)
    yield ("run", "", "", "", "", "cpu_seconds", res.cpu_s)
    yield ("run", "", "", "", "", "rows_per_cpu_second", res.rows_per_cpu_s)
    yield ("run", "", "", "", "", "target", res.task.target)
    for status, n in sorted(res.statuses.items()):
        yield ("run", "", "", "", "", f"status_{status}", n)
    for device in sorted(res.devices):
        yield ("device", device, "", "", "", "profile", res.profiles[device])
        for k, v in res.device_figures[device].items():
            yield ("device", device, "", "", "", k, v)
        yield ("device", device, "", "", "", "checkpoint_bytes", res.checkpoint_bytes[device])
    for device, model, h in res.pairs():
        for k, v in res.figure(device, model, h).items():
            yield ("error", device, model, h, "all", k, v)
    for (device, model, h, scenario), g in sorted(res.groups.items()):
        if scenario == "all":
            continue
        for k, v in g.as_dict().items():
            yield ("error", device, model, h, scenario, k, v)
    best = best_models(res)
    for (device, h), model in sorted(best.items()):
        yield ("best", device, model, h, "all", "best", 1)
    for model in res.models:
        yield ("cost", "", model, "", "", "us_per_reading", res.cost_us.get(model))
        yield ("cost", "", model, "", "", "pickled_bytes_per_device", res.size_bytes.get(model))
    for (device, kind, model, h), n in sorted(res.event_counts.items()):
        yield ("event", device, model, h, "", kind, n)


def write_metrics_csv(res: EvalResult, path: Path, source: str = "") -> None:
    """Every figure, one per row: ``kind,device,model,horizon,scenario,metric,value`` (floats as repr)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kind", "device", "model", "horizon", "scenario", "metric", "value"])
        for row in _metric_rows(res, source):
            value = row[-1]
            w.writerow(
                [
                    *row[:-1],
                    "" if value is None else repr(value) if isinstance(value, float) else value,
                ]
            )


# ------------------------------------------------------------------------ plots
def _plots(res: EvalResult, out: Path) -> list[tuple[str, str]]:
    """Write the PNGs; return (file name, caption) pairs."""
    best = best_models(res)
    devices = sorted(res.devices)
    horizons = list(res.task.horizons)
    made: list[tuple[str, str]] = []

    def grid(title: str):
        fig, axes = plt.subplots(
            len(devices) or 1,
            len(horizons),
            figsize=(4.2 * len(horizons), 2.6 * max(len(devices), 1)),
            squeeze=False,
        )
        fig.suptitle(title)
        return fig, axes

    fig, axes = grid(
        "Actual vs predicted: the best model (the best other one where persistence wins) and persistence"
    )
    for i, device in enumerate(devices):
        for j, h in enumerate(horizons):
            ax = axes[i][j]
            pts = res.series.get((device, h), [])
            if pts:
                t0 = pts[0][0]
                xs = [(p[0] - t0) / 3600 for p in pts]
                ax.plot(xs, [p[1] for p in pts], lw=0.8, color="black", label="actual")
                challenger = _best_other(res, device, h, best.get((device, h)))
                for model, color in (
                    (challenger, "tab:red"),
                    ("persistence", "tab:blue"),
                ):
                    if model is None:
                        continue
                    ys = [p[2].get(model, math.nan) for p in pts]
                    ax.plot(xs, ys, lw=0.6, color=color, alpha=0.8, label=model)
                ax.legend(fontsize=6)
            ax.set_title(f"{device} {_h(h)}", fontsize=8)
            ax.tick_params(labelsize=6)
            ax.set_xlabel("hours", fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "actual_vs_predicted.png", dpi=80)
    plt.close(fig)
    made.append(("actual_vs_predicted.png", "Actual vs predicted over time per device and horizon"))

    fig, axes = grid("Rolling MAE over time per model")
    for i, device in enumerate(devices):
        for j, h in enumerate(horizons):
            ax = axes[i][j]
            pts = res.rolling.get((device, h), [])
            if pts:
                t0 = pts[0][0]
                models = sorted({m for _, d in pts for m in d})
                for m in models:
                    ax.plot(
                        [(t - t0) / 3600 for t, _ in pts],
                        [d.get(m, math.nan) for _, d in pts],
                        lw=0.7,
                        label=m,
                    )
                ax.legend(fontsize=5)
            ax.set_title(f"{device} {_h(h)}", fontsize=8)
            ax.tick_params(labelsize=6)
    fig.tight_layout()
    fig.savefig(out / "rolling_mae.png", dpi=80)
    plt.close(fig)
    made.append(("rolling_mae.png", "Rolling MAE (last scored predictions) over time, per model"))

    fig, axes = plt.subplots(1, len(horizons), figsize=(4.2 * len(horizons), 3), squeeze=False)
    width = (HIST_HI - HIST_LO) / HIST_BINS
    centers = [HIST_LO + width * (k + 0.5) for k in range(HIST_BINS)]
    for j, h in enumerate(horizons):
        ax = axes[0][j]
        for (hh, model), counts in sorted(res.hist.items()):
            if hh != h:
                continue
            total = sum(counts) or 1
            ax.plot(centers, [c / total for c in counts[1:-1]], lw=0.8, label=model)
        ax.set_title(f"residuals (actual - predicted), {_h(h)}", fontsize=8)
        ax.set_yscale("log")
        ax.legend(fontsize=6)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    fig.savefig(out / "residuals.png", dpi=80)
    plt.close(fig)
    made.append(
        ("residuals.png", "Residual distributions per model (all devices; tails beyond ±3 clipped)")
    )

    fig, axes = plt.subplots(1, len(horizons), figsize=(4.2 * len(horizons), 3), squeeze=False)
    for j, h in enumerate(horizons):
        ax = axes[0][j]
        for model in res.models:
            ys = []
            for hour in range(24):
                n = s = 0.0
                for device in devices:
                    g = res.groups.get((device, model, h, f"hour_{hour:02d}"))
                    if g is not None:
                        n += g.n
                        s += g.sum_abs
                ys.append(s / n if n else math.nan)
            if any(not math.isnan(y) for y in ys):
                ax.plot(range(24), ys, marker=".", lw=0.8, label=model)
        ax.set_title(f"MAE by hour of day (UTC), {_h(h)}", fontsize=8)
        ax.legend(fontsize=6)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    fig.savefig(out / "error_by_hour.png", dpi=80)
    plt.close(fig)
    made.append(("error_by_hour.png", "MAE by hour of day, all devices"))
    return made


# ----------------------------------------------------------------------- blocks
def _blocks(res: EvalResult, source: str, plots: list[tuple[str, str]]) -> list[tuple]:
    best = best_models(res)
    task = res.task
    B: list[tuple] = [("h1", f"iotcast evaluation: {task.target}")]

    B.append(("h2", "Run"))
    B.append(
        (
            "table",
            ["item", "value"],
            [
                ["source", source],
                ["target", task.target],
                ["horizons", ", ".join(_h(h) for h in task.horizons)],
                ["models", ", ".join(res.models)],
                ["readings", _f(res.rows)],
                [
                    "learned / duplicate / late / glitch",
                    " / ".join(
                        _f(res.statuses.get(k, 0))
                        for k in ("learned", "duplicate", "late", "glitch")
                    ),
                ],
                ["devices", _f(len(res.devices))],
                ["wall time", f"{res.wall_s:.1f} s"],
                ["evaluation speed", f"{res.rows_per_s:,.0f} readings/s (wall)"],
                [
                    "CPU time",
                    f"{res.cpu_s:.1f} s ({res.rows_per_cpu_s:,.0f} readings per CPU second)",
                ],
            ],
        )
    )

    B.append(("h2", "Headline"))
    B.append(
        (
            "p",
            "Per device and horizon: the best model (lowest MAE over the whole run) against "
            "persistence, and, after the first day, the best model, persistence and the batch forest "
            "trained on the first day and frozen (all three scored on the same readings).",
        )
    )
    rows = []
    for device in sorted(res.devices):
        dm = res.devices[device]
        for h in dm.horizons:
            b = best.get((device, h))
            p = dm.horizons[h].stats.get("persistence")
            bd = _best_after_first_day(res, device, h)

            def day(m, device=device, h=h):
                g = res.groups.get((device, m, h, "after_first_day")) if m else None
                return g.mae if g is not None and g.n else None

            rows.append(
                [
                    device,
                    res.profiles[device],
                    _h(h),
                    b or "-",
                    _f(dm.horizons[h].stats[b].mae) if b else "-",
                    _f(p.mae) if p is not None else "-",
                    bd or "-",
                    _f(day(bd)),
                    _f(day("persistence")),
                    _f(day("batch_forest")),
                ]
            )
    B.append(
        (
            "table",
            [
                "device",
                "profile",
                "horizon",
                "best model",
                "best MAE",
                "persistence MAE",
                "best after day 1",
                "its MAE",
                "persistence after day 1",
                "batch forest after day 1",
            ],
            rows,
        )
    )

    B.append(("h2", "Accuracy per device, model and horizon"))
    B.append(
        (
            "p",
            "MAE, RMSE and R² of every scored prediction (prequential: predicted before learned). "
            "★ marks the best model per device and horizon; baselines are marked (baseline).",
        )
    )
    rows = []
    for device, model, h in res.pairs():
        f = res.figure(device, model, h)
        name = model + (" (baseline)" if model in BASELINES else "")
        if best.get((device, h)) == model:
            name = f"★ {name}"
        rows.append(
            [
                device,
                res.profiles[device],
                _h(h),
                name,
                _f(f["n"]),
                _f(f["mae"]),
                _f(f["rmse"]),
                _f(f["r2"], 3),
                _f(f["bias"]),
            ]
        )
    B.append(
        ("table", ["device", "profile", "horizon", "model", "n", "MAE", "RMSE", "R²", "bias"], rows)
    )

    B.append(("h2", "By device profile"))
    B.append(
        (
            "p",
            "Profile derived from each device's temperature statistics (variable: std > 1 °C; "
            "otherwise stable warm at a mean >= 21 °C, stable cool below).",
        )
    )
    rows = [
        [
            d,
            res.profiles[d],
            _f(res.device_figures[d]["temp_mean"], 2),
            _f(res.device_figures[d]["temp_std"], 2),
            _f(res.device_figures[d]["rows_learned"]),
        ]
        for d in sorted(res.devices)
    ]
    B.append(("table", ["device", "profile", "temp mean", "temp std", "readings learned"], rows))
    profiles = sorted(set(res.profiles.values()))
    rows = []
    for h in task.horizons:
        for model in res.models:
            cells = []
            for prof in profiles:
                n = s = 0.0
                for d, pr in res.profiles.items():
                    if (
                        pr == prof
                        and h in res.devices[d].horizons
                        and model in res.devices[d].horizons[h].stats
                    ):
                        st = res.devices[d].horizons[h].stats[model]
                        n += st.n
                        s += st.sum_abs
                cells.append(_f(s / n) if n else "-")
            if any(c != "-" for c in cells):
                rows.append([_h(h), model, *cells])
    B.append(("table", ["horizon", "model", *[f"MAE {p}" for p in profiles]], rows))

    B.append(("h2", "By scenario"))
    B.append(
        ("p", "Scenario = conditions at the reading the prediction was made at. Cells: MAE (n).")
    )
    for title, values in SCENARIO_FAMILIES:
        B.append(("h3", title))
        rows = []
        for device, model, h in res.pairs():
            cells = []
            for v in values:
                g = res.groups.get((device, model, h, v))
                cells.append(f"{_f(g.mae)} ({g.n:,})" if g is not None and g.n else "-")
            if any(c != "-" for c in cells[:1]):
                rows.append([device, _h(h), model, *cells])
        if rows:
            B.append(("table", ["device", "horizon", "model", *values], rows))
        else:
            B.append(("p", "No predictions in this scenario."))

    B.append(("h2", "After each detected drift"))
    if not res.drift_groups:
        B.append(("p", "No drift detected."))
    else:
        rows = []
        for name, device, ev in res.drift_groups:
            dm = res.devices[device]
            cells = []
            for model in dm.horizons[ev.horizon].names:
                g = res.groups.get((device, model, ev.horizon, name))
                if g is not None and g.n:
                    cells.append(f"{model} {_f(g.mae)}")
            rows.append(
                [
                    name,
                    device,
                    _h(ev.horizon),
                    ev.model,
                    _f(ev.ts - _first(res, device), 0),
                    "; ".join(cells),
                ]
            )
        B.append(
            (
                "p",
                "MAE of each model over the hour after the drift (time in seconds since the device's first reading).",
            )
        )
        B.append(
            (
                "table",
                ["drift", "device", "horizon", "champion", "t (s)", "MAE in the next hour"],
                rows,
            )
        )

    B.append(("h2", "Events"))
    rows = [[d, _h(h), kind, m, _f(n)] for (d, kind, m, h), n in sorted(res.event_counts.items())]
    B.append(
        ("table", ["device", "horizon", "event", "model", "count"], rows)
        if rows
        else ("p", "No events.")
    )
    if res.events:
        B.append(("p", "First events:"))
        B.append(
            (
                "table",
                ["device", "horizon", "event", "model", "reason"],
                [[d, _h(e.horizon), e.kind, e.model, e.reason] for d, e in res.events[:20]],
            )
        )
    champs = [
        [d, _h(h), res.devices[d].champion(h)]
        for d in sorted(res.devices)
        for h in res.devices[d].horizons
    ]
    B.append(("p", "Champions at the end of the run:"))
    B.append(("table", ["device", "horizon", "champion"], champs))

    B.append(("h2", "Cost"))
    B.append(
        (
            "p",
            "Time per reading per model (predict + learn, all horizons together, measured in the "
            "evaluation on a shared machine) and pickled size per device (all horizons); the device "
            "checkpoint holds all models plus pending forecasts.",
        )
    )
    rows = []
    for model in res.models:
        spec = next((s for dm in res.devices.values() for s in dm.catalog if s.name == model), None)
        rows.append(
            [
                model,
                "yes" if spec and spec.default else "no",
                _f(res.cost_us.get(model), 1),
                _f(res.size_bytes.get(model), 0),
                spec.description if spec else "",
            ]
        )
    B.append(
        ("table", ["model", "default", "µs per reading", "pickled bytes", "description"], rows)
    )
    B.append(
        (
            "table",
            ["device", "checkpoint bytes"],
            [[d, _f(n)] for d, n in sorted(res.checkpoint_bytes.items())],
        )
    )

    B.append(("h2", "Plots"))
    for name, caption in plots:
        B.append(("img", name, caption))
    return B


def _first(res: EvalResult, device: str) -> float:
    pts = res.rolling.get((device, res.task.horizons[0]))
    return pts[0][0] if pts else 0.0


def _markdown(blocks: list[tuple]) -> str:
    out = []
    for b in blocks:
        if b[0] in ("h1", "h2", "h3"):
            out.append("#" * int(b[0][1]) + " " + b[1] + "\n")
        elif b[0] == "p":
            out.append(b[1] + "\n")
        elif b[0] == "table":
            header, rows = b[1], b[2]
            out.append("| " + " | ".join(header) + " |")
            out.append("|" + "|".join("---" for _ in header) + "|")
            for r in rows:
                out.append("| " + " | ".join(str(c).replace("|", "/") for c in r) + " |")
            out.append("")
        elif b[0] == "img":
            out.append(f"![{b[2]}]({b[1]})\n")
    return "\n".join(out) + "\n"


def _html(blocks: list[tuple], out: Path) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>iotcast evaluation</title>",
        "<style>body{font-family:sans-serif;max-width:1400px;margin:auto}table{border-collapse:collapse;"
        "font-size:12px;margin:8px 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%}</style></head><body>",
    ]
    for b in blocks:
        if b[0] in ("h1", "h2", "h3"):
            parts.append(f"<{b[0]}>{html.escape(b[1])}</{b[0]}>")
        elif b[0] == "p":
            parts.append(f"<p>{html.escape(b[1])}</p>")
        elif b[0] == "table":
            parts.append(
                "<table><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in b[1]) + "</tr>"
            )
            for r in b[2]:
                parts.append(
                    "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                )
            parts.append("</table>")
        elif b[0] == "img":
            data = base64.b64encode((out / b[1]).read_bytes()).decode()
            parts.append(
                f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(b[2])}'>"
                f"<figcaption>{html.escape(b[2])}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(res: EvalResult, out: str | Path, source: str = "") -> list[Path]:
    """Write report.md, report.html, metrics.csv and the PNGs into ``out``; return the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(res, out)
    blocks = _blocks(res, source, plots)
    (out / "report.md").write_text(_markdown(blocks))
    (out / "report.html").write_text(_html(blocks, out))
    write_metrics_csv(res, out / "metrics.csv", source)
    return [
        out / "report.md",
        out / "report.html",
        out / "metrics.csv",
        *(out / name for name, _ in plots),
    ]

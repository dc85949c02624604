"""The report's sections by condition: device profile, scenario, hour of day, after each drift."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from online_models.evaluate import EvalResult
from online_models.records import SERVED
from online_models.report.base import Block, fmt, horizon_name, save_plot
from online_models.report.hours import hour_errors

__all__ = ["SCENARIO_FAMILIES", "drift_section", "profile_section", "scenario_section"]

SCENARIO_FAMILIES = (
    ("Day vs night (06-18 h UTC)", ("day", "night")),
    ("Light on vs off", ("light_on", "light_off")),
    ("Motion (in the previous 10 min) vs none", ("motion", "no_motion")),
    ("First hour after a gap (> 5 min silence) vs all", ("after_gap", "all")),
    ("After the first day (where the frozen forest competes) vs all", ("after_first_day", "all")),
    ("First hour after a detected drift vs all", ("after_drift", "all")),
)


def profile_section(res: EvalResult) -> list[Block]:
    devices = [
        [
            d,
            res.profiles[d],
            fmt(res.device_figures[d]["temp_mean"], 2),
            fmt(res.device_figures[d]["temp_std"], 2),
            fmt(res.device_figures[d]["rows_learned"]),
        ]
        for d in sorted(res.devices)
    ]
    profiles = sorted(set(res.profiles.values()))
    totals = _profile_totals(res)
    rows = []
    for h in res.task.horizons:
        for model in (*res.models, SERVED):
            cells = []
            for prof in profiles:
                n, s = totals.get((h, model, prof), (0, 0.0))
                cells.append(fmt(s / n) if n else "-")
            if any(c != "-" for c in cells):
                rows.append([horizon_name(h), model, *cells])
    return [
        ("h2", "By device profile"),
        (
            "p",
            "Profile derived from each device's temperature statistics (variable: std > 1 °C; "
            "otherwise stable warm at a mean >= 21 °C, stable cool below).",
        ),
        ("table", ["device", "profile", "temp mean", "temp std", "readings learned"], devices),
        ("table", ["horizon", "model", *[f"MAE {p}" for p in profiles]], rows),
    ]


def _profile_totals(res: EvalResult) -> dict[tuple[int, str, str], tuple[int, float]]:
    """(horizon, model, profile) -> scored predictions and their summed absolute error, over
    the devices of that profile (one row per device, model and horizon: bounded)."""
    rows = [
        (h, m, res.profiles[d], dm.stats(m, h).n, dm.stats(m, h).sum_abs)
        for d, dm in res.devices.items()
        for h, hz in dm.horizons.items()
        for m in (*hz.stats, SERVED)
    ]
    df = pd.DataFrame(rows, columns=["horizon", "model", "profile", "n", "sum_abs"])
    sums = df.groupby(["horizon", "model", "profile"])[["n", "sum_abs"]].sum()
    return {k: (int(n), float(s)) for k, n, s in zip(sums.index, sums.n, sums.sum_abs, strict=True)}


def scenario_section(res: EvalResult, out: Path) -> list[Block]:
    blocks: list[Block] = [
        ("h2", "By scenario"),
        ("p", "Scenario = conditions at the reading the prediction was made at. Cells: MAE (n)."),
    ]
    for title, values in SCENARIO_FAMILIES:
        blocks.append(("h3", title))
        rows = []
        for device, model, h in res.pairs():
            cells = []
            for v in values:
                g = res.groups.get((device, model, h, v))
                cells.append(f"{fmt(g.mae)} ({g.n:,})" if g is not None and g.n else "-")
            if cells[0] != "-":
                rows.append([device, horizon_name(h), model, *cells])
        if rows:
            blocks.append(("table", ["device", "horizon", "model", *values], rows))
        else:
            blocks.append(("p", "No predictions in this scenario."))
    blocks.append(("img", _hour_plot(res, out), "MAE by hour of day, all devices"))
    return blocks


def _hour_plot(res: EvalResult, out: Path) -> str:
    horizons = list(res.task.horizons)
    by_hour = hour_errors(res, pooled=True)
    fig, axes = plt.subplots(1, len(horizons), figsize=(4.2 * len(horizons), 3), squeeze=False)
    for j, h in enumerate(horizons):
        ax = axes[0][j]
        for model in (*res.models, SERVED):
            m = by_hour[(by_hour.horizon == h) & (by_hour.model == model)]
            ys = m.set_index("hour").mae.reindex(range(24))
            if ys.notna().any():
                ax.plot(range(24), ys.tolist(), marker=".", lw=0.8, label=model)
        ax.set_title(f"MAE by hour of day (UTC), {horizon_name(h)}", fontsize=8)
        ax.legend(fontsize=6)
        ax.tick_params(labelsize=6)
    return save_plot(fig, out, "error_by_hour.png")


def drift_section(res: EvalResult) -> list[Block]:
    blocks: list[Block] = [("h2", "After each detected drift")]
    if not res.drift_groups:
        return [*blocks, ("p", "No drift detected.")]
    rows = []
    for name, device, ev in res.drift_groups:
        dm = res.devices[device]
        cells = []
        for model in dm.horizons[ev.horizon].names:
            g = res.groups.get((device, model, ev.horizon, name))
            if g is not None and g.n:
                cells.append(f"{model} {fmt(g.mae)}")
        first = res.first_ts.get(device, 0.0)
        rows.append(
            [
                name,
                device,
                horizon_name(ev.horizon),
                ev.model,
                fmt(ev.ts - first, 0),
                "; ".join(cells),
            ]
        )
    return [
        *blocks,
        (
            "p",
            "MAE of each model over the hour after the drift (time in seconds since the "
            "device's first reading).",
        ),
        (
            "table",
            ["drift", "device", "horizon", "champion", "t (s)", "MAE in the next hour"],
            rows,
        ),
    ]

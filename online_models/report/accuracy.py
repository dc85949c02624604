"""The report's accuracy section: every model at every horizon, how its error moved, its residuals."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from online_models.baselines import BASELINES
from online_models.evaluate import HIST_BINS, HIST_HI, HIST_LO, EvalResult
from online_models.records import SERVED
from online_models.report.base import (
    Block,
    best_models,
    fmt,
    horizon_label,
    horizon_name,
    panel_plot,
    save_plot,
)

__all__ = ["accuracy_section"]


def accuracy_section(res: EvalResult, out: Path) -> list[Block]:
    best = best_models(res)
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
                horizon_label(res, device, h),
                name,
                fmt(f["n"]),
                fmt(f["mae"]),
                fmt(f["rmse"]),
                fmt(f["r2"], 3),
                fmt(f["bias"]),
            ]
        )
    return [
        ("h2", "Accuracy per device, model and horizon"),
        (
            "p",
            "MAE, RMSE and R² of every scored prediction (prequential: predicted before learned). "
            "★ marks the best model in hindsight per device and horizon; baselines are marked "
            f"(baseline); '{SERVED}' is the forecast the processor published.",
        ),
        (
            "table",
            ["device", "profile", "horizon", "model", "n", "MAE", "RMSE", "R²", "bias"],
            rows,
        ),
        (
            "img",
            _rolling_plot(res, out),
            "Rolling MAE (last scored predictions) over time, per model",
        ),
        (
            "img",
            _residual_plot(res, out),
            "Residual distributions per model (all devices; tails beyond ±3 clipped)",
        ),
    ]


def _rolling_plot(res: EvalResult, out: Path) -> str:
    def draw(ax: Axes, pts: Sequence[tuple[float, dict[str, float]]]) -> None:
        t0 = pts[0][0]
        for m in sorted({m for _, d in pts for m in d}):
            ax.plot(
                [(t - t0) / 3600 for t, _ in pts],
                [d.get(m, math.nan) for _, d in pts],
                lw=1.2 if m == SERVED else 0.7,
                label=m,
            )
        ax.legend(fontsize=5)

    title = "Rolling MAE over time per model"
    return panel_plot(res, out, "rolling_mae.png", title, res.rolling, draw)


def _residual_plot(res: EvalResult, out: Path) -> str:
    horizons = list(res.task.horizons)
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
        ax.set_title(f"residuals (actual - predicted), {horizon_name(h)}", fontsize=8)
        ax.set_yscale("log")
        ax.legend(fontsize=6)
        ax.tick_params(labelsize=6)
    return save_plot(fig, out, "residuals.png")

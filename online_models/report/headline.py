"""The report's first sections: the run, and the headline: what a user gets against the baselines.

The figure that matters is the error of what the processor publishes: the
**served** forecast (the champion at the moment each forecast was made,
switching as selection decides). :func:`headline_rows` puts it, per device
and horizon, beside the champion at the end of the run and the baselines
(persistence, rolling mean, seasonal naive), with the improvement in
percent; once over the whole run and once after the first day, where every
model, the seasonal naive and the frozen batch forest included, is scored
on the same readings. The plot shows the served forecast against the
actual value and persistence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.axes import Axes

from online_models.baselines import ONLINE_BASELINES
from online_models.evaluate import EvalResult
from online_models.records import SERVED
from online_models.report.base import (
    Block,
    fmt,
    horizon_label,
    horizon_name,
    mae,
    panel_plot,
    pct,
)

__all__ = ["HEADLINE_BASELINES", "HeadlineRow", "headline_rows", "run_section", "headline_section"]

# The baselines the headline compares the served forecast with: the online ones, without the
# frozen batch forest (a reference trained offline on the first day, reported with the
# models, not a baseline a user gets)
HEADLINE_BASELINES = ONLINE_BASELINES


@dataclass(frozen=True)
class HeadlineRow:
    """The served forecast of one device and horizon against its champion and the baselines.

    >>> r = HeadlineRow("d", 900, "all", 0.75, "ridge", 0.74, {"persistence": 1.0})
    >>> r.improvement("persistence"), r.improvement("rolling_mean")
    (25.0, None)
    """

    device: str
    horizon: int
    scenario: str
    served: float | None
    champion: str
    champion_mae: float | None
    baselines: dict[str, float | None]

    def improvement(self, baseline: str) -> float | None:
        """How much lower the served MAE is than ``baseline``'s, in percent of it."""
        b = self.baselines.get(baseline)
        if b is None or self.served is None or b <= 0.0:
            return None
        return 100.0 * (b - self.served) / b


def headline_rows(res: EvalResult, scenario: str = "all") -> list[HeadlineRow]:
    """One :class:`HeadlineRow` per device and horizon (``scenario``: ``all`` or
    ``after_first_day``), devices sorted."""
    rows = []
    for device in sorted(res.devices):
        dm = res.devices[device]
        for h in dm.horizons:
            champion = dm.champion(h)
            rows.append(
                HeadlineRow(
                    device,
                    h,
                    scenario,
                    mae(res, device, SERVED, h, scenario),
                    champion,
                    mae(res, device, champion, h, scenario),
                    {b: mae(res, device, b, h, scenario) for b in HEADLINE_BASELINES},
                )
            )
    return rows


def run_section(res: EvalResult, source: str) -> list[Block]:
    task = res.task
    statuses = " / ".join(
        fmt(res.statuses.get(k, 0)) for k in ("learned", "duplicate", "late", "glitch")
    )
    rows = [
        ["source", source],
        ["target", task.target],
        ["horizons", ", ".join(horizon_name(h) for h in task.horizons)],
        ["models", ", ".join(res.models)],
        ["readings", fmt(res.rows)],
        ["learned / duplicate / late / glitch", statuses],
        ["devices", fmt(len(res.devices))],
        ["wall time", f"{res.wall_s:.1f} s"],
        ["evaluation speed", f"{res.rows_per_s:,.0f} readings/s (wall)"],
        ["CPU time", f"{res.cpu_s:.1f} s ({res.rows_per_cpu_s:,.0f} readings per CPU second)"],
    ]
    return [("h2", "Run"), ("table", ["item", "value"], rows)]


def _table(res: EvalResult, scenario: str) -> Block:
    rows = []
    for r in headline_rows(res, scenario):
        extra = []
        if scenario != "all":
            extra = [fmt(mae(res, r.device, "batch_forest", r.horizon, scenario))]
        rows.append(
            [
                r.device,
                res.profiles[r.device],
                horizon_label(res, r.device, r.horizon),
                fmt(r.served),
                r.champion,
                fmt(r.champion_mae),
                *(fmt(r.baselines[b]) for b in ("persistence", "rolling_mean", "seasonal_naive")),
                *extra,
                *(pct(r.improvement(b)) for b in ("persistence", "rolling_mean", "seasonal_naive")),
            ]
        )
    header = [
        "device",
        "profile",
        "horizon",
        "served MAE",
        "champion now",
        "its MAE",
        "persistence",
        "rolling mean",
        "seasonal naive",
        *(["batch forest"] if scenario != "all" else []),
        "vs persistence",
        "vs rolling mean",
        "vs seasonal naive",
    ]
    return ("table", header, rows)


def headline_section(res: EvalResult, out: Path) -> list[Block]:
    blocks: list[Block] = [("h2", "Headline")]
    blocks.append(
        (
            "p",
            "The served forecast is what the processor publishes: the champion at the moment "
            "each forecast was made (persistence where the champion had none). Its MAE is "
            "shown beside the champion at the end of the run and the baselines; 'vs' columns "
            "say how much lower the served MAE is, in percent of the baseline's (positive: "
            "better). Over the whole run the seasonal naive is scored only after its first day "
            "of history:",
        )
    )
    blocks.append(_table(res, "all"))
    if any(key[3] == "after_first_day" for key in res.groups):
        blocks.append(
            (
                "p",
                "After the first day, every model scored on the same readings, with the batch "
                "forest trained on the first day and frozen:",
            )
        )
        blocks.append(_table(res, "after_first_day"))
    name = _plot(res, out)
    blocks.append(("img", name, "Actual vs the served forecast and persistence, over time"))
    return blocks


def _plot(res: EvalResult, out: Path) -> str:
    def draw(ax: Axes, pts: Sequence[tuple[float, float, dict[str, float]]]) -> None:
        t0 = pts[0][0]
        xs = [(p[0] - t0) / 3600 for p in pts]
        ax.plot(xs, [p[1] for p in pts], lw=0.8, color="black", label="actual")
        for model, color in ((SERVED, "tab:red"), ("persistence", "tab:blue")):
            ys = [p[2].get(model, math.nan) for p in pts]
            ax.plot(xs, ys, lw=0.6, color=color, alpha=0.8, label=model)
        ax.legend(fontsize=6)

    title = "Actual vs the served forecast and persistence"
    return panel_plot(res, out, "actual_vs_predicted.png", title, res.series, draw)

"""What every report section shares: number formats, the best model, blocks and their rendering.

A report is a list of blocks, each a tuple: ``("h1"|"h2"|"h3", text)``,
``("p", text)``, ``("table", header, rows)`` or ``("img", file name, caption)``.
It is rendered twice: Markdown (plots as files beside it) and HTML (plots
inline, base64 PNG).

>>> fmt(0.123456), fmt(12345), fmt(None), horizon_name(0), horizon_name(900)
('0.1235', '12,345', '-', 'nowcast', '900 s')
>>> print(markdown([("h2", "T"), ("table", ["a", "b"], [[1, 2]])]).strip())
## T
<BLANKLINE>
| a | b |
|---|---|
| 1 | 2 |
"""

from __future__ import annotations

import base64
import html as _html
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal, TypeVar

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from online_models.evaluate import EvalResult  # noqa: E402
from online_models.records import SERVED  # noqa: E402

__all__ = [
    "Block",
    "best_models",
    "best_other",
    "fmt",
    "horizon_label",
    "horizon_name",
    "html",
    "markdown",
    "pct",
    "panel_plot",
    "save_plot",
    "scored_ahead",
]

# One block of a report (module docstring): a heading or paragraph, a table (header, rows)
# or a plot (file name, caption).
Block = (
    tuple[Literal["h1", "h2", "h3", "p"], str]
    | tuple[Literal["table"], Sequence[str], Sequence[Sequence[object]]]
    | tuple[Literal["img"], str, str]
)
_Point = TypeVar("_Point")
# a horizon's forecasts scored on average this many times further ahead than it are labelled so
LEAD_SHOWN = 1.5


def fmt(v: float | int | None, digits: int = 4) -> str:
    """A figure for a table: thousands for counts, ``digits`` decimals, ``-`` for nothing."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.{digits}f}"


def pct(v: float | None) -> str:
    """An improvement in percent, signed (``+12.3 %`` is better)."""
    return "-" if v is None else f"{v:+.1f} %"


def horizon_name(h: int) -> str:
    return "nowcast" if h == 0 else f"{h} s"


def horizon_label(res: EvalResult, device: str, h: int) -> str:
    """The horizon's name, and how far ahead its forecasts were really scored when that is
    much further (a horizon shorter than the device's interval between readings is scored
    at the next reading: 60 s on hourly data is a forecast an hour ahead).

    >>> from online_models.config import TaskConfig
    >>> res = EvalResult(task=TaskConfig(), models=(), devices={})
    >>> res.leads.update({("d", 60): (3600.0, 1), ("d", 3600): (3600.0, 1)})
    >>> horizon_label(res, "d", 60), horizon_label(res, "d", 3600), horizon_label(res, "d", 0)
    ('60 s (scored 3,600 s ahead)', '3600 s', 'nowcast')
    """
    lead = scored_ahead(res, device, h)
    return horizon_name(h) if lead is None else f"{horizon_name(h)} (scored {lead:,.0f} s ahead)"


def scored_ahead(res: EvalResult, device: str, h: int) -> float | None:
    """How far ahead ``device``'s forecasts at ``h`` were scored on average, when that is
    :data:`LEAD_SHOWN` times the horizon or more (worth saying); else None."""
    lead = res.lead(device, h) if h > 0 else None
    return lead if lead is not None and lead >= LEAD_SHOWN * h else None


def best_models(res: EvalResult) -> dict[tuple[str, int], str]:
    """(device, horizon) -> the model with the lowest MAE over the run, among those scored on
    at least 90 % as many predictions as persistence (a model that only predicts after a
    day of history is compared in the ``after_first_day`` scenario instead)."""
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


def best_other(res: EvalResult, device: str, h: int, best: str | None) -> str | None:
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


def mae(res: EvalResult, device: str, model: str, h: int, scenario: str = "all") -> float | None:
    """A model's (or the served forecast's) MAE over the run or in one scenario."""
    if scenario == "all":
        dm = res.devices[device]
        if model != SERVED and model not in dm.horizons[h].stats:
            return None
        return dm.stats(model, h).mae
    g = res.groups.get((device, model, h, scenario))
    return g.mae if g is not None and g.n else None


def panel_plot(
    res: EvalResult,
    out: Path,
    name: str,
    title: str,
    series: Mapping[tuple[str, int], Sequence[_Point]],
    draw: Callable[[Axes, Sequence[_Point]], object],
) -> str:
    """A figure with one panel per device (rows) and horizon (columns), saved as ``name``:
    ``draw(ax, points)`` for each device and horizon with points in ``series``."""
    devices = sorted(res.devices)
    horizons = list(res.task.horizons)
    fig, axes = plt.subplots(
        len(devices) or 1,
        len(horizons),
        figsize=(4.2 * len(horizons), 2.6 * max(len(devices), 1)),
        squeeze=False,
    )
    fig.suptitle(title)
    for i, device in enumerate(devices):
        for j, h in enumerate(horizons):
            ax = axes[i][j]
            pts = series.get((device, h), [])
            if pts:
                draw(ax, pts)
            ax.set_title(f"{device} {horizon_name(h)}", fontsize=8)
            ax.tick_params(labelsize=6)
            ax.set_xlabel("hours", fontsize=6)
    return save_plot(fig, out, name)


def save_plot(fig: Figure, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=80)
    plt.close(fig)
    return name


def markdown(blocks: Sequence[Block]) -> str:
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


def html(blocks: Sequence[Block], out: Path) -> str:
    esc = _html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>iotcast evaluation</title>",
        "<style>body{font-family:sans-serif;max-width:1400px;margin:auto}table{border-collapse:collapse;"
        "font-size:12px;margin:8px 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%}</style></head><body>",
    ]
    for b in blocks:
        if b[0] in ("h1", "h2", "h3"):
            parts.append(f"<{b[0]}>{esc(b[1])}</{b[0]}>")
        elif b[0] == "p":
            parts.append(f"<p>{esc(b[1])}</p>")
        elif b[0] == "table":
            parts.append("<table><tr>" + "".join(f"<th>{esc(str(h))}</th>" for h in b[1]) + "</tr>")
            for r in b[2]:
                parts.append("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in r) + "</tr>")
            parts.append("</table>")
        elif b[0] == "img":
            data = base64.b64encode((out / b[1]).read_bytes()).decode()
            parts.append(
                f"<figure><img src='data:image/png;base64,{data}' alt='{esc(b[2])}'>"
                f"<figcaption>{esc(b[2])}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts)

"""The report's events: promotions, drifts and model resets, and the champions at the end."""

from __future__ import annotations

from online_models.evaluate import EvalResult
from online_models.report.base import Block, fmt, horizon_name

__all__ = ["events_section", "resets_section"]


def events_section(res: EvalResult) -> list[Block]:
    blocks: list[Block] = [("h2", "Events")]
    rows = [
        [d, horizon_name(h), kind, m, fmt(n)]
        for (d, kind, m, h), n in sorted(res.event_counts.items())
    ]
    if rows:
        blocks.append(("table", ["device", "horizon", "event", "model", "count"], rows))
    else:
        blocks.append(("p", "No events."))
    if res.events:
        blocks.append(("p", "First events:"))
        first = [
            [d, horizon_name(e.horizon), e.kind, e.model, e.reason] for d, e in res.events[:20]
        ]
        blocks.append(("table", ["device", "horizon", "event", "model", "reason"], first))
    champs = [
        [d, horizon_name(h), res.devices[d].champion(h)]
        for d in sorted(res.devices)
        for h in res.devices[d].horizons
    ]
    blocks.append(("p", "Champions at the end of the run:"))
    blocks.append(("table", ["device", "horizon", "champion"], champs))
    return blocks


def resets_section(res: EvalResult) -> list[Block]:
    """Models the guard reset: how often, why, and the first reason given."""
    blocks: list[Block] = [
        ("h2", "Model resets"),
        (
            "p",
            "A model that raised, or forecast a non-finite value or one outside the plausible "
            "range, was reset to a fresh one; persistence's forecast stood in for the refused "
            "one and was scored in its place.",
        ),
    ]
    rows = []
    for device in sorted(res.devices):
        for (h, name), n in sorted(res.devices[device].resets().items()):
            reason = next(
                (
                    e.reason
                    for d, e in res.events
                    if d == device and e.kind == "model_reset" and (e.horizon, e.model) == (h, name)
                ),
                "",
            )
            rows.append([device, horizon_name(h), name, fmt(n), reason])
    if not rows:
        return [*blocks, ("p", "No model was reset.")]
    return [*blocks, ("table", ["device", "horizon", "model", "resets", "first reason"], rows)]

"""The report's cost section: CPU per reading and memory per device of each model."""

from __future__ import annotations

from online_models.evaluate import EvalResult
from online_models.report.base import Block, fmt

__all__ = ["cost_section"]


def cost_section(res: EvalResult) -> list[Block]:
    rows = []
    for model in res.models:
        spec = next((s for dm in res.devices.values() for s in dm.catalog if s.name == model), None)
        rows.append(
            [
                model,
                "yes" if spec and spec.default else "no",
                fmt(res.cost_us.get(model), 1),
                fmt(res.size_bytes.get(model), 0),
                spec.description if spec else "",
            ]
        )
    return [
        ("h2", "Cost"),
        (
            "p",
            "CPU time per reading per model (predict + learn, all horizons together, measured "
            "in the evaluation) and pickled size per device (all horizons); the device "
            "checkpoint holds all models plus pending forecasts.",
        ),
        ("table", ["model", "default", "µs per reading", "pickled bytes", "description"], rows),
        (
            "table",
            ["device", "checkpoint bytes"],
            [[d, fmt(n)] for d, n in sorted(res.checkpoint_bytes.items())],
        ),
    ]

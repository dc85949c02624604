"""The report's "Sensors per device": what each device sent, and what validation did to it.

One small table, one row per device (the first :data:`MAX_ROWS`; ``metrics.csv``
holds every device): the readings, the sensors and extra fields they carried
(with the share of readings that carried each, when not all did), and the values
validation dropped (by field and reason) or clipped to a sensor's limit
(``Reading.notes``). Devices that never reported the target are named: they get
no model set and no figures.

>>> from online_models.catalog import load_catalog
>>> from online_models.config import TaskConfig
>>> from online_models.evaluate import prequential
>>> from telemetry.reading import Reading
>>> rs = [Reading(1.6e9 + 60 * i, "a1", temp=21.0, humidity=100.0 if i % 2 else None,
...               notes=(("humidity", "clipped"),) if i % 2 else ()) for i in range(4)]
>>> res = prequential(rs + [Reading(1.6e9, "b2", humidity=40.0)], load_catalog(),
...                   TaskConfig(horizons=(60,)))
>>> blocks = sensors_section(res)
>>> blocks[1][2][0]
['a1', '4', 'humidity (50 %), temp', '-', 'humidity 2']
>>> blocks[2][1]
'No model set for 1 device that never reported the target temp: b2.'
"""

from __future__ import annotations

from online_models.evaluate import DeviceInput, EvalResult
from online_models.report.base import Block, fmt

__all__ = ["MAX_ROWS", "sensors_section"]

MAX_ROWS = 50


def _sensors(inp: DeviceInput) -> str:
    parts = []
    for name in inp.seen():
        n = inp.sensors[name]
        parts.append(name if n == inp.readings else f"{name} ({100.0 * n / inp.readings:.0f} %)")
    return ", ".join(parts) or "-"


def _dropped(inp: DeviceInput) -> str:
    items = sorted(inp.dropped.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{name} {why} {n:,}" for (name, why), n in items) or "-"


def _clipped(inp: DeviceInput) -> str:
    return ", ".join(f"{name} {n:,}" for name, n in sorted(inp.clipped.items())) or "-"


def sensors_section(res: EvalResult) -> list[Block]:
    devices = sorted(res.inputs)
    rows = [
        [d, fmt(res.inputs[d].readings), _sensors(res.inputs[d]), _dropped(res.inputs[d]),
         _clipped(res.inputs[d])]
        for d in devices[:MAX_ROWS]
    ]  # fmt: skip
    blocks: list[Block] = [
        ("h2", "Sensors per device"),
        (
            "table",
            ["device", "readings", "sensors (share of readings)", "dropped", "clipped"],
            rows,
        ),
    ]
    if len(devices) > MAX_ROWS:
        blocks.append(
            ("p", f"... and {len(devices) - MAX_ROWS:,} more devices: metrics.csv has every one.")
        )
    silent = [d for d in devices if d not in res.devices]
    if silent:
        names = ", ".join(silent[:10]) + (", ..." if len(silent) > 10 else "")
        noun = "device" if len(silent) == 1 else "devices"
        blocks.append(
            (
                "p",
                f"No model set for {len(silent):,} {noun} that never reported the target "
                f"{res.task.target}: {names}.",
            )
        )
    return blocks

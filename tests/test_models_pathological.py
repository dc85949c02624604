"""Every catalog model at every horizon survives pathological series: nothing escapes the guard,
every scored forecast is finite and plausible, and each reset is counted.

The series: hourly and 1-second cadence, day-long silences, a constant value, a 30 °C step,
values at the data contract's bounds.
"""

from __future__ import annotations

import logging
import math

import pytest

from online_models.catalog import load_catalog
from online_models.config import TaskConfig
from online_models.device import DeviceModels
from telemetry.reading import RANGES, Reading

DEVICE = "aa:bb:cc:00:00:01"
T0 = 1_600_000_000.0
LO, HI = RANGES["temp"]
SLACK = 0.05 * (HI - LO)  # the guard's tolerance beyond the data contract's bounds


def _r(ts: float, temp: float, humidity: float = 50.0) -> Reading:
    light = 6 <= (ts % 86_400) / 3600 < 19
    return Reading(ts, DEVICE, 0.005, humidity, light, 0.0076, False, 0.0204, temp)


def hourly(n: int = 24 * 12) -> list[Reading]:
    return [_r(T0 + 3600 * i, 10 + 8 * math.sin(2 * math.pi * i / 24)) for i in range(n)]


def one_second(n: int = 1500) -> list[Reading]:
    return [_r(T0 + i, 22 + 0.1 * ((i // 17) % 5)) for i in range(n)]


def day_long_gaps() -> list[Reading]:
    out = []
    for day in range(4):
        start = T0 + day * 2 * 86_400  # a day of readings every 5 min, then a day of silence
        out += [_r(start + 300 * i, 18 + 3 * math.sin(i / 40)) for i in range(288)]
    return out


def constant(n: int = 1500) -> list[Reading]:
    return [_r(T0 + 5 * i, 21.0, 40.0) for i in range(n)]


def step_30(n: int = 1500) -> list[Reading]:
    return [_r(T0 + 10 * i, 15.0 if i < n // 2 else 45.0) for i in range(n)]


def at_the_bounds(n: int = 800) -> list[Reading]:
    return [_r(T0 + 60 * i, (LO, HI)[(i // 50) % 2], (0.0, 100.0)[(i // 70) % 2]) for i in range(n)]


SERIES = {
    "hourly": hourly,
    "one_second": one_second,
    "day_long_gaps": day_long_gaps,
    "constant": constant,
    "step_30": step_30,
    "at_the_bounds": at_the_bounds,
}


@pytest.mark.parametrize("series", sorted(SERIES))
def test_every_catalog_model_survives(series: str) -> None:
    catalog = load_catalog()
    task = TaskConfig(horizons=(0, 60, 900, 3600, 21600))
    # the forest of adaptive trees costs ms a reading: one series (the shortest) is enough
    names = [n for n in catalog.names if n != "arf" or series == "hourly"]
    dm = DeviceModels(DEVICE, catalog, task, models=names)
    resets = 0
    logging.disable(logging.WARNING)
    try:
        for r in SERIES[series]():
            result = dm.step(r)  # nothing a model does may escape
            resets += sum(e.kind == "model_reset" for e in result.events)
            for p in result.predictions:
                assert math.isfinite(p.value) and LO - SLACK <= p.value <= HI + SLACK, p
            for s in result.scores:
                assert math.isfinite(s.predicted) and LO - SLACK <= s.predicted <= HI + SLACK, s
    finally:
        logging.disable(logging.NOTSET)
    assert resets == dm.n_resets == sum(dm.resets().values())
    assert dm.n_learned == len(SERIES[series]())
    for h, hz in dm.horizons.items():
        for name in (*hz.names, "served"):
            figures = dm.stats(name, h).as_dict()
            assert all(math.isfinite(v) for v in figures.values() if v is not None), (h, name)

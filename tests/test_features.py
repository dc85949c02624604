"""Features use only the past and present; the nowcast never sees its target."""

from __future__ import annotations

import dataclasses
import pickle
import random

from online_models.catalog import load_catalog
from online_models.config import TaskConfig
from online_models.device import DeviceModels
from online_models.features import FeatureState, nowcast_view, target_keys
from telemetry.reading import Reading

DEVICE = "1c:bf:ce:15:ec:4d"


def _stream(n: int, seed: int = 3) -> list[Reading]:
    rng = random.Random(seed)
    ts, temp, hum = 1_594_512_000.0, 26.0, 62.0
    out = []
    for _ in range(n):
        ts += rng.uniform(2.0, 10.0)
        temp = round(temp + rng.gauss(0, 0.05), 1)
        hum = round(hum + rng.gauss(0, 0.1), 1)
        out.append(
            Reading(
                ts,
                DEVICE,
                0.005 + rng.random() * 1e-3,
                hum,
                rng.random() < 0.5,
                0.007,
                rng.random() < 0.01,
                0.02,
                temp,
            )
        )
    return out


def _altered_future(readings: list[Reading], cut: int, seed: int = 9) -> list[Reading]:
    """Readings after ``cut`` shuffled in value and shifted: same times, a different future."""
    rng = random.Random(seed)
    future = readings[cut:]
    values = [(r.temp + 5.0, r.humidity - 10.0, not r.light) for r in future]
    rng.shuffle(values)
    changed = [
        dataclasses.replace(r, temp=round(t, 1), humidity=round(h, 1), light=li)
        for r, (t, h, li) in zip(future, values, strict=True)
    ]
    return readings[:cut] + changed


def test_features_at_t_ignore_the_future() -> None:
    readings = _stream(400)
    altered = _altered_future(readings, 250)
    a, b = FeatureState("temp"), FeatureState("temp")
    xa = [a.update(r) for r in readings]
    xb = [b.update(r) for r in altered]
    assert xa[:250] == xb[:250]
    assert xa[250] != xb[250]  # the alteration is real


def test_predictions_at_t_ignore_the_future() -> None:
    readings = _stream(500)
    cut = 300
    altered = _altered_future(readings, cut)
    task = TaskConfig(horizons=(0, 60, 900))
    cat = load_catalog()
    a = DeviceModels(DEVICE, cat, task)
    b = DeviceModels(DEVICE, cat, task)
    pa = [a.step(r).predictions for r in readings]
    pb = [b.step(r).predictions for r in altered]
    assert pa[:cut] == pb[:cut]
    assert pa[cut] != pb[cut]
    assert sum(len(p) for p in pa[:cut]) > cut * 5  # the models did predict


def test_nowcast_does_not_see_the_current_target() -> None:
    readings = _stream(300)
    t = 200
    other = list(readings)
    other[t] = dataclasses.replace(readings[t], temp=readings[t].temp + 7.0)
    task = TaskConfig(horizons=(0,))
    cat = load_catalog()
    a = DeviceModels(DEVICE, cat, task)
    b = DeviceModels(DEVICE, cat, task)
    ra = [a.step(r) for r in readings[: t + 1]]
    rb = [b.step(r) for r in other[: t + 1]]
    assert ra[t].predictions == rb[t].predictions
    assert [s.actual for s in ra[t].scores] != [s.actual for s in rb[t].scores]
    x = FeatureState("humidity").update(readings[0])
    assert not target_keys("humidity") & set(nowcast_view(x, "humidity"))
    assert "temp" in nowcast_view(x, "humidity")  # another target keeps temperature as a co-sensor


def test_feature_state_is_bounded() -> None:
    readings = _stream(3000)
    fs = FeatureState("co")
    sizes = []
    for i, r in enumerate(readings):
        fs.update(r)
        if i in (100, 2999):
            sizes.append(len(pickle.dumps(fs)))
    assert sizes[0] == sizes[1]

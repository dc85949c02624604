"""Champion selection and drift detection on streams with and without a planted regime change."""

from __future__ import annotations

import random

import pytest

from online_models.catalog import load_catalog
from online_models.config import TaskConfig
from online_models.device import DeviceModels
from telemetry.reading import Reading

DEVICE = "dev-1"
T0 = 1_594_512_000.0
TASK = TaskConfig(
    horizons=(60,),
    window=200,
    promote_min_samples=200,
    promote_cooldown=300,
    drift_grace=100,
    drift_block=10,
)


def _regimes(n_walk: int, n_noise: int, seed: int = 4) -> list[Reading]:
    """A slow random walk (persistence is best), then white noise around 22 °C (a mean is best)."""
    rng = random.Random(seed)
    ts, temp, out = T0, 22.0, []
    for i in range(n_walk + n_noise):
        ts += 5.0
        if i < n_walk:
            temp += rng.gauss(0, 0.02)
            value = temp
        else:
            value = 22.0 + rng.gauss(0, 0.5)
        out.append(Reading(ts, DEVICE, 0.005, 50.0, False, 0.007, False, 0.02, value))
    return out


def _events(dm: DeviceModels, readings: list[Reading]):
    return [e for r in readings for e in dm.step(r).events]


def test_regime_change_is_detected_and_a_better_challenger_promoted() -> None:
    readings = _regimes(1500, 1500)
    change = readings[1500].ts
    dm = DeviceModels(DEVICE, load_catalog(), TASK, models="persistence,rolling_mean,linear")
    events = _events(dm, readings)
    drifts = [e for e in events if e.kind == "drift"]
    promotions = [e for e in events if e.kind == "promotion"]
    assert drifts and all(e.ts >= change for e in drifts), [
        (e.ts - change, e.reason) for e in drifts
    ]
    first = drifts[0]
    assert first.model == "persistence" and first.ts - change < 1800
    assert first.figures["mean_abs_residual_after"] > first.figures["mean_abs_residual_before"]
    assert promotions and all(e.ts >= change for e in promotions)
    p = promotions[0]
    assert p.figures["old"] == "persistence" and p.model in ("rolling_mean", "linear")
    assert p.figures["new_rolling_mae"] < 0.95 * p.figures["old_rolling_mae"]
    assert "beats champion persistence" in p.reason
    assert dm.champion(60) == promotions[-1].model
    assert dm.summary()["n_promotions"] == len(promotions)
    assert dm.summary()["n_drifts"] == len(drifts)


def test_no_flapping_on_a_stationary_stream() -> None:
    readings = _regimes(0, 6000, seed=7)
    dm = DeviceModels(DEVICE, load_catalog(), TASK, models="persistence,rolling_mean,linear")
    promotions = [e for e in _events(dm, readings) if e.kind == "promotion"]
    # persistence loses to the means once; the two means are alike and must not swap back and forth
    assert 1 <= len(promotions) <= 2, [(e.model, e.ts - T0) for e in promotions]
    champions = ["persistence"] + [e.model for e in promotions]
    assert len(set(champions)) == len(champions), champions  # nobody comes back


def test_drift_can_reset_the_champion_model() -> None:
    readings = _regimes(1500, 400)
    task = TASK.replace(drift_reset=True)
    dm = DeviceModels(DEVICE, load_catalog(), task, models="persistence,linear")
    models_before = dict(dm.horizons[60].models)
    drifts = []
    for r in readings:
        drifts += [e for e in dm.step(r).events if e.kind == "drift"]
    assert drifts and drifts[0].figures.get("reset") is True
    reset = drifts[0].model
    assert dm.horizons[60].models[reset] is not models_before[reset]


def test_operator_sets_the_champion() -> None:
    dm = DeviceModels(DEVICE, load_catalog(), TaskConfig(horizons=(0, 60)))
    events = dm.set_champion("linear", "trying it")
    assert [(e.horizon, e.figures["old"]) for e in events] == [
        (0, "persistence"),
        (60, "ensemble"),
    ]
    assert dm.champion(0) == dm.champion(60) == "linear"
    with pytest.raises(KeyError, match="snarimax"):
        dm.set_champion("snarimax", "x", horizon=0)  # a series model does not nowcast

"""Guarded models: a model that raises or forecasts nonsense is reset alone, persistence stands
in for it, and every figure stays finite; the served forecast is the champion's."""

from __future__ import annotations

import math

import pytest

from online_models.catalog import load_catalog
from online_models.config import TaskConfig
from online_models.device import DeviceModels
from telemetry.reading import Reading

DEVICE = "d1"


def reading(i: int, temp: float = 21.0, dt: float = 60.0) -> Reading:
    return Reading(1_600_000_000.0 + dt * i, DEVICE, 0.005, 50.0, False, 0.007, False, 0.02, temp)


class Broken:
    """A guest model that misbehaves the way it is told to, from its ``after``-th call on."""

    def __init__(self, how: str, after: int = 0) -> None:
        self.how = how
        self.after = after
        self.calls = 0

    def predict_one(self, x):
        self.calls += 1
        if self.calls <= self.after:
            return 21.0
        if self.how == "raise":
            raise ZeroDivisionError("guest code divided by zero")
        return {"nan": math.nan, "inf": math.inf, "huge": 1e300, "far": 500.0}.get(self.how, 21.0)

    def learn_one(self, x, y, w=1.0):
        if self.how == "raise_learning":
            raise RuntimeError("cannot learn")


def _models(horizons=(0, 60)) -> DeviceModels:
    return DeviceModels(DEVICE, load_catalog(), TaskConfig(horizons=horizons), models="default")


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("raise", "exception"),
        ("nan", "non_finite"),
        ("inf", "non_finite"),
        ("huge", "out_of_range"),
    ],
)
def test_a_failing_forecast_resets_that_model_alone_and_persistence_stands_in(how, reason) -> None:
    dm = _models()
    for i in range(5):
        dm.step(reading(i, 21.0 + 0.1 * i))
    hz = dm.horizons[60]
    others = {n: m for n, m in hz.models.items() if n != "linear"}
    hz.models["linear"] = Broken(how)
    made = dm.step(reading(5, 21.5))
    (event,) = [e for e in made.events if e.kind == "model_reset"]
    assert (event.model, event.horizon, event.figures["reason"]) == ("linear", 60, reason)
    assert not isinstance(hz.models["linear"], Broken)  # a fresh one from the catalog
    assert all(hz.models[n] is m for n, m in others.items())  # the others untouched
    assert dm.n_resets == 1 and dm.resets() == {(60, "linear"): 1}
    (forecast,) = [p for p in made.predictions if p.model == "linear" and p.horizon == 60]
    assert forecast.value == 21.5  # persistence's forecast stood in
    scored = dm.step(reading(6, 21.7))  # a minute later: the forecast is scored
    (score,) = [s for s in scored.scores if s.model == "linear" and s.horizon == 60]
    assert (score.predicted, score.actual) == (21.5, 21.7)
    assert all(math.isfinite(v) for v in dm.stats("linear", 60).as_dict().values() if v is not None)


def test_a_model_that_raises_while_learning_is_reset() -> None:
    dm = _models(horizons=(0,))
    dm.step(reading(0))
    dm.horizons[0].models["linear"] = Broken("raise_learning")
    result = dm.step(reading(1))
    assert [(e.kind, e.model, e.figures["reason"]) for e in result.events] == [
        ("model_reset", "linear", "exception")
    ]
    assert result.status == "learned" and dm.n_learned == 2


def test_the_plausible_range_follows_the_observed_one_within_the_contract() -> None:
    dm = _models(horizons=(0,))
    assert dm.bounds() == (-64.0, 134.0)  # nothing seen: the contract's -55..125, widened by 5 %
    dm.step(reading(0, 20.0))
    assert dm.bounds() == (11.0, 29.0)  # at least 5 % of the contract's 180 °C on each side
    dm.step(reading(1, 30.0))
    assert dm.bounds() == (10.0, 40.0)  # the observed span on each side
    dm.step(reading(2, 120.0))
    assert dm.bounds() == (-64.0, 134.0)  # the span, 100, each side: never 5 % beyond the contract


class NeedsHumidity:
    """A guest model written for seven-sensor readings: it indexes ``x["humidity"]``."""

    def predict_one(self, x):
        return x["temp"] + 0.0 * x["humidity"]

    def learn_one(self, x, y, w=1.0):
        x["humidity"]


def test_a_model_that_needs_an_absent_sensor_is_reset_alone_and_the_device_goes_on() -> None:
    dm = _models()
    for i in range(5):
        dm.step(reading(i, 21.0 + 0.1 * i))
    dm.horizons[60].models["linear"] = NeedsHumidity()
    temp_only = Reading(1_600_000_000.0 + 60 * 5, DEVICE, temp=21.6)
    result = dm.step(temp_only)
    assert result.status == "learned"
    resets = [e for e in result.events if e.kind == "model_reset"]
    assert [(e.model, e.horizon, e.figures["reason"]) for e in resets] == [
        ("linear", 60, "exception")
    ]
    assert "KeyError" in resets[0].reason
    served = [p for p in result.predictions if p.model == "served"]
    assert served and all(math.isfinite(p.value) for p in result.predictions)
    # the humidity sensor is gone for good: the fresh model copes, nothing more is reset
    for i in range(6, 40):
        r = dm.step(Reading(1_600_000_000.0 + 60 * i, DEVICE, temp=21.0 + 0.01 * i))
        assert r.status == "learned" and not [e for e in r.events if e.kind == "model_reset"]
    assert dm.n_resets == 1


def test_the_served_forecast_is_the_champions_or_persistence() -> None:
    dm = _models()
    first = dm.step(reading(0, 21.0))
    served = {p.horizon: p for p in first.predictions if p.model == "served"}
    ensemble = [p for p in first.predictions if p.model == "ensemble"]
    assert served[60].source == "ensemble" and served[60].value == ensemble[0].value
    assert 0 not in served  # the nowcast's champion (persistence) has nothing yet
    second = dm.step(reading(1, 21.2))
    now = {p.horizon: p for p in second.predictions if p.model == "served"}
    assert now[0].source == "persistence" and now[0].value == 21.0
    dm.horizons[60].models["ensemble"] = Broken("nan")
    third = dm.step(reading(2, 21.3))
    now = {p.horizon: p for p in third.predictions if p.model == "served"}
    assert (now[60].source, now[60].value) == ("persistence", 21.3)  # the champion was refused
    dm.step(reading(3, 21.4))
    assert dm.stats("served", 60).n == 3


def test_every_running_sum_stays_finite_whatever_a_model_says() -> None:
    """What crashed the processor before the guard: sums of diverging forecasts overflowed."""
    dm = _models()
    for i in range(300):
        for hz in dm.horizons.values():
            hz.models["linear"] = Broken("huge" if i % 2 else "inf")
        dm.step(reading(i, 20.0 + (i % 7) * 0.3))
    assert dm.n_resets >= 2 * 299
    for h, hz in dm.horizons.items():
        for name in (*hz.names, "served"):
            figures = dm.stats(name, h).as_dict()
            assert all(math.isfinite(v) for v in figures.values() if v is not None), (h, name)
    assert dm.stats("linear", 60).mae < 5.0  # persistence's stand-ins, not 1e300

"""The served forecast's intervals: coverage holds where the series changes its scale."""

from __future__ import annotations

import math
import pickle
import random

import pytest

from online_models.intervals import Band


def _published_coverage(residuals, band: Band, delay: int = 0) -> dict[float, float]:
    """Feed residuals (forecast 0, actual r) whose targets arrive ``delay`` scores later,
    judging each on the bounds published when it was made."""
    pending: list[tuple[float, tuple[float, ...]]] = []
    for r in residuals:
        pending.append((r, band.offsets()))
        if len(pending) > delay:
            y, published = pending.pop(0)
            band.update(y, 0.0, published)
    return {level: band.coverage(level) for level in band.levels}


@pytest.mark.parametrize("delay", [0, 12])
def test_coverage_holds_through_regime_changes_in_scale_and_bias(delay):
    rng = random.Random(1)
    residuals = []
    for day in range(60):
        for step in range(288):  # 5-minute steps; a calm night, a gusty afternoon
            scale = 0.1 + 1.5 * max(0.0, math.sin(math.pi * (step - 72) / 144))
            bias = 0.5 if 20 <= day < 30 else 0.0  # a sensor offset for ten days
            residuals.append(bias + rng.gauss(0.0, scale) * (3.0 if rng.random() < 0.02 else 1.0))
    coverage = _published_coverage(residuals, Band(), delay)
    assert coverage[0.8] == pytest.approx(0.8, abs=0.01)
    assert coverage[0.95] == pytest.approx(0.95, abs=0.01)


def test_the_band_is_narrower_than_a_fixed_band_of_the_same_coverage_when_scale_changes():
    rng = random.Random(2)
    residuals = [rng.gauss(0.0, 0.2 if (i // 500) % 2 else 2.0) for i in range(20_000)]
    band = Band(levels=(0.8,))
    _published_coverage(residuals, band)
    ordered = sorted(residuals)
    fixed = ordered[int(0.9 * len(ordered))] - ordered[int(0.1 * len(ordered))]
    assert band.coverage(0.8) == pytest.approx(0.8, abs=0.01)
    assert band.width(0.8) < 0.97 * fixed


def test_non_finite_values_move_nothing():
    band = Band()
    for r in (0.1, -0.2, 0.3) * 10:
        band.update(r, 0.0)
    before = band.offsets()
    band.update(float("nan"), 0.0)
    band.update(1.0, float("inf"))
    assert band.offsets() == before and band.n == 30


@pytest.mark.parametrize("delay", [0, 12])
def test_intervals_snap_to_the_readings_lattice_holding_the_same_readings(delay):
    # a DHT22-like series: readings in steps of 0.1, forecast by the last value, scored `delay`
    # readings later through publish/settle (the processor's path)
    rng = random.Random(3)
    band, y, queue = Band(), 21.0, []
    raw_width = published_width = 0.0
    for _ in range(20_000):
        y = round(y + rng.choice((-0.1, 0.0, 0.0, 0.0, 0.1)) * (1 + (rng.random() < 0.05)), 1)
        while len(queue) > delay:
            band.settle(y, queue.pop(0))
        raw = band.offsets()
        bounds = band.publish(y)
        queue.append(y)
        if not bounds or band._step == math.inf:
            continue
        for i in range(0, len(bounds), 2):
            # the snapped interval holds exactly the lattice points the raw one held
            inside = {k for k in range(-40, 41) if raw[i] <= k / 10 <= raw[i + 1]}
            snapped = {k for k in range(-40, 41) if bounds[i] <= y + k / 10 <= bounds[i + 1]}
            assert snapped == inside or not inside
            raw_width += raw[i + 1] - raw[i]
            published_width += bounds[i + 1] - bounds[i]
    assert band._step == pytest.approx(0.1)
    assert band.coverage(0.8) == pytest.approx(0.8, abs=0.01)
    assert band.coverage(0.95) == pytest.approx(0.95, abs=0.01)
    assert published_width < 0.95 * raw_width


def test_overlapping_forecasts_weigh_as_one_observation_in_the_spread():
    # 60 forecasts per horizon-length share their errors: 100 of them are under two
    # observations, and move the spread far less than 100 forecasts that do not overlap
    spreads = {}
    for overlap in (1, 60):
        band = Band(window=100)
        for i in range(10_000):
            band.update(0.1 if i % 2 else -0.1, 0.0, overlap=overlap)
        for i in range(100):
            band.update(1.0 if i % 2 else -1.0, 0.0, overlap=overlap)
        spreads[overlap] = band.spread()
    assert spreads[60] < 0.15 < 0.5 < spreads[1]


def test_a_band_pickled_before_the_lattice_loads_and_learns_it():
    band = Band()
    for r in (0.1, -0.2, 0.3) * 10:
        band.update(r, 0.0)
    state = band.__reduce_ex__(4)[2][1]
    old = {k: v for k, v in state.items() if k not in ("_step", "_last")}  # model-set format 6

    class Format6:
        def __reduce_ex__(self, protocol):
            return object.__new__, (Band,), (None, old)

    loaded = pickle.loads(pickle.dumps(Format6()))
    assert loaded.offsets() == band.offsets() and loaded._step == math.inf
    assert len(loaded.publish(20.0)) == 4  # as format 6 did, until it has seen a step
    for y in (20.0, 20.1, 20.3):
        loaded.settle(y, 20.0)
    assert loaded._step == pytest.approx(0.1) and loaded._last == 20.3

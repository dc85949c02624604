"""The served forecast's intervals: coverage holds where the series changes its scale."""

from __future__ import annotations

import math
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

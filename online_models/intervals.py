"""Prediction intervals for the served forecast: online quantile tracking of its residuals.

An interval at level ``L`` (0.8, 0.95) around a forecast ``ŷ`` of one device and
horizon is ``[ŷ + c - s·e^l, ŷ + c + s·e^u]``:

- ``c`` is the recent mean residual ``y - ŷ`` (the forecast's bias) and ``s`` the
  recent mean absolute deviation from it, both exponentially weighted over about
  ``window`` horizon-lengths of forecasts (below): the band follows the series' scale
  (a calm night, a gusty day);
- ``l`` and ``u`` are the log-multiples of ``s`` at which the residual's lower and
  upper ``(1 - L)/2`` tails start. Each is tracked by the quantile tracker of
  conformal PID control (Angelopoulos, Candès & Tibshirani 2023, its "P" term, the
  online gradient step on the pinball loss), on the log scale::

      u ← u + lr · (1{y above the published upper bound} - (1 - L)/2)

  and the same for ``l`` below.

Why this: sensor series are not stationary (seasons, a heater switched on, a
sensor moved), so a quantile over the whole past (``river.conf.RegressionJackknife``)
or a Gaussian band misses in one regime and wastes width in another. The
tracker's guarantee needs no assumption on the data: ``u`` moves by exactly
``lr·(miss - tail)`` per score, so after ``T`` scores the fraction of misses above
differs from the tail by ``(u_T - u_0)/(lr·T)``, which vanishes as long as the
residuals stay within some multiple of their own recent spread. Normalising by
``s`` keeps that multiple steady when the scale changes at sunrise (tracking the
raw residual instead undercovered the 5-minute series by 3 to 8 points at 95 %);
the log scale makes the step scale-free. The miss is judged on the bounds as
*published* with the forecast (kept with it until its target arrives), so the
guarantee is on the intervals an operator saw. Adaptive conformal inference
(Gibbs & Candès 2021) gives the same kind of guarantee but needs a window of
past scores per device; this needs ``4 + 2·levels`` floats.

A forecast at horizon ``h`` is scored ``h`` later, while the next ones are already out:
a target that arrives while ``d`` forecasts wait shares the step, ``lr / sqrt(d)`` (the
step size of online gradient descent with delayed feedback). A full step each let a
1-hour band on 5-second data overshoot to three times the width it needed; ``lr / d``
adapted too slowly (3 points short at 95 % on the 4-day series).

Overlapping forecasts also share one observation's weight in the centre and the spread: a
score that arrives while ``d`` forecasts wait counts ``1/d`` (the means decay by
``(1 - 1/window)^(1/d)`` per score), so ``window`` is in horizon-lengths of forecasts, not in
scores. Forecasts made seconds apart about the same hour ahead share nearly all their error:
100 scores of a 1-hour band made every minute are under two independent errors, and a spread
from so few made the band's width swing: at 15 minutes on the generated week (60 forecasts a
horizon) it was 22 % (80 %) and 32 % (95 %) wider than the oracle of ``bench/intervals.py``,
with the window in horizon-lengths 7 % and 1 % narrower, at the same coverage. Where forecasts
do not overlap (``d = 1``: the nowcast, hourly series) nothing changes.

**Readings on a grid.** A sensor reports in steps of its resolution (0.1 °C for a DHT22), so
a target can only fall on the lattice ``last + k·step`` of the readings seen: an interval holds
the same readings as the narrowest one between the lattice points inside it. Each published
interval is that one (snapped inwards to the lattice, padded by a thousandth of a step against
rounding); its coverage is unchanged, its width falls by up to a step. ``step`` is the least
change between two targets seen (two floats: it and the last target); on a continuous series
it is tiny and the snap moves nothing. A lattice learned too coarse (a finer step not seen
yet) makes the snapped interval miss a reading the raw one held: the miss is judged on the
bounds published, so the tracker widens and the guarantee holds. An interval without a
lattice point inside stays as it is (it misses, and the tracker widens it).

The first ``warmup`` scores publish no interval (too few residuals for one): they teach the
band (from a normal band of the same spread) and are not counted in its coverage.

>>> band = Band(levels=(0.8,))
>>> for t in range(2000):
...     y_hat = 20.0
...     low, high = band.bounds(0.8)
...     band.update(20.0 + ((t * 7919) % 101 - 50) / 50.0, y_hat, (low, high))
>>> round(band.coverage(0.8), 2)
0.8
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence
from statistics import NormalDist

__all__ = ["DEFAULT_LEVELS", "Band", "Bounds", "check_levels"]

DEFAULT_LEVELS: tuple[float, ...] = (0.8, 0.95)
Bounds = tuple[float, ...]  # (q_lo, q_hi) per level, flattened: the offsets published


def check_levels(levels: Iterable[float]) -> tuple[float, ...]:
    """Validate interval levels (each strictly between 0 and 1), sorted and unique.

    >>> check_levels([0.95, 0.8])
    (0.8, 0.95)
    >>> check_levels([1.0])
    Traceback (most recent call last):
    ...
    ValueError: an interval level must be strictly between 0 and 1 (0.8 for 80 %); got 1.0
    """
    out = sorted({float(v) for v in levels})
    for v in out:
        if not 0.0 < v < 1.0:
            raise ValueError(
                f"an interval level must be strictly between 0 and 1 (0.8 for 80 %); got {v}"
            )
    return tuple(out)


class Band:
    """Residual quantile trackers of one forecast stream (one device, one horizon).

    ``offsets()`` gives the (low, high) offsets of every level to add to the forecast
    now; ``update`` scores a forecast whose target arrived, with the offsets that
    were published with it, and moves the trackers. ``coverage``/``width`` are
    running figures of the published intervals (for reports and tests).

    Parameters: ``levels`` (central coverage levels), ``lr`` (the trackers' step,
    in log units), ``window`` (horizon-lengths of residuals in the centre's and the
    spread's exponential means),
    ``floor`` (the smallest half-width, in the target's unit: a sensor's resolution),
    ``warmup`` (residuals before the trackers take over from a normal band).
    """

    __slots__ = (
        "_hits", "_last", "_log", "_n", "_published", "_scored", "_step", "_sum_abs", "_sum_r", "_sum_w",
        "_width", "_z", "floor", "levels", "lr", "warmup", "window",
    )  # fmt: skip

    def __init__(
        self,
        levels: Sequence[float] = DEFAULT_LEVELS,
        lr: float = 0.1,
        window: int = 100,
        floor: float = 1e-3,
        warmup: int = 10,
    ) -> None:
        self.levels = check_levels(levels)
        self.lr = lr
        self.window = window
        self.floor = floor
        self.warmup = warmup
        # half-widths of a normal band with the same mean absolute residual: sd = mean|r| * sqrt(pi/2)
        self._z = [
            NormalDist().inv_cdf((1.0 + v) / 2.0) * math.sqrt(math.pi / 2.0) for v in self.levels
        ]
        self._log = [math.log(z) for z in self._z for _ in (0, 1)]  # log multiples of the spread
        self._sum_r = 0.0  # exponentially weighted sums of the residuals, |r - centre|, weights
        self._sum_abs = 0.0
        self._sum_w = 0.0
        self._n = 0
        self._scored = 0
        self._hits = [0] * len(self.levels)
        self._width = [0.0] * len(self.levels)
        # the offsets published with each forecast not yet scored, oldest first (float32:
        # a rounding of 1e-7 relative, far below any sensor's resolution, half the memory)
        self._published = array("f")
        self._step = math.inf  # the least change between two targets: the readings' lattice
        self._last = math.nan  # the last target: a point of that lattice

    def __setstate__(self, state: tuple[None, dict[str, object]]) -> None:
        # a band pickled before the lattice (model-set format 6) learns it from its next targets
        for name, value in state[1].items():
            setattr(self, name, value)
        if not hasattr(self, "_step"):
            self._step, self._last = math.inf, math.nan

    # ------------------------------------------------------------ publish
    def centre(self) -> float:
        """Recent mean residual: the forecast's bias the band is centred on."""
        return self._sum_r / self._sum_w if self._sum_w else 0.0

    def offsets(self) -> Bounds:
        """Every level's (low, high) offsets, flattened in level order: what a forecast carries.
        The intervals nest: each level's contains the one of the level below it.

        >>> band = Band(levels=(0.8, 0.95))
        >>> band._log[0] = 2.0  # the 80 % low side tracked wider than the 95 %'s
        >>> o = band.offsets()
        >>> o[2] <= o[0] and o[3] >= o[1]
        True
        """
        c, spread = self.centre(), self.spread()
        out: list[float] = []
        lo_m = hi_m = 0.0
        for i in range(len(self.levels)):
            # levels ascend, and each level's multipliers are tracked alone: a wider level
            # never publishes a narrower side than the level inside it (nested intervals,
            # the rearrangement of crossing quantiles)
            lo_m = max(lo_m, math.exp(self._log[2 * i]))
            hi_m = max(hi_m, math.exp(self._log[2 * i + 1]))
            out += (c - spread * lo_m, c + spread * hi_m)
        return tuple(out)

    def spread(self) -> float:
        """Recent mean absolute deviation of the residuals from the centre (at least ``floor``)."""
        return max(self._sum_abs / self._sum_w, self.floor) if self._sum_w else self.floor

    def bounds(self, level: float) -> tuple[float, float]:
        """(low, high) offsets of one level: the interval is ``[ŷ + low, ŷ + high]``."""
        i = self.levels.index(level)
        o = self.offsets()
        return o[2 * i], o[2 * i + 1]

    # ------------------------------------------------------------ a forecast's life
    def publish(self, value: float) -> Bounds:
        """The interval of a forecast ``value`` made now, as absolute (low, high) per level,
        flattened; its offsets wait, in order, for :meth:`settle` (or :meth:`forget`)."""
        if self._n < self.warmup:  # too few residuals for an interval: none is published
            self.owe(1)
            return ()
        offsets = self.offsets()
        if self._step != math.inf:  # a lattice seen: each interval snapped inwards to it
            offsets = self._snapped(offsets, value - self._last)
        self._published.extend(offsets)
        return tuple(value + o for o in offsets)

    def _snapped(self, offsets: Bounds, base: float) -> Bounds:
        """``offsets`` of a forecast ``base`` lattice units from the last target, each
        interval narrowed to the lattice points inside it (padded by a thousandth of a step:
        the float32 offsets keep 7 digits), or left as it is with none inside; still nested."""
        step = self._step
        pad = step * 1e-3
        out: list[float] = []
        lo_all, hi_all = math.inf, -math.inf
        for i in range(0, len(offsets), 2):
            lo, hi = offsets[i], offsets[i + 1]
            lo_s = math.ceil((base + lo) / step - 1e-6) * step - base - pad
            hi_s = math.floor((base + hi) / step + 1e-6) * step - base + pad
            if lo_s <= hi_s:  # the lattice points inside, else the interval as it is
                lo, hi = lo_s, hi_s
            lo_all, hi_all = min(lo_all, lo), max(hi_all, hi)
            out += (lo_all, hi_all)
        return tuple(out)

    def settle(self, y_true: float, y_pred: float | None) -> None:
        """The oldest published forecast's target arrived: score it with its own offsets.
        A forecast published without an interval (in the warm-up, or by a model set from
        before intervals) teaches the band and is not counted in its coverage."""
        k = 2 * len(self.levels)
        # forecasts published and not yet scored, this one included: a target that arrives
        # while d forecasts wait is one of d overlapping ones, which miss or hit together
        # (update shares the step and the means' weight among them)
        overlap = max(1, len(self._published) // k)
        published: Bounds | None = None
        if len(self._published) >= k:
            published = tuple(self._published[:k])
            del self._published[:k]
            if published[0] != published[0]:  # owed (NaN): published without an interval
                if y_pred is not None:
                    self.update(y_true, y_pred, None, count=False, overlap=overlap)
                return
        if y_pred is not None:
            self.update(y_true, y_pred, published, overlap=overlap)

    def owe(self, n: int) -> None:
        """``n`` forecasts already pending were published without intervals (a model set
        from before them): they are scored on the offsets of the day they arrive."""
        self._published.extend([math.nan] * (2 * len(self.levels) * n))

    def forget(self) -> None:
        """The oldest published forecast will never be scored (dropped from a full queue)."""
        del self._published[: 2 * len(self.levels)]

    # ------------------------------------------------------------ learn
    def update(
        self,
        y_true: float,
        y_pred: float,
        published: Bounds | None = None,
        *,
        count: bool = True,
        overlap: int = 1,
    ) -> None:
        """Score the forecast ``y_pred`` of ``y_true`` with the offsets it was published with.

        ``published`` defaults to the current offsets (a nowcast, scored at once); ``count``
        False learns from the residual without counting it in ``coverage``/``width``;
        ``overlap`` is how many forecasts share this one's error (:meth:`settle`: those
        waiting): the trackers step by ``lr / sqrt(overlap)`` (the step of online gradient
        descent with delayed feedback; a full step each made a 1-hour band on 5-second data
        overshoot to three times the width it needed, ``lr / overlap`` adapted too slowly, 3
        points short at 95 % on the 4-day series) and the means weigh it ``1 / overlap``.
        Non-finite values are ignored.
        """
        r = y_true - y_pred
        if not math.isfinite(r):
            return
        if y_true != self._last:  # the lattice: the least change between two targets
            change = abs(y_true - self._last)  # (NaN before the first: no change)
            if 1e-9 < change < self._step:
                self._step = change
            self._last = y_true
        pub = self.offsets() if published is None else published
        self._n += 1
        if count:
            self._scored += 1
            for i in range(len(self.levels)):
                lo, hi = pub[2 * i], pub[2 * i + 1]
                if lo <= r <= hi:
                    self._hits[i] += 1
                self._width[i] += hi - lo
        decay = 1.0 - 1.0 / self.window
        if overlap > 1:
            decay **= 1.0 / overlap
        centre = self.centre()
        self._sum_r = self._sum_r * decay + r
        self._sum_abs = self._sum_abs * decay + abs(r - centre)
        self._sum_w = self._sum_w * decay + 1.0
        logs = self._log
        if self._n <= self.warmup:
            # too few residuals to track a tail: the multiples of a normal band
            for i, z in enumerate(self._z):
                logs[2 * i] = logs[2 * i + 1] = math.log(z)
            return
        lr = self.lr / math.sqrt(overlap) if overlap > 1 else self.lr
        for i, level in enumerate(self.levels):
            tail = (1.0 - level) / 2.0
            lo, hi = pub[2 * i], pub[2 * i + 1]
            # each tail's log half-width: a miss widens it by lr * (1 - tail), a hit
            # narrows it by lr * tail; the sum of these steps is bounded, so misses
            # tend to a `tail` fraction of the scores (the tracker's guarantee)
            logs[2 * i] += lr * ((1.0 if r < lo else 0.0) - tail)
            logs[2 * i + 1] += lr * ((1.0 if r > hi else 0.0) - tail)

    # ------------------------------------------------------------ figures
    @property
    def n(self) -> int:
        """Residuals learned so far."""
        return self._n

    @property
    def scored(self) -> int:
        """Published intervals scored so far (what ``coverage`` and ``width`` are over)."""
        return self._scored

    def coverage(self, level: float) -> float | None:
        """Fraction of scored targets inside their published interval."""
        if not self._scored:
            return None
        return self._hits[self.levels.index(level)] / self._scored

    def width(self, level: float) -> float | None:
        """Mean width of the published intervals."""
        if not self._scored:
            return None
        return self._width[self.levels.index(level)] / self._scored

    def __repr__(self) -> str:
        return f"Band(levels={self.levels}, lr={self.lr}, window={self.window})"

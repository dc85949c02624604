"""Exponentially weighted ridge regression: a well-conditioned online least-squares learner.

:class:`ForgettingRidge` fits ``y ≈ w·x + b`` by least squares over the
samples seen so far, older ones weighted down by ``exp(-age / memory)``, with
a ridge prior that pulls ``w`` towards zero with the weight of ``prior``
samples. Inside the catalog it learns the *change* of the target over the
horizon (:class:`~online_models.adapters.Anchored`), so zero weights mean
"no change" (persistence): with little evidence, or evidence that says
nothing, the forecast falls back to persistence instead of wandering.

Why not stochastic gradient descent: the horizon features are strongly
correlated (means over nested windows), which SGD handles slowly and only
with a learning rate tuned to the data's scale; least squares needs no
learning rate. Features and target are scaled by their running root mean
square, so ``prior`` counts samples whatever the units. Why not River's
``BayesianLinearRegression(smoothing=...)``: its smoothing decays the prior
along with the data, so the precision matrix turns singular under idle or
collinear features, and it inverts the full matrix at every sample.

``w`` in :meth:`learn_one` is the sample's weight in independent samples:
the device loop passes the share of the horizon since the previous forecast
(forecasts made seconds apart about the same hour ahead are one piece of
evidence, not sixty). The statistics are updated at every sample and the
system solved every ``solve_every`` samples (O(d²) a sample, O(d³) a solve,
d = 11 here). Scaled inputs are clipped to ±:data:`CLIP`.

A feature missing from a sample (a sensor the reading does not carry) enters it as
0: there is no centring, so it adds nothing to the forecast and no evidence about
its own coefficient, which is what River's linear models do with a missing key; its
running scale is left as it was. A feature first seen after the start joins the
system with a zero coefficient and the prior on it.

>>> import random
>>> rng = random.Random(1)
>>> m = ForgettingRidge(horizon=60, memory=86_400.0, prior=1.0)
>>> for _ in range(2000):
...     a, b = rng.gauss(0, 1), rng.gauss(0, 1)
...     m.learn_one({"a": a, "b": b}, 2.0 * a - b + 0.5 + rng.gauss(0, 0.1))
>>> round(m.predict_one({"a": 1.0, "b": 1.0}), 1)
1.5
>>> ForgettingRidge(horizon=60).predict_one({"a": 1.0})
0.0
>>> m.learn_one({"a": 1.0, "c": 2.0}, 1.5)  # "b" missing, "c" new
>>> m.keys, round(m.predict_one({"a": 1.0, "b": 1.0}), 1)
(('a', 'b', 'c'), 1.5)
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["CLIP", "ForgettingRidge"]

# scaled inputs are clipped to this many root mean squares: a feature far beyond anything
# seen (a step after a silence) must not multiply a coefficient fitted on small values
CLIP = 5.0


class ForgettingRidge:
    """Least squares with exponential forgetting and a ridge prior (see the module docstring).

    Parameters:
        horizon: the forecast horizon in seconds (a sample of weight ``w`` ages
            the others by ``w * horizon`` seconds).
        memory: the forgetting time constant in seconds.
        prior: the ridge prior's weight, in (weighted) samples.
        solve_every: samples between two solves of the normal equations.
    """

    def __init__(
        self,
        horizon: int = 3600,
        memory: float = 14 * 86_400.0,
        prior: float = 10.0,
        solve_every: int = 8,
    ) -> None:
        self.horizon = max(int(horizon), 1)
        self.memory = float(memory)
        self.prior = float(prior)
        self.solve_every = int(solve_every)
        self.keys: tuple[str, ...] | None = None
        self.S: np.ndarray | None = None  # weighted sum of x xᵀ (scaled, with intercept)
        self.b: np.ndarray | None = None  # weighted sum of y x
        self.coef: np.ndarray | None = None  # in scaled units
        self.sq: np.ndarray | None = None  # running mean square of each feature
        self.sq_y = 0.0
        self.scale: np.ndarray | None = None
        self.scale_y = 1.0
        self.n = 0.0  # weight of the samples (forgotten as they age)
        self.k = 0

    def _start(self, x: dict) -> None:
        self.keys = tuple(x)
        d = len(self.keys) + 1
        self.S = np.zeros((d, d))
        self.b = np.zeros(d)
        self.coef = np.zeros(d)
        self.sq = np.zeros(d)
        self.scale = np.ones(d)

    def _array(self, x: dict, same: bool | None = None) -> tuple[np.ndarray, list[int] | None]:
        """The sample as a vector (the intercept's 1 last), and the positions of the known
        features it lacks (None when it has them all); ``same``: x's keys are :attr:`keys`."""
        keys = self.keys
        missing = None
        if same is None:
            same = len(x) == len(keys) and tuple(x) == keys
        if same:
            values = list(x.values())
        else:
            values = []
            missing = []
            for i, k in enumerate(keys):
                v = x.get(k)
                if v is None:
                    missing.append(i)
                    values.append(0.0)
                else:
                    values.append(float(v))
        values.append(1.0)
        return np.array(values), missing

    def _grow(self, x: dict) -> None:
        """Add the features of ``x`` not seen before (zero statistics, before the intercept)."""
        new = [k for k in x if k not in self.keys]
        if not new:
            return
        d, m = len(self.keys), len(new)
        self.keys = (*self.keys, *new)
        S = np.zeros((d + m + 1, d + m + 1))
        S[:d, :d] = self.S[:d, :d]
        S[:d, -1] = self.S[:d, -1]
        S[-1, :d] = self.S[-1, :d]
        S[-1, -1] = self.S[-1, -1]
        self.S = S

        def widen(a: np.ndarray, fill: float) -> np.ndarray:
            return np.concatenate((a[:d], np.full(m, fill), a[d:]))

        self.b = widen(self.b, 0.0)
        self.coef = widen(self.coef, 0.0)
        self.sq = widen(self.sq, 0.0)
        self.scale = widen(self.scale, 1.0)

    def predict_one(self, x: dict) -> float:
        if self.keys is None:
            return 0.0
        return float(self.coef @ _clipped(self._array(x)[0] / self.scale)) * self.scale_y

    def learn_one(self, x: dict, y: float, w: float = 1.0) -> None:
        if self.keys is None:
            self._start(x)
        same = len(x) == len(self.keys) and tuple(x) == self.keys
        if not same:
            self._grow(x)
        v, missing = self._array(x, same)
        lam = math.exp(-w * self.horizon / self.memory)
        n = self.n * lam + w
        self.n = n
        a = w / n
        if missing:
            kept = self.sq[missing]
            self.sq += a * (v * v - self.sq)
            self.sq[missing] = kept
        else:
            self.sq += a * (v * v - self.sq)
        self.sq_y += a * (y * y - self.sq_y)
        k = self.k
        if k < 64 or k % 16 == 0:
            self._rescale()
        xs = _clipped(v / self.scale)
        ys = y / self.scale_y
        S = self.S
        S *= lam
        S += xs[:, None] * (w * xs)
        b = self.b
        b *= lam
        b += (w * ys) * xs
        self.k = k + 1
        if k < 16 or k % self.solve_every == 0:
            self._solve()

    def _rescale(self) -> None:
        """Scale features and target by their running RMS (stored sums follow)."""
        scale = np.sqrt(self.sq)
        scale[scale <= 1e-12] = 1.0
        scale[-1] = 1.0
        scale_y = math.sqrt(self.sq_y)
        if not scale_y > 1e-12:
            scale_y = 1.0
        r = self.scale / scale
        ry = self.scale_y / scale_y
        self.S *= np.outer(r, r)
        self.b *= r * ry
        self.coef *= ry / r  # the same predictions until the next solve
        self.scale = scale
        self.scale_y = scale_y

    def _solve(self) -> None:
        d = len(self.b)
        A = self.S + np.diag(np.full(d, self.prior))
        A[-1, -1] -= 0.99 * self.prior  # the intercept is barely held
        try:
            coef = np.linalg.solve(A, self.b)
        except np.linalg.LinAlgError:
            return  # keep the last solution; the next sample brings new evidence
        if np.all(np.isfinite(coef)):
            self.coef = coef


def _clipped(a: np.ndarray) -> np.ndarray:
    """``a`` clipped to ±CLIP in place (two ufuncs: np.clip's Python wrapper costs more)."""
    np.minimum(a, CLIP, out=a)
    return np.maximum(a, -CLIP, out=a)

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
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from river import base
from river.base.typing import FeatureName

__all__ = ["CLIP", "ForgettingRidge"]

_Vector = npt.NDArray[np.floating[Any]]
# the learned state's arrays before the first sample (the first sample sizes them)
_EMPTY: _Vector = np.zeros(0)
# the learned state, kept under these public names by checkpoints of model-set format 3 and older
_STATE = frozenset(("keys", "S", "b", "coef", "sq", "sq_y", "scale", "scale_y", "n", "k"))

# scaled inputs are clipped to this many root mean squares: a feature far beyond anything
# seen (a step after a silence) must not multiply a coefficient fitted on small values
CLIP = 5.0


class ForgettingRidge(base.Regressor):
    """Least squares with exponential forgetting and a ridge prior (see the module docstring).

    A River regressor: the parameters below are its ``__init__`` arguments under the same
    names (``clone()`` gives a fresh one), the learned state is private; :attr:`keys`
    names the features learned so far.

    Parameters:
        horizon: the forecast horizon in seconds (a sample of weight ``w`` ages
            the others by ``w * horizon`` seconds).
        memory: the forgetting time constant in seconds.
        prior: the ridge prior's weight, in (weighted) samples.
        solve_every: samples between two solves of the normal equations.

    >>> m = ForgettingRidge(horizon=60, prior=1.0)
    >>> m.learn_one({"a": 1.0}, 2.0)
    >>> fresh = m.clone()
    >>> m.keys, fresh.keys, fresh._get_params() == m._get_params()
    (('a',), None, True)
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
        self._keys: tuple[FeatureName, ...] | None = None
        self._S = _EMPTY  # weighted sum of x xᵀ (scaled, with intercept)
        self._b = _EMPTY  # weighted sum of y x
        self._coef = _EMPTY  # in scaled units
        self._sq = _EMPTY  # running mean square of each feature
        self._sq_y = 0.0
        self._scale = _EMPTY
        self._scale_y = 1.0
        self._n = 0.0  # weight of the samples (forgotten as they age)
        self._k = 0

    def __setstate__(self, state: dict[str, object]) -> None:
        """Load a pickle of either layout: checkpoints of model-set format 3 and older kept the
        learned state under public names (``keys``, ``S``, ``coef``...)."""
        if "_keys" not in state:
            state = {(f"_{k}" if k in _STATE else k): v for k, v in state.items()}
            for k in ("_S", "_b", "_coef", "_sq", "_scale"):
                if state[k] is None:
                    state[k] = _EMPTY
        self.__dict__.update(state)

    @property
    def keys(self) -> tuple[FeatureName, ...] | None:
        """The names of the features learned so far, in the order of the coefficients."""
        return self._keys

    def _start(self, x: Mapping[FeatureName, float]) -> tuple[FeatureName, ...]:
        self._keys = keys = tuple(x)
        d = len(keys) + 1
        self._S = np.zeros((d, d))
        self._b = np.zeros(d)
        self._coef = np.zeros(d)
        self._sq = np.zeros(d)
        self._scale = np.ones(d)
        return keys

    def _array(
        self,
        x: Mapping[FeatureName, float],
        keys: tuple[FeatureName, ...],
        same: bool | None = None,
    ) -> tuple[_Vector, list[int] | None]:
        """The sample as a vector (the intercept's 1 last), and the positions of the known
        features it lacks (None when it has them all); ``same``: x's keys are ``keys``."""
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

    def _grow(self, x: Mapping[FeatureName, float], keys: tuple[FeatureName, ...]) -> None:
        """Add the features of ``x`` not seen before (zero statistics, before the intercept)."""
        new = [k for k in x if k not in keys]
        if not new:
            return
        d, m = len(keys), len(new)
        self._keys = (*keys, *new)
        S = np.zeros((d + m + 1, d + m + 1))
        S[:d, :d] = self._S[:d, :d]
        S[:d, -1] = self._S[:d, -1]
        S[-1, :d] = self._S[-1, :d]
        S[-1, -1] = self._S[-1, -1]
        self._S = S

        def widen(a: _Vector, fill: float) -> _Vector:
            return np.concatenate((a[:d], np.full(m, fill), a[d:]))

        self._b = widen(self._b, 0.0)
        self._coef = widen(self._coef, 0.0)
        self._sq = widen(self._sq, 0.0)
        self._scale = widen(self._scale, 1.0)

    def predict_one(self, x: Mapping[FeatureName, float]) -> float:
        keys = self._keys
        if keys is None:
            return 0.0
        return float(self._coef @ _clipped(self._array(x, keys)[0] / self._scale)) * self._scale_y

    def learn_one(self, x: Mapping[FeatureName, float], y: float, w: float = 1.0) -> None:
        keys = self._keys
        if keys is None:
            keys = self._start(x)
        same = len(x) == len(keys) and tuple(x) == keys
        if not same:
            self._grow(x, keys)
            keys = self._keys
            assert keys is not None
        v, missing = self._array(x, keys, same)
        lam = math.exp(-w * self.horizon / self.memory)
        n = self._n * lam + w
        self._n = n
        a = w / n
        if missing:
            kept = self._sq[missing]
            self._sq += a * (v * v - self._sq)
            self._sq[missing] = kept
        else:
            self._sq += a * (v * v - self._sq)
        self._sq_y += a * (y * y - self._sq_y)
        k = self._k
        if k < 64 or k % 16 == 0:
            self._rescale()
        xs = _clipped(v / self._scale)
        ys = y / self._scale_y
        S = self._S
        S *= lam
        S += xs[:, None] * (w * xs)
        b = self._b
        b *= lam
        b += (w * ys) * xs
        self._k = k + 1
        if k < 16 or k % self.solve_every == 0:
            self._solve()

    def _rescale(self) -> None:
        """Scale features and target by their running RMS (stored sums follow)."""
        scale = np.sqrt(self._sq)
        scale[scale <= 1e-12] = 1.0
        scale[-1] = 1.0
        scale_y = math.sqrt(self._sq_y)
        if not scale_y > 1e-12:
            scale_y = 1.0
        r = self._scale / scale
        ry = self._scale_y / scale_y
        self._S *= np.outer(r, r)
        self._b *= r * ry
        self._coef *= ry / r  # the same predictions until the next solve
        self._scale = scale
        self._scale_y = scale_y

    def _solve(self) -> None:
        d = len(self._b)
        A = self._S + np.diag(np.full(d, self.prior))
        A[-1, -1] -= 0.99 * self.prior  # the intercept is barely held
        try:
            coef = np.linalg.solve(A, self._b)
        except np.linalg.LinAlgError:
            return  # keep the last solution; the next sample brings new evidence
        if np.all(np.isfinite(coef)):
            self._coef = coef


def _clipped(a: _Vector) -> _Vector:
    """``a`` clipped to ±CLIP in place (two ufuncs: np.clip's Python wrapper costs more)."""
    np.minimum(a, CLIP, out=a)
    return np.maximum(a, -CLIP, out=a)

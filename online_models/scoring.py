"""Error accumulators: the one place MAE, RMSE and R² are computed.

The stream processor exports these figures and ``iotcast evaluate`` reports
them: both run this code, so stream and offline figures agree to float
precision. :class:`ErrorStats` keeps totals since the start (MAE, RMSE, R²
with Welford's variance of the actuals) and rolling figures over about the
last ``window`` scores: exponentially weighted means of the absolute and
squared errors (each score weighs ``1 - 1/window`` times the next one),
normalised by the weights' sum so the first scores count fully. Three
floats instead of the last ``window`` errors: a device's state stays small
whatever the window (a window of 2,000 errors pickled to 18 KB a model and
horizon).

>>> s = ErrorStats(window=2)
>>> for actual, predicted in [(21.0, 20.0), (21.0, 21.0), (23.0, 22.0)]:
...     _ = s.update(actual, predicted)
>>> s.n, round(s.mae, 4), round(s.rmse, 4), round(s.rolling_mae, 4)
(3, 0.6667, 0.8165, 0.7143)
>>> round(s.r2, 4), s.rolling_n
(0.25, 2)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

__all__ = ["ErrorStats", "ErrorTotals"]


class _Totals:
    """The figures of the totals, shared by :class:`ErrorStats` and :class:`ErrorTotals`."""

    __slots__ = ()

    n: int
    sum_abs: float
    sum_sq: float
    sum_err: float
    m2_y: float

    @property
    def mae(self) -> float | None:
        return self.sum_abs / self.n if self.n else None

    @property
    def rmse(self) -> float | None:
        return math.sqrt(self.sum_sq / self.n) if self.n else None

    @property
    def bias(self) -> float | None:
        """Mean residual (actual - predicted)."""
        return self.sum_err / self.n if self.n else None

    @property
    def r2(self) -> float | None:
        if self.n < 2 or self.m2_y <= 0.0:
            return None
        return 1.0 - self.sum_sq / self.m2_y


class ErrorStats(_Totals):
    """Prequential error figures of one model at one horizon (see the module docstring).

    >>> ErrorStats().mae is None
    True
    """

    def __init__(self, window: int = 500) -> None:
        self.window = window
        self.n = 0
        self.sum_abs = 0.0
        self.sum_sq = 0.0
        self.sum_err = 0.0
        self.mean_y = 0.0
        self.m2_y = 0.0
        self.roll_abs = 0.0  # exponentially weighted sums (not yet divided by roll_w)
        self.roll_sq = 0.0
        self.roll_w = 0.0

    def __setstate__(self, state: dict[str, object]) -> None:
        recent = cast("Sequence[float] | None", state.pop("recent", None))
        if recent is not None:  # a checkpoint of the exact window (model-set format 1)
            k = len(recent)
            state["roll_abs"] = sum(abs(e) for e in recent)
            state["roll_sq"] = sum(e * e for e in recent)
            state["roll_w"] = float(k)
            state.pop("_since_exact", None)
        self.__dict__.update(state)

    def update(self, y_true: float, y_pred: float) -> float:
        """Add one scored prediction (River's order: the actual value, then the predicted
        one); returns the residual ``y_true - y_pred``."""
        # The hot path (a dozen calls a reading): attributes read once into locals.
        err = y_true - y_pred
        n = self.n + 1
        self.n = n
        a = abs(err)
        sq = err * err
        self.sum_abs += a
        self.sum_sq += sq
        self.sum_err += err
        mean_y = self.mean_y
        delta = y_true - mean_y
        mean_y += delta / n
        self.mean_y = mean_y
        self.m2_y += delta * (y_true - mean_y)
        keep = 1.0 - 1.0 / self.window
        self.roll_abs = self.roll_abs * keep + a
        self.roll_sq = self.roll_sq * keep + sq
        self.roll_w = self.roll_w * keep + 1.0
        return err

    @property
    def rolling_n(self) -> int:
        """Scores in the rolling figures: all of them, up to ``window``."""
        return min(self.n, self.window)

    @property
    def rolling_mae(self) -> float | None:
        return self.roll_abs / self.roll_w if self.n else None

    @property
    def rolling_rmse(self) -> float | None:
        return math.sqrt(self.roll_sq / self.roll_w) if self.n else None

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "n": self.n,
            "mae": self.mae,
            "rmse": self.rmse,
            "r2": self.r2,
            "bias": self.bias,
            "rolling_mae": self.rolling_mae,
            "rolling_rmse": self.rolling_rmse,
        }


class ErrorTotals(_Totals):
    """Totals only (no rolling window): MAE, RMSE, R² and bias of a group of scored predictions.

    The same formulas as :class:`ErrorStats`; used for the evaluation's scenario groups.

    >>> t = ErrorTotals()
    >>> t.update(21.0, 20.0); t.update(23.0, 22.0)
    >>> t.n, t.mae, t.rmse
    (2, 1.0, 1.0)
    """

    __slots__ = ("n", "sum_abs", "sum_sq", "sum_err", "mean_y", "m2_y")

    def __init__(self) -> None:
        self.n = 0
        self.sum_abs = 0.0
        self.sum_sq = 0.0
        self.sum_err = 0.0
        self.mean_y = 0.0
        self.m2_y = 0.0

    def update(self, y_true: float, y_pred: float) -> None:
        """Add one scored prediction (River's order: the actual value, then the predicted one)."""
        err = y_true - y_pred
        self.n += 1
        self.sum_abs += abs(err)
        self.sum_sq += err * err
        self.sum_err += err
        delta = y_true - self.mean_y
        self.mean_y += delta / self.n
        self.m2_y += delta * (y_true - self.mean_y)

    def as_dict(self) -> dict[str, float | int | None]:
        return {"n": self.n, "mae": self.mae, "rmse": self.rmse, "r2": self.r2, "bias": self.bias}

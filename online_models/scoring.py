"""Error accumulators: the one place MAE, RMSE and R² are computed.

The stream processor exports these figures and ``iotcast evaluate`` reports
them: both run this code, so stream and offline figures agree to float
precision. :class:`ErrorStats` keeps totals since the start (MAE, RMSE, R²
with Welford's variance of the actuals) and a rolling window of the last
``window`` absolute and squared errors (bounded; its running sums are
recomputed exactly every ``window`` updates so rounding cannot accumulate).

>>> s = ErrorStats(window=2)
>>> for predicted, actual in [(20.0, 21.0), (21.0, 21.0), (22.0, 23.0)]:
...     _ = s.update(predicted, actual)
>>> s.n, round(s.mae, 4), round(s.rmse, 4), round(s.rolling_mae, 4)
(3, 0.6667, 0.8165, 0.5)
>>> round(s.r2, 4)
0.25
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["ErrorStats", "ErrorTotals"]


class ErrorStats:
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
        self.recent: deque[float] = deque(maxlen=window)
        self.roll_abs = 0.0
        self.roll_sq = 0.0
        self._since_exact = 0

    def update(self, predicted: float, actual: float) -> float:
        """Add one scored prediction; returns the residual ``actual - predicted``."""
        # The hot path (a dozen calls a reading): attributes read once into locals; the
        # arithmetic, and its order, is that of the plain statements (same floats).
        err = actual - predicted
        a = abs(err)
        sq = err * err
        n = self.n + 1
        self.n = n
        self.sum_abs += a
        self.sum_sq += sq
        self.sum_err += err
        mean_y = self.mean_y
        delta = actual - mean_y
        mean_y += delta / n
        self.mean_y = mean_y
        self.m2_y += delta * (actual - mean_y)
        recent = self.recent
        window = self.window
        if len(recent) == window:
            old = recent[0]
            roll_abs = self.roll_abs - abs(old)
            roll_sq = self.roll_sq - old * old
        else:
            roll_abs = self.roll_abs
            roll_sq = self.roll_sq
        recent.append(err)
        since = self._since_exact + 1
        if since >= window:
            self.roll_abs = math.fsum(abs(e) for e in recent)
            self.roll_sq = math.fsum(e * e for e in recent)
            self._since_exact = 0
        else:
            self.roll_abs = roll_abs + a
            self.roll_sq = roll_sq + sq
            self._since_exact = since
        return err

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

    @property
    def rolling_n(self) -> int:
        return len(self.recent)

    @property
    def rolling_mae(self) -> float | None:
        return max(self.roll_abs, 0.0) / len(self.recent) if self.recent else None

    @property
    def rolling_rmse(self) -> float | None:
        return math.sqrt(max(self.roll_sq, 0.0) / len(self.recent)) if self.recent else None

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


class ErrorTotals:
    """Totals only (no rolling window): MAE, RMSE, R² and bias of a group of scored predictions.

    The same formulas as :class:`ErrorStats`; used for the evaluation's scenario groups.

    >>> t = ErrorTotals()
    >>> t.update(20.0, 21.0); t.update(22.0, 23.0)
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

    def update(self, predicted: float, actual: float) -> None:
        err = actual - predicted
        self.n += 1
        self.sum_abs += abs(err)
        self.sum_sq += err * err
        self.sum_err += err
        delta = actual - self.mean_y
        self.mean_y += delta / self.n
        self.m2_y += delta * (actual - self.mean_y)

    mae = ErrorStats.mae
    rmse = ErrorStats.rmse
    bias = ErrorStats.bias
    r2 = ErrorStats.r2

    def as_dict(self) -> dict[str, float | int | None]:
        return {"n": self.n, "mae": self.mae, "rmse": self.rmse, "r2": self.r2, "bias": self.bias}

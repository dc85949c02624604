"""Baselines every honest report shows beside the models: last value, rolling mean, seasonal naive.

They are River regressors (parameters are ``__init__`` arguments, state is private),
answer to the same two verbs as the River models (``learn_one``, ``predict_one``) and
return ``None`` while they cannot predict yet.

- :class:`Persistence`: the last known value of the target (for a forecast,
  the value at the time the forecast is made; for the nowcast, the previous
  reading's value).
- :class:`RollingMean`: the time-weighted exponential mean of the target over
  ``window`` seconds.
- :class:`SeasonalNaive`: the value one day before the target time, from the
  device's ring of 5-minute bin means; ``None`` until a day of history exists.

>>> p = Persistence("temp")
>>> p.predict_one({"temp": 22.4, "humidity": 50.0})
22.4
>>> p.learn_one({"humidity": 50.0}, 22.5)
>>> p.predict_one({"humidity": 50.0})  # nowcast view: no current temp, so the last one
22.5
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from river import base
from river.base.typing import FeatureName

from online_models.features import WINDOWS

__all__ = ["BASELINES", "ONLINE_BASELINES", "Persistence", "RollingMean", "SeasonalNaive"]

# The catalog's names of the models a report marks "(baseline)": the three here and the frozen
# batch forest (the offline reference, :mod:`online_models.batch`). The headline table compares
# the served forecast with the online three only (``ONLINE_BASELINES``).
ONLINE_BASELINES = ("persistence", "rolling_mean", "seasonal_naive")
BASELINES = (*ONLINE_BASELINES, "batch_forest")


class Persistence(base.Regressor):
    """Last value: the target now (forecast) or at the previous reading (nowcast).

    Parameters:
        target: the name of the target among the features.

    >>> Persistence("temp").predict_one({"humidity": 50.0}) is None
    True
    """

    def __init__(self, target: str = "temp") -> None:
        self.target = target
        self._last: float | None = None

    def __setstate__(self, state: dict[str, object]) -> None:
        # checkpoints of model-set format 3 and older kept the last value as ``last``
        self.__dict__.update(_renamed(state, "_last", "last"))

    def learn_one(self, x: Mapping[FeatureName, float], y: float) -> None:
        self._last = y

    def predict_one(self, x: Mapping[FeatureName, float]) -> float | None:  # type: ignore[override]
        value: float | None = x.get(self.target)
        return self._last if value is None else value


class RollingMean(base.Regressor):
    """Time-weighted mean of the target over ``window`` seconds (one of the feature windows).

    With the target's features present (forecasts) it reads the mean from them;
    otherwise (nowcast) it keeps its own exponential mean of the learned values.

    Parameters:
        target: the name of the target among the features.
        window: the mean's time constant in seconds, one of the features' windows.

    >>> m = RollingMean("temp", window=600)
    >>> m.predict_one({"temp": 22.0, "temp_dev600": 0.5})
    21.5
    >>> m.learn_one({"dt": 0.0}, 20.0); m.learn_one({"dt": 600.0}, 21.0)
    >>> round(m.predict_one({"dt": 5.0}), 3)
    20.632
    """

    def __init__(self, target: str = "temp", window: int = 600) -> None:
        if window not in WINDOWS:
            raise ValueError(f"window must be one of {WINDOWS} seconds, got {window!r}")
        self.target = target
        self.window = window
        self._mean: float | None = None

    def __setstate__(self, state: dict[str, object]) -> None:
        # checkpoints of model-set format 3 and older kept the mean as ``mean``
        self.__dict__.update(_renamed(state, "_mean", "mean"))

    def learn_one(self, x: Mapping[FeatureName, float], y: float) -> None:
        if self._mean is None:
            self._mean = y
            return
        alpha = 1.0 - math.exp(-float(x.get("dt", 0.0)) / self.window)
        self._mean += alpha * (y - self._mean)

    def predict_one(self, x: Mapping[FeatureName, float]) -> float | None:  # type: ignore[override]
        value: float | None = x.get(self.target)
        if value is None:
            return self._mean
        dev: float = x[f"{self.target}_dev{self.window}"]
        return value - dev


class SeasonalNaive(base.Regressor):
    """The value one day before the target time: the mean of the 5-minute bin it falls in.

    It reads the device's day of history that the horizon features keep
    (:class:`~online_models.horizon.HorizonFeatures`), so it holds no state
    of its own (and has no parameter); ``None`` until a day of history exists.

    >>> from online_models.horizon import HorizonX
    >>> x = HorizonX(); x.anchor = 21.0; x.day_before = 20.4
    >>> SeasonalNaive().predict_one(x)
    20.4
    >>> SeasonalNaive().predict_one(HorizonX()) is None
    True
    """

    def learn_one(self, x: Mapping[FeatureName, float], y: float) -> None:
        pass

    def predict_one(self, x: Mapping[FeatureName, float]) -> float | None:  # type: ignore[override]
        value: float | None = getattr(x, "day_before", None)
        return value


def _renamed(state: dict[str, object], new: str, old: str) -> dict[str, object]:
    """``state`` with ``old`` renamed ``new`` (a pickle of the older layout), else as it is."""
    if new in state or old not in state:
        return state
    state = dict(state)
    state[new] = state.pop(old)
    return state

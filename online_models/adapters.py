"""Adapters that give every catalog model the same two verbs on the same data.

- :class:`Anchored` wraps a regressor so that it learns the *change* of the
  target from an anchor: the target's current value when the features carry
  it (forecasts), else the running mean of the values learned so far (the
  nowcast). A fresh model therefore starts as persistence (or the mean), and a
  linear model does not have to learn a 22 °C intercept by gradient steps.
  With ``scaled`` the regressor sees standardised, clipped features: the
  ``.scaled`` twin the device loop computed once for all models
  (:class:`~online_models.features.Features`), or, for a plain dict, its own
  :class:`~online_models.features.Standardizer`.
- :class:`Resampled` runs a River time-series model (SNARIMAX, Holt-Winters)
  on an irregular stream: readings are averaged into ``step``-second bins, a
  closed bin is fed to the model (gaps of up to ``max_fill`` bins are filled
  with the last mean, longer gaps are bridged without filling), and a
  forecast ``h`` seconds ahead is the model's forecast for the bin holding
  ``t + h``. With ``anchored`` (default) the forecast is the reading now plus
  the model's predicted change from the open bin to the target bin, so the
  freshest reading is never ignored. Forecasts are computed once per closed
  bin and cached: between bins a prediction is a lookup.

>>> from river import linear_model, optim
>>> m = Anchored(linear_model.LinearRegression(optimizer=optim.SGD(0.01)), "temp")
>>> m.predict_one({"temp": 22.0, "humidity": 50.0})
22.0
>>> m.learn_one({"temp": 22.0, "humidity": 50.0}, 22.1)
>>> round(m.predict_one({"temp": 22.0, "humidity": 50.0}), 4) > 22.0
True
"""

from __future__ import annotations

import math

from online_models.features import Standardizer

__all__ = ["Anchored", "Resampled"]


class Anchored:
    """A regressor that learns ``y - anchor`` (see the module docstring).

    >>> from online_models.baselines import Persistence
    >>> a = Anchored(Persistence("zero"), "temp")  # a model that predicts nothing
    >>> a.predict_one({"humidity": 50.0}) is None
    True
    """

    def __init__(self, regressor, target: str, scaled: bool = False) -> None:
        self.regressor = regressor
        self.target = target
        self.scaled = scaled
        self.own_scaler: Standardizer | None = None
        self.n = 0
        self.mean = 0.0

    def _inputs(self, x: dict, learning: bool) -> dict:
        if not self.scaled:
            return x
        shared = getattr(x, "scaled", None)
        if shared is not None:
            return shared
        if self.own_scaler is None:
            self.own_scaler = Standardizer()
        if learning:
            self.own_scaler.learn_one(x)
        return self.own_scaler.transform_one(x)

    def _anchor(self, x: dict) -> float | None:
        value = x.get(self.target)
        if value is not None:
            return value
        return self.mean if self.n else None

    def learn_one(self, x: dict, y: float) -> None:
        anchor = self._anchor(x)
        self.regressor.learn_one(self._inputs(x, True), y - (y if anchor is None else anchor))
        self.n += 1
        self.mean += (y - self.mean) / self.n

    def predict_one(self, x: dict) -> float | None:
        anchor = self._anchor(x)
        if anchor is None:
            return None
        delta = self.regressor.predict_one(self._inputs(x, False))
        if delta is None or not math.isfinite(delta):
            return None
        return anchor + delta


class Resampled:
    """A River time-series model fed with ``step``-second bin means (see the module docstring).

    Series models see ``{"ts": t}``; ``learn_one`` takes the reading's value.

    >>> import math
    >>> from river import time_series
    >>> m = Resampled(time_series.SNARIMAX(p=2, d=1, q=0), horizon=120, step=60, min_bins=3)
    >>> for i in range(600):
    ...     m.learn_one({"ts": 10.0 * i}, 20.0 + math.sin(i / 50))
    >>> 19.0 < m.predict_one({"ts": 5990.0}) < 21.5
    True
    """

    def __init__(
        self,
        model,
        horizon: int,
        step: int = 60,
        anchored: bool = True,
        min_bins: int = 30,
        max_fill: int = 60,
    ) -> None:
        self.model = model
        self.horizon = horizon
        self.step = step
        self.anchored = anchored
        self.min_bins = min_bins
        self.max_fill = max_fill
        self.k_max = int(math.ceil(horizon / step)) + 1
        self.open_bin: int | None = None
        self.open_sum = 0.0
        self.open_n = 0
        self.last_value: float | None = None
        self.last_mean: float | None = None
        self.closed = 0
        self.cache: list[float] | None = None  # forecasts for bins open_bin, open_bin+1, ...
        self.cache_bin: int | None = None

    def _feed(self, value: float) -> None:
        self.model.learn_one(value)
        self.closed += 1

    def learn_one(self, x: dict, y: float) -> None:
        b = int(x["ts"] // self.step)
        if self.open_bin is None:
            self.open_bin = b
        if b != self.open_bin:
            mean = self.open_sum / self.open_n
            self._feed(mean)
            for _ in range(min(b - self.open_bin - 1, self.max_fill)):
                self._feed(mean)
            self.last_mean = mean
            self.open_bin = b
            self.open_sum = 0.0
            self.open_n = 0
            self.cache = None
        self.open_sum += y
        self.open_n += 1
        self.last_value = y

    def predict_one(self, x: dict) -> float | None:
        if self.closed < self.min_bins or self.open_bin is None:
            return None
        if getattr(self.model, "level", True) is not True and not self.model.level:
            return None  # Holt-Winters: still gathering its first season
        if self.cache is None or self.cache_bin != self.open_bin:
            self.cache = [float(v) for v in self.model.forecast(horizon=self.k_max)]
            self.cache_bin = self.open_bin
        k = int((x["ts"] + self.horizon) // self.step) - self.open_bin
        k = min(max(k, 0), self.k_max - 1)
        value = self.cache[k]
        if self.anchored and self.last_value is not None:
            value = self.last_value + (value - self.cache[0])
        return value if math.isfinite(value) else None

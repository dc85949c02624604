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
  on an irregular stream: readings are averaged into bins as wide as the
  data's cadence and the horizon call for (:func:`fit_step`), a
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

__all__ = ["STEPS", "Anchored", "Resampled", "fit_step"]


class Anchored:
    """A regressor that learns ``y - anchor`` (see the module docstring).

    >>> from online_models.baselines import Persistence
    >>> a = Anchored(Persistence("zero"), "temp")  # a model that predicts nothing
    >>> a.predict_one({"humidity": 50.0}) is None
    True
    """

    weighted = False  # checkpoints written before this attribute existed load unweighted

    def __init__(
        self, regressor, target: str, scaled: bool = False, weighted: bool = False
    ) -> None:
        self.regressor = regressor
        self.target = target
        self.scaled = scaled
        self.weighted = weighted
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
            return self.own_scaler.learn_transform_one(x)
        return self.own_scaler.transform_one(x)

    def _anchor(self, x: dict) -> float | None:
        value = x.get(self.target)
        if value is not None:
            return value
        value = getattr(x, "anchor", None)  # horizon features carry the value now beside them
        if value is not None:
            return value
        return self.mean if self.n else None

    def learn_one(self, x: dict, y: float, w: float = 1.0) -> None:
        anchor = self._anchor(x)
        delta = y - (y if anchor is None else anchor)
        if self.weighted:
            self.regressor.learn_one(self._inputs(x, True), delta, w)
        else:
            self.regressor.learn_one(self._inputs(x, True), delta)
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


# bin widths a series model may use: each divides a day, so a daily season is whole bins
STEPS = (60, 120, 180, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 14400, 21600, 43200, 86400)


def fit_step(minimum: float, cadence: float, horizon: int) -> int:
    """The bin width for a series model: the smallest of :data:`STEPS` that is at least
    ``minimum``, the data's cadence and a twelfth of the horizon.

    A bin shorter than the cadence would be mostly filled in, and a forecast
    of a few hours needs no minute-by-minute bins.

    >>> fit_step(60, 5.2, 3600), fit_step(60, 3600.0, 21600), fit_step(60, 300.0, 900)
    (300, 3600, 300)
    """
    need = max(minimum, cadence, horizon / 12)
    for step in STEPS:
        if step >= need:
            return step
    return STEPS[-1]


class Resampled:
    """A River time-series model fed with bin means (see the module docstring).

    The bin width is chosen from the data: after ``probe`` readings the
    median interval between them gives the cadence, and :func:`fit_step`
    the width (at least ``step``); then ``build(step)`` makes the model
    (a daily ``season``, when given, becomes ``season // step`` bins). Until
    then it forecasts nothing. Series models see ``{"ts": t}``; ``learn_one``
    takes the reading's value.

    >>> import math
    >>> from river import time_series
    >>> m = Resampled(lambda step: time_series.SNARIMAX(p=2, d=1, q=0), horizon=120, min_bins=3)
    >>> for i in range(600):
    ...     m.learn_one({"ts": 10.0 * i}, 20.0 + math.sin(i / 50))
    >>> m.step, 19.0 < m.predict_one({"ts": 5990.0}) < 21.5
    (60, True)
    """

    def __init__(
        self,
        build,
        horizon: int,
        step: int = 60,
        anchored: bool = True,
        min_bins: int = 30,
        max_fill: int = 60,
        probe: int = 9,
    ) -> None:
        self.build = build
        self.model = None
        self.horizon = horizon
        self.min_step = step
        self.step: int | None = None
        self.anchored = anchored
        self.min_bins = min_bins
        self.max_fill = max_fill
        self.probe = probe
        self.times: list[float] = []
        self.k_max = 0
        self.open_bin: int | None = None
        self.open_sum = 0.0
        self.open_n = 0
        self.last_value: float | None = None
        self.last_mean: float | None = None
        self.closed = 0
        self.cache: list[float] | None = None  # forecasts for bins open_bin, open_bin+1, ...
        self.cache_bin: int | None = None

    def _start(self) -> None:
        times = self.times
        gaps = sorted(b - a for a, b in zip(times, times[1:], strict=False))
        step = fit_step(self.min_step, gaps[len(gaps) // 2], self.horizon)
        self.step = step
        self.model = self.build(step)
        self.k_max = int(math.ceil(self.horizon / step)) + 1
        self.times = []

    def _feed(self, value: float) -> None:
        self.model.learn_one(value)
        self.closed += 1

    def learn_one(self, x: dict, y: float) -> None:
        if self.model is None:
            self.times.append(x["ts"])
            self.last_value = y
            if len(self.times) < self.probe:
                return
            self._start()
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
        if self.model is None or self.closed < self.min_bins or self.open_bin is None:
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
        return value if math.isfinite(value) else float("nan")

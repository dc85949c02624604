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

import functools
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from river import base
from river.base.typing import FeatureName
from river.time_series.base import Forecaster

from online_models.features import Standardizer

__all__ = ["STEPS", "Anchored", "Resampled", "fit_step"]


class Anchored(base.Wrapper[base.Regressor], base.Regressor):
    """A regressor that learns ``y - anchor`` (see the module docstring).

    A River wrapper: the parameters below are its ``__init__`` arguments under the same
    names (``clone()`` gives a fresh one, the regressor cloned), the learned state (the
    running mean, its own scaler) is private.

    Parameters:
        regressor: the model that learns the change.
        target: the name of the target among the features (its value is the anchor).
        scaled: the regressor sees standardised features.
        weighted: ``learn_one``'s sample weight ``w`` is passed on to the regressor.

    >>> from online_models.baselines import Persistence
    >>> a = Anchored(Persistence("zero"), "temp")  # a model that predicts nothing
    >>> a.predict_one({"humidity": 50.0}) is None
    True
    """

    def __init__(
        self, regressor: base.Regressor, target: str, scaled: bool = False, weighted: bool = False
    ) -> None:
        self.regressor = regressor
        self.target = target
        self.scaled = scaled
        self.weighted = weighted
        self._scaler: Standardizer | None = None
        self._n = 0
        self._mean = 0.0

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        from online_models.ridge import ForgettingRidge

        # River's checks run regressors on TrumpApproval: anchored at one of its polls
        yield {"regressor": ForgettingRidge(), "target": "gallup", "weighted": True}

    def _unit_test_skips(self) -> set[str]:
        # its verbs take River's sample weight ``w`` and no other keyword: nothing to pass
        # through (River's own TargetTransformRegressor takes no keywords either)
        return {"check_wrapper_accepts_kwargs"}

    def __setstate__(self, state: dict[str, object]) -> None:
        """Load a pickle of either layout: checkpoints of model-set format 3 and older kept the
        learned state as ``own_scaler``, ``n`` and ``mean`` (and older ones had no ``weighted``:
        they load unweighted)."""
        if "_n" not in state:
            state = dict(state)
            state["_scaler"] = state.pop("own_scaler")
            state["_n"] = state.pop("n")
            state["_mean"] = state.pop("mean")
            state.setdefault("weighted", False)
        self.__dict__.update(state)

    @property
    def _wrapped_model(self) -> base.Regressor:
        return self.regressor

    def _inputs(self, x: Mapping[FeatureName, float], learning: bool) -> dict[FeatureName, Any]:
        """What the regressor sees: ``x`` (a dict), or its standardised twin (a str -> float
        dict: River types a regressor's input ``dict[Hashable, Any]``)."""
        if not self.scaled:
            return x  # type: ignore[return-value]
        shared: dict[FeatureName, Any] | None = getattr(x, "scaled", None)
        if shared is not None:
            return shared
        if self._scaler is None:
            self._scaler = Standardizer()
        if learning:
            return self._scaler.learn_transform_one(x)  # type: ignore[arg-type, return-value]
        return self._scaler.transform_one(x)  # type: ignore[arg-type, return-value]

    def _anchor(self, x: Mapping[FeatureName, float]) -> float | None:
        value: float | None = x.get(self.target)
        if value is not None:
            return value
        now: float | None = getattr(x, "anchor", None)  # horizon features carry the value now
        if now is not None:
            return now
        return self._mean if self._n else None

    def learn_one(self, x: Mapping[FeatureName, float], y: float, w: float = 1.0) -> None:
        anchor = self._anchor(x)
        delta = y - (y if anchor is None else anchor)
        if self.weighted:
            # a weighted regressor (ForgettingRidge) takes River's sample weight
            self.regressor.learn_one(self._inputs(x, True), delta, w)  # type: ignore[call-arg]
        else:
            self.regressor.learn_one(self._inputs(x, True), delta)
        self._n += 1
        self._mean += (y - self._mean) / self._n

    def predict_one(self, x: Mapping[FeatureName, float]) -> float | None:  # type: ignore[override]
        anchor = self._anchor(x)
        if anchor is None:
            return None
        delta: float | None = self.regressor.predict_one(self._inputs(x, False))
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


class Resampled(base.Regressor):
    """A River time-series model fed with bin means (see the module docstring).

    The bin width is chosen from the data: after ``probe`` readings the
    median interval between them gives the cadence, and :func:`fit_step`
    the width (:attr:`bin_width`, at least ``step``); then ``build(bin_width)`` makes the
    model (a daily ``season``, when given, becomes ``season // bin_width`` bins). Until
    then it forecasts nothing. Series models see ``{"ts": t}``; ``learn_one``
    takes the reading's value.

    A River regressor on ``{"ts": t}``: the parameters below are its ``__init__``
    arguments under the same names (``clone()`` gives a fresh one), the bins, the model
    built and its forecasts are private.

    Parameters:
        build: makes the series model for a bin width in seconds.
        horizon: the forecast horizon in seconds.
        step: the narrowest bin width in seconds.
        anchored: forecast the reading now plus the model's predicted change.
        min_bins: closed bins before the first forecast.
        max_fill: the longest gap, in bins, filled with the last mean.
        probe: readings whose median interval gives the cadence.

    >>> import math
    >>> from river import time_series
    >>> m = Resampled(lambda step: time_series.SNARIMAX(p=2, d=1, q=0), horizon=120, min_bins=3)
    >>> for i in range(600):
    ...     m.learn_one({"ts": 10.0 * i}, 20.0 + math.sin(i / 50))
    >>> m.bin_width, 19.0 < m.predict_one({"ts": 5990.0}) < 21.5
    (60, True)
    """

    def __init__(
        self,
        build: Callable[[int], Forecaster],
        horizon: int,
        step: int = 60,
        anchored: bool = True,
        min_bins: int = 30,
        max_fill: int = 60,
        probe: int = 9,
    ) -> None:
        self.build = build
        self.horizon = horizon
        self.step = step
        self.anchored = anchored
        self.min_bins = min_bins
        self.max_fill = max_fill
        self.probe = probe
        self._model: Forecaster | None = None
        self._step = 0  # the bin width, once chosen
        self._times: list[float] = []
        self._k_max = 0
        self._open_bin: int | None = None
        self._open_sum = 0.0
        self._open_n = 0
        self._last_value: float | None = None
        self._last_mean: float | None = None
        self._closed = 0
        self._cache: list[float] | None = None  # forecasts for bins open_bin, open_bin+1, ...
        self._cache_bin: int | None = None

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        from river import time_series

        yield {"build": functools.partial(time_series.SNARIMAX, 2, 1, 0), "horizon": 120}

    def _unit_test_skips(self) -> set[str]:
        # its one feature is the time: dropping three features at random leaves none
        return {"check_emerging_features", "check_disappearing_features"}

    def __setstate__(self, state: dict[str, object]) -> None:
        """Load a pickle of either layout: checkpoints of model-set formats 2 and 3 kept the
        narrowest width as ``min_step``, the chosen one as ``step`` (None until chosen), and
        the learned state under public names; format 1 had one fixed width, ``step``, and no
        ``build`` nor ``probe`` (:func:`~online_models.device.upgrade` gives it the catalog's)."""
        if "_model" not in state:
            state = {(f"_{k}" if k in _RESAMPLED_STATE else k): v for k, v in state.items()}
            state["step"] = state.pop("min_step", state["_step"])
            if state["_step"] is None:
                state["_step"] = 0
            state.setdefault("_times", [])
        self.__dict__.update(state)

    @property
    def bin_width(self) -> int | None:
        """The bin width in seconds, once chosen from the data (None before)."""
        return self._step or None

    def _start(self) -> Forecaster:
        times = self._times
        gaps = sorted(b - a for a, b in zip(times, times[1:], strict=False))
        step = fit_step(self.step, gaps[len(gaps) // 2], self.horizon)
        self._step = step
        self._model = model = self.build(step)
        self._k_max = int(math.ceil(self.horizon / step)) + 1
        self._times = []
        return model

    def _feed(self, model: Forecaster, value: float) -> None:
        model.learn_one(value)
        self._closed += 1

    def learn_one(self, x: Mapping[FeatureName, float], y: float) -> None:
        model = self._model
        if model is None:
            self._times.append(x["ts"])
            self._last_value = y
            if len(self._times) < self.probe:
                return
            model = self._start()
        b = int(x["ts"] // self._step)
        if self._open_bin is None:
            self._open_bin = b
        if b != self._open_bin:
            mean = self._open_sum / self._open_n
            self._feed(model, mean)
            for _ in range(min(b - self._open_bin - 1, self.max_fill)):
                self._feed(model, mean)
            self._last_mean = mean
            self._open_bin = b
            self._open_sum = 0.0
            self._open_n = 0
            self._cache = None
        self._open_sum += y
        self._open_n += 1
        self._last_value = y

    def predict_one(self, x: Mapping[FeatureName, float]) -> float | None:  # type: ignore[override]
        model = self._model
        if model is None or self._closed < self.min_bins or self._open_bin is None:
            return None
        level = getattr(model, "level", True)
        if level is not True and not level:
            return None  # Holt-Winters: still gathering its first season
        if self._cache is None or self._cache_bin != self._open_bin:
            self._cache = [float(v) for v in model.forecast(horizon=self._k_max)]
            self._cache_bin = self._open_bin
        k = int((x["ts"] + self.horizon) // self._step) - self._open_bin
        k = min(max(k, 0), self._k_max - 1)
        value = self._cache[k]
        if self.anchored and self._last_value is not None:
            value = self._last_value + (value - self._cache[0])
        return value if math.isfinite(value) else float("nan")


# the learned state, kept under these public names by checkpoints of model-set format 3 and older
_RESAMPLED_STATE = frozenset(
    (
        "model", "step", "times", "k_max", "open_bin", "open_sum", "open_n", "last_value",
        "last_mean", "closed", "cache", "cache_bin",
    )
)  # fmt: skip

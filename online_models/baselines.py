"""Baselines every honest report shows beside the models: last value, rolling mean, seasonal naive.

They answer to the same two verbs as the River models (``learn_one``,
``predict_one``) and return ``None`` while they cannot predict yet.

- :class:`Persistence`: the last known value of the target (for a forecast,
  the value at the time the forecast is made; for the nowcast, the previous
  reading's value).
- :class:`RollingMean`: the time-weighted exponential mean of the target over
  ``window`` seconds.
- :class:`SeasonalNaive`: the value one season (24 h) before the target time,
  from a ring of per-``step`` bin means; ``None`` until a day of history exists.
  It is a *series* model: it sees ``{"ts": t}`` and learns every reading's value.

>>> p = Persistence("temp")
>>> p.predict_one({"temp": 22.4, "humidity": 50.0})
22.4
>>> p.learn_one({"humidity": 50.0}, 22.5)
>>> p.predict_one({"humidity": 50.0})  # nowcast view: no current temp, so the last one
22.5
"""

from __future__ import annotations

import math

from online_models.features import WINDOWS

__all__ = ["Persistence", "RollingMean", "SeasonalNaive"]


class Persistence:
    """Last value: the target now (forecast) or at the previous reading (nowcast).

    >>> Persistence("temp").predict_one({"humidity": 50.0}) is None
    True
    """

    def __init__(self, target: str = "temp") -> None:
        self.target = target
        self.last: float | None = None

    def learn_one(self, x: dict, y: float) -> None:
        self.last = y

    def predict_one(self, x: dict) -> float | None:
        value = x.get(self.target)
        return self.last if value is None else value


class RollingMean:
    """Time-weighted mean of the target over ``window`` seconds (one of the feature windows).

    With the target's features present (forecasts) it reads the mean from them;
    otherwise (nowcast) it keeps its own exponential mean of the learned values.

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
        self.mean: float | None = None

    def learn_one(self, x: dict, y: float) -> None:
        if self.mean is None:
            self.mean = y
            return
        alpha = 1.0 - math.exp(-float(x.get("dt", 0.0)) / self.window)
        self.mean += alpha * (y - self.mean)

    def predict_one(self, x: dict) -> float | None:
        value = x.get(self.target)
        if value is None:
            return self.mean
        return value - x[f"{self.target}_dev{self.window}"]


class SeasonalNaive:
    """The value one ``season`` before the target time (mean of its ``step``-second bin).

    Bounded: one slot per bin of the season (1,440 slots for a day of minutes).

    >>> s = SeasonalNaive(horizon=60, season=3600, step=60)
    >>> s.learn_one({"ts": 0.0}, 20.0); s.learn_one({"ts": 30.0}, 21.0)
    >>> s.predict_one({"ts": 3540.0})  # target 3600 s: one season after bin [0, 60)
    20.5
    >>> s.predict_one({"ts": 10.0}) is None  # nothing a season before
    True
    """

    def __init__(self, horizon: int, season: int = 86_400, step: int = 60) -> None:
        if season % step:
            raise ValueError(f"season ({season} s) must be a multiple of step ({step} s)")
        self.horizon = horizon
        self.season = season
        self.step = step
        n = season // step
        self.bins = [-1] * n
        self.sums = [0.0] * n
        self.counts = [0] * n

    def learn_one(self, x: dict, y: float) -> None:
        b = int(x["ts"] // self.step)
        slot = b % len(self.bins)
        if self.bins[slot] != b:
            self.bins[slot] = b
            self.sums[slot] = 0.0
            self.counts[slot] = 0
        self.sums[slot] += y
        self.counts[slot] += 1

    def predict_one(self, x: dict) -> float | None:
        b = int((x["ts"] + self.horizon - self.season) // self.step)
        slot = b % len(self.bins)
        if self.bins[slot] != b:
            return None
        return self.sums[slot] / self.counts[slot]

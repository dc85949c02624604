"""Per-device features, computed online with bounded state (O(1) per reading).

:class:`FeatureState` turns each reading into a flat dict of floats using
only that reading and the ones before it:

- co-sensor values: ``co``, ``humidity``, ``lpg``, ``smoke``, ``temp``, ``light``, ``motion``,
  and the extra numeric fields the task declares (``TaskConfig.extra_features``, e.g. ``pressure``);
- time of day and day of week as sine/cosine (``tod_sin``, ``tod_cos``, ``dow_sin``, ``dow_cos``, UTC);
- time since the previous reading, ``dt`` (seconds, capped at a day) and ``gap`` (1.0 after more than 5 min);
- for temperature, humidity, the target and each declared extra: the change since the
  previous value (``<v>_d1``) and, per window ``w`` in :data:`WINDOWS` (seconds), the
  deviation from the time-weighted exponential mean (``<v>_dev<w>``) and the
  exponential standard deviation (``<v>_sd<w>``): rolling means and spreads
  with a constant-size state, correct under irregular intervals.

**Any subset of sensors.** A sensor the reading does not carry has no feature: the key
is missing from the dict, never a made-up value (the light and motion flags too: only
when reported), and so are its change, deviations and spreads. Each tracked variable is
its own irregularly sampled series: its history advances only when it is reported, by
the time since *its own* last value, exactly as the whole device's does after a silence.
When a sensor comes back after an absence, ``<v>_d1`` is the change since its last value
and each window's mean forgets in proportion to the absence (``1 - exp(-absence / w)``):
after a missed reading or two the history continues, after hours it has in effect
restarted at the new value; no threshold decides which. A variable seen for the first
time starts as at a device's first reading (change 0, deviation 0, spread 0). Declared
extras get the same history: a pressure's value says little about the weather, its
tendency (``pressure_dev3600``: the change against its hourly mean) is the classic
predictor. Readings with all seven sensors give exactly the features they always did.

:func:`nowcast_view` removes everything derived from the target (its value,
changes, deviations and spreads): the nowcast is a virtual sensor that never
sees the thermometer it replaces.

>>> from telemetry.reading import Reading
>>> fs = FeatureState(target="temp")
>>> x1 = fs.update(Reading(1594512000.0, "d", 0.005, 51.0, False, 0.007, False, 0.02, 22.5))
>>> x2 = fs.update(Reading(1594512004.0, "d", 0.005, 51.2, True, 0.007, False, 0.02, 22.6))
>>> x2["dt"], round(x2["temp_d1"], 3), x2["light"]
(4.0, 0.1, 1.0)
>>> sorted(k for k in nowcast_view(x2, "temp") if k.startswith("temp"))
[]
>>> x3 = fs.update(Reading(1594512008.0, "d", temp=22.7))  # a temperature alone
>>> sorted(k for k in x3 if not k.startswith(("temp", "tod", "dow")))
['dt', 'gap']
"""

from __future__ import annotations

import functools
import math
import re

from telemetry.reading import Reading

__all__ = [
    "TIME_FEATURES",
    "WINDOWS",
    "FeatureState",
    "Features",
    "Standardizer",
    "clashes",
    "nowcast_view",
    "target_keys",
]

WINDOWS = (60, 600, 3600)
DAY = 86_400.0
WEEK = 7 * DAY
MAX_DT = DAY
GAP_S = 300.0
_TAU = 2.0 * math.pi
TIME_FEATURES = ("tod_sin", "tod_cos", "dow_sin", "dow_cos", "dt", "gap")
_HISTORY_KEY = re.compile(r".*_(?:d1|dev[0-9]+|sd[0-9]+)")


def clashes(name: str) -> bool:
    """True when a field named ``name`` would collide with a derived feature's name
    (a time feature, or a name like ``<v>_d1``, ``<v>_dev600``, ``<v>_sd60``).

    >>> clashes("pressure"), clashes("dt"), clashes("pressure_dev600")
    (False, True, True)
    """
    return name in TIME_FEATURES or _HISTORY_KEY.fullmatch(name) is not None


def _tracked(target: str, extras: tuple[str, ...] = ()) -> tuple[str, ...]:
    out = ["temp", "humidity"]
    for name in (target, *extras):
        if name not in out:
            out.append(name)
    return tuple(out)


@functools.cache
def target_keys(target: str) -> frozenset[str]:
    """Every feature name derived from ``target`` (what the nowcast must not see)."""
    keys = {target, f"{target}_d1"}
    for w in WINDOWS:
        keys.add(f"{target}_dev{w}")
        keys.add(f"{target}_sd{w}")
    return frozenset(keys)


def nowcast_view(x: dict[str, float], target: str) -> dict[str, float]:
    """``x`` without the target's value and history (the nowcast's inputs).

    A :class:`Features` keeps its scaled twin, filtered the same way.
    """
    banned = target_keys(target)
    out = Features({k: v for k, v in x.items() if k not in banned})
    scaled = getattr(x, "scaled", None)
    if scaled is not None:
        out.scaled = {k: v for k, v in scaled.items() if k not in banned}
    return out


class Features(dict[str, float]):
    """A feature dict that may carry its standardised twin in ``.scaled``.

    The device loop standardises each reading's features once (one shared
    :class:`Standardizer`) instead of once per model and horizon; models
    declared with ``scale = true`` read ``x.scaled``.

    >>> x = Features({"a": 1.0}); x.scaled = {"a": 0.0}
    >>> x["a"], x.scaled["a"]
    (1.0, 0.0)
    """

    scaled: dict[str, float] | None = None
    ts: float | None = None  # the reading's time (the batch reference counts its first day by it)


class Standardizer:
    """Running mean and variance per feature; ``transform`` gives z-scores clipped to ``±limit``.

    Clipping matters: rare binary features (a gap, a motion event) would
    otherwise get z-scores of 30 and more and throw SGD off its course.

    >>> st = Standardizer(limit=3.0)
    >>> for v in (1.0, 2.0, 3.0):
    ...     st.learn_one({"a": v, "b": 5.0})
    >>> {k: round(v, 3) for k, v in st.transform_one({"a": 3.0, "b": 5.0, "c": 1.0}).items()}
    {'a': 1.225, 'b': 0.0, 'c': 0.0}
    >>> st.transform_one({"a": 100.0})["a"]
    3.0
    """

    def __init__(self, limit: float = 3.0) -> None:
        self.limit = limit
        self.stats: dict[str, list[float]] = {}  # key -> [n, mean, m2]

    def learn_one(self, x: dict[str, float]) -> None:
        self.learn_transform_one(x)

    def learn_transform_one(self, x: dict[str, float]) -> dict[str, float]:
        """``learn_one(x)`` then ``transform_one(x)`` in one pass (the same figures).

        >>> a, b = Standardizer(), Standardizer()
        >>> for v in (1.0, 2.0, 4.0):
        ...     a.learn_one({"a": v}); za = a.transform_one({"a": v}); zb = b.learn_transform_one({"a": v})
        >>> za == zb
        True
        """
        stats = self.stats
        limit = self.limit
        sqrt = math.sqrt
        out = {}
        for k, v in x.items():
            st = stats.get(k)
            if st is None:
                stats[k] = [1.0, v, 0.0]
                out[k] = 0.0
                continue
            n = st[0] + 1.0
            d = v - st[1]
            mean = st[1] + d / n
            st[0] = n
            st[1] = mean
            m2 = st[2] + d * (v - mean)
            st[2] = m2
            if m2 <= 0.0:
                out[k] = 0.0
                continue
            z = (v - mean) / sqrt(m2 / n)
            out[k] = limit if z > limit else -limit if z < -limit else z
        return out

    def transform_one(self, x: dict[str, float]) -> dict[str, float]:
        stats = self.stats
        limit = self.limit
        out = {}
        for k, v in x.items():
            st = stats.get(k)
            if st is None or st[2] <= 0.0:
                out[k] = 0.0
                continue
            z = (v - st[1]) / math.sqrt(st[2] / st[0])
            out[k] = limit if z > limit else -limit if z < -limit else z
        return out


class FeatureState:
    """Bounded per-device state that turns readings into feature dicts.

    ``update(reading)`` must be called in time order, once per learned reading
    (the device loop drops duplicates, late readings and glitches before).
    The state is a few floats per tracked variable and window, whatever the
    stream's length. ``extras`` are the extra numeric fields that become
    features (``TaskConfig.extra_features``); other extras are ignored.

    >>> from telemetry.reading import Reading
    >>> fs = FeatureState()
    >>> for i in range(3):
    ...     x = fs.update(Reading(1594512000.0 + 5 * i, "d", 0.005, 50.0, False, 0.007, False, 0.02, 22.0 + i))
    >>> round(x["temp_dev60"], 3) > 0, x["dt"]
    (True, 5.0)
    >>> fs = FeatureState(extras=("pressure",))
    >>> x = fs.update(Reading(1594512000.0, "d", temp=21.0, extra=(("pressure", 1013.2), ("wind", 3.0))))
    >>> x["pressure"], x["pressure_d1"], "wind" in x, "humidity" in x
    (1013.2, 0.0, False, False)
    """

    def __init__(self, target: str = "temp", extras: tuple[str, ...] = ()) -> None:
        self.target = target
        self.extras = tuple(extras)
        self.tracked = _tracked(target, self.extras)
        self.last_ts: float | None = None
        self.prev: dict[str, float] = {}  # per tracked variable: its last value
        self.seen: dict[str, float] = {}  # per tracked variable: the time of its last value
        # per variable, per window: [mean, variance]
        self.ew: dict[str, list[list[float]]] = {}

    def update(self, reading: Reading) -> dict[str, float]:
        """Fold ``reading`` into the state and return its features (past and present only)."""
        ts = reading.ts
        last_ts = self.last_ts
        dt = 0.0 if last_ts is None else min(max(ts - last_ts, 0.0), MAX_DT)
        day_phase = (ts % DAY) / DAY * _TAU
        week_phase = ((ts + 4 * DAY) % WEEK) / WEEK * _TAU  # epoch day 0 was a Thursday
        co = reading.co
        humidity = reading.humidity
        lpg = reading.lpg
        smoke = reading.smoke
        temp = reading.temp
        light = reading.light
        motion = reading.motion
        if (
            co is not None
            and humidity is not None
            and lpg is not None
            and smoke is not None
            and temp is not None
            and light is not None
            and motion is not None
        ):  # all seven sensors: the common case, in one literal
            x: dict[str, float] = {
                "co": co,
                "humidity": humidity,
                "lpg": lpg,
                "smoke": smoke,
                "temp": temp,
                "light": 1.0 if light else 0.0,
                "motion": 1.0 if motion else 0.0,
            }
        else:
            x = {}
            for key, value in (
                ("co", co), ("humidity", humidity), ("lpg", lpg), ("smoke", smoke), ("temp", temp),
            ):  # fmt: skip
                if value is not None:
                    x[key] = value
            if light is not None:
                x["light"] = 1.0 if light else 0.0
            if motion is not None:
                x["motion"] = 1.0 if motion else 0.0
        x["tod_sin"] = math.sin(day_phase)
        x["tod_cos"] = math.cos(day_phase)
        x["dow_sin"] = math.sin(week_phase)
        x["dow_cos"] = math.cos(week_phase)
        x["dt"] = dt
        x["gap"] = 1.0 if dt > GAP_S else 0.0
        if self.extras and reading.extra:
            extras = self.extras
            for key, value in reading.extra:
                if key in extras:
                    x[key] = value
        alphas = [1.0 - math.exp(-dt / w) for w in WINDOWS]  # for variables seen at last_ts
        prev = self.prev
        seen = self.seen
        ew = self.ew
        sqrt = math.sqrt
        for name in self.tracked:
            value = x.get(name)
            if value is None:
                continue  # not reported: no features, the history waits
            d1_key, window_keys = _keys(name)
            since = seen.get(name)
            if since is None:  # first sight: as at a device's first reading
                x[d1_key] = 0.0
                states = ew[name] = [[value, 0.0] for _ in WINDOWS]
                a = _NO_TIME
            else:
                x[d1_key] = value - prev[name]
                states = ew[name]
                if since == last_ts:
                    a = alphas
                else:  # back after an absence: its own time since its last value
                    own = min(max(ts - since, 0.0), MAX_DT)
                    a = [1.0 - math.exp(-own / w) for w in WINDOWS]
            prev[name] = value
            seen[name] = ts
            for alpha, st, (dev_key, sd_key) in zip(a, states, window_keys, strict=True):
                diff = value - st[0]
                incr = alpha * diff
                st[0] += incr
                st[1] = (1.0 - alpha) * (st[1] + diff * incr)
                x[dev_key] = value - st[0]
                x[sd_key] = sqrt(st[1]) if st[1] > 0.0 else 0.0
        self.last_ts = ts
        return x


_NO_TIME = [0.0] * len(WINDOWS)


@functools.cache
def _keys(name: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Feature names of a tracked variable: change, then (deviation, spread) per window."""
    return f"{name}_d1", tuple((f"{name}_dev{w}", f"{name}_sd{w}") for w in WINDOWS)

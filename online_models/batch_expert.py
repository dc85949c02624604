"""The batch expert: gradient-boosted trees on lag and horizon features, retrained on a schedule.

Where :class:`~online_models.batch.FrozenForest` is trained once on a device's first
day, the batch expert is what a data team builds offline: a gradient-boosted model
(scikit-learn's ``HistGradientBoostingRegressor``, LightGBM's histogram algorithm)
trained on all the past readings, predicting the **change** of the target over the
horizon, and retrained every few days (``iotcast retrain``). It then joins the served
forecast as one more expert of an online weighting (:mod:`online_models.combination`).

The pieces, each plain and picklable:

- :class:`PairBuilder` turns one device's readings, in time order, into the examples the
  model learns from and predicts on, with no look-ahead: on each horizon's forecast grid
  (``h / per_horizon`` seconds, as the processor's), the features of a forecast made now
  (:data:`FEATURES`), and, once the first reading at or after ``t + h`` arrives, the
  change the forecast should have said. The features are the device's horizon features
  (:class:`~online_models.horizon.HorizonFeatures`: recent means, the daily cycle's change,
  the day before), the horizon, the time of day, and two device features (the level now,
  the device's cadence), so that one model serves a fleet.
- :func:`fit` trains the trees on such examples; :class:`BatchExpert` is the fitted
  model, its trees copied to plain lists (a prediction walks them in Python: no
  scikit-learn per-call overhead, nothing but lists in the pickle).

>>> import math
>>> pb = PairBuilder((3600,), per_horizon=1)
>>> rows = []
>>> for i in range(24 * 20):  # 20 days of an hourly daily cycle
...     t = 1_600_000_000.0 + 3600 * i
...     rows += pb.add(t, 20.0 + 3 * math.sin(2 * math.pi * t / 86_400)).done
>>> len(rows) > 400, len(rows[0].x) == len(FEATURES)
(True, True)
>>> expert = fit(rows, max_iter=50)
>>> made = pb.add(t + 3600, 20.0 + 3 * math.sin(2 * math.pi * (t + 3600) / 86_400)).made
>>> h, x, now = made[0]
>>> truth = 20.0 + 3 * math.sin(2 * math.pi * (t + 7200) / 86_400)
>>> abs(expert.forecast(x, now) - truth) < 0.1
True
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from online_models.horizon import DAY, HorizonFeatures
from online_models.horizon import NAMES as HORIZON_NAMES

__all__ = [
    "FEATURES",
    "BatchExpert",
    "Example",
    "Examples",
    "PairBuilder",
    "Step",
    "features_of",
    "fit",
]

# the horizon features, then the horizon (hours), the time of day now, and the device features
FEATURES: tuple[str, ...] = (*HORIZON_NAMES, "h_hours", "tod_c", "tod_s", "level", "cadence_log")
_TAU = 2.0 * math.pi
_NAN = math.nan

# trees' defaults, argued in docs/forecasting.md ("The batch expert"): the absolute loss
# because the forecasts are judged by their MAE (and the ensemble weighs by absolute error);
# no early stopping (its validation split is random, and neighbours in a series are alike)
DEFAULTS: dict[str, object] = {
    "loss": "absolute_error",
    "max_iter": 100,
    "learning_rate": 0.1,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 40,
    "l2_regularization": 1.0,
    "early_stopping": False,
    "random_state": 0,
}


@dataclass(frozen=True, slots=True)
class Example:
    """One forecast's features ``x`` (:data:`FEATURES` order), made at ``ts`` for horizon
    ``h`` on ``device``, and ``dy``: the target's change from then to the first reading at
    or after ``ts + h``."""

    device: str
    h: int
    ts: float
    x: tuple[float, ...]
    dy: float


class Examples:
    """Examples kept by column, for the training job: the horizons, the times made, the
    features (one row of ``width`` floats each) and the changes, in flat arrays. About 160
    bytes an example, where a list of :class:`Example` objects took about 1.3 KB: a
    device-week of 5-second data is 165,000 examples (``bench/retrain.py``).

    >>> ex = Examples(width=2)
    >>> ex.extend([Example("d", 60, 0.0, (1.0, 2.0), 0.5), Example("d", 900, 1.0, (3.0, 4.0), -1.0)])
    >>> len(ex), ex.features().tolist(), ex.changes().tolist()
    (2, [[1.0, 2.0], [3.0, 4.0]], [0.5, -1.0])
    >>> len(ex.where(ex.horizons() == 900)), len(Examples.joined([ex, ex])), len(ex.where(ex.times() > 5))
    (1, 4, 0)
    """

    __slots__ = ("_dy", "_h", "_ts", "_x", "width")

    def __init__(self, width: int = len(FEATURES)) -> None:
        self.width = width
        self._h = array("i")
        self._ts = array("d")
        self._x = array("d")
        self._dy = array("d")

    def extend(self, examples: Iterable[Example]) -> None:
        for e in examples:
            self._h.append(e.h)
            self._ts.append(e.ts)
            self._x.extend(e.x)
            self._dy.append(e.dy)

    def __len__(self) -> int:
        return len(self._dy)

    def horizons(self) -> np.ndarray:
        return _view(self._h, np.int32)

    def times(self) -> np.ndarray:
        return _view(self._ts)

    def features(self) -> np.ndarray:
        """The feature rows, ``len(self)`` by ``width`` (a view: do not change it)."""
        return _view(self._x).reshape(-1, self.width)

    def changes(self) -> np.ndarray:
        return _view(self._dy)

    def where(self, mask: np.ndarray) -> Examples:
        """The examples where ``mask`` (one bool per example) holds, as a new table."""
        return self._of(
            self.horizons()[mask], self.times()[mask], self.features()[mask], self.changes()[mask]
        )

    def with_changes(self, dy: np.ndarray) -> Examples:
        """The same examples with other changes (``len(self)`` of them)."""
        return self._of(self.horizons(), self.times(), self.features(), dy)

    @classmethod
    def joined(cls, parts: Iterable[Examples]) -> Examples:
        """One table of ``parts``, in order (all of one width)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls()
        return parts[0]._of(
            np.concatenate([p.horizons() for p in parts]),
            np.concatenate([p.times() for p in parts]),
            np.concatenate([p.features() for p in parts]),
            np.concatenate([p.changes() for p in parts]),
        )

    def _of(self, h: np.ndarray, ts: np.ndarray, x: np.ndarray, dy: np.ndarray) -> Examples:
        out = Examples(self.width)
        for column, values, dtype in (
            (out._h, h, np.int32), (out._ts, ts, float), (out._x, x, float), (out._dy, dy, float)
        ):  # fmt: skip
            if len(values):  # (an empty view cannot be cast to bytes)
                column.frombytes(np.ascontiguousarray(values, dtype=dtype).data.cast("B"))
        return out


def _view(column: array[Any], dtype: type = float) -> np.ndarray:
    """A column as an array without a copy (numpy cannot view an empty buffer)."""
    return np.frombuffer(column, dtype=dtype) if column else np.zeros(0, dtype)


@dataclass(frozen=True, slots=True)
class Step:
    """What one reading gave :class:`PairBuilder`: ``made``, the forecasts made now
    (horizon, features, value now); ``done``, the examples whose target time came."""

    made: tuple[tuple[int, tuple[float, ...], float], ...]
    done: tuple[Example, ...]


class PairBuilder:
    """One device's forecasts on each horizon's grid and, when their time comes, their examples.

    ``horizons`` in seconds (0 is ignored), ``per_horizon`` forecasts per horizon (the
    grid is ``h / per_horizon`` seconds, at most one forecast a reading), ``device`` names
    the examples. Call :meth:`add` with each reading in time order (later readings at or
    before the last one are ignored).

    >>> pb = PairBuilder((60,), per_horizon=1)
    >>> pb.add(0.0, 20.0).made[0][0], pb.add(30.0, 20.5).made, pb.add(60.0, 21.0).done[0].dy
    (60, (), 1.0)
    """

    def __init__(self, horizons: Iterable[int], per_horizon: int = 60, device: str = "") -> None:
        self.horizons = tuple(sorted({int(h) for h in horizons if h > 0}))
        if not self.horizons:
            raise ValueError("the batch expert needs a forecast horizon > 0")
        self.device = device
        self.every = {h: h / max(int(per_horizon), 1) for h in self.horizons}
        self.next_at = dict.fromkeys(self.horizons, -math.inf)
        self.hf = HorizonFeatures(self.horizons)
        # per horizon, the forecasts waiting for their target time (in target order)
        self.pending: dict[int, deque[tuple[float, tuple[float, ...], float]]] = {
            h: deque() for h in self.horizons
        }
        self.last_ts: float | None = None

    def add(self, ts: float, y: float) -> Step:
        """Fold one reading in: the examples it completes, then the forecasts made at it."""
        if self.last_ts is not None and ts <= self.last_ts:
            return Step((), ())
        self.last_ts = ts
        done: list[Example] = []
        for h, waiting in self.pending.items():
            while waiting and waiting[0][0] + h <= ts:
                made_ts, x, now = waiting.popleft()
                done.append(Example(self.device, h, made_ts, x, y - now))
        hf = self.hf
        hf.add(ts, y)
        made: list[tuple[int, tuple[float, ...], float]] = []
        for h in self.horizons:
            if ts < self.next_at[h]:
                continue
            every = self.every[h]
            self.next_at[h] = (ts // every + 1.0) * every
            x = features(hf, h, ts, y)
            made.append((h, x, y))
            self.pending[h].append((ts, x, y))
        return Step(tuple(made), tuple(done))


def features(hf: HorizonFeatures, h: int, ts: float, y: float) -> tuple[float, ...]:
    """The :data:`FEATURES` of a forecast ``h`` seconds ahead made at ``ts`` (value ``y``)."""
    return features_of(hf.vector(h, ts, y), h, ts, y, hf.cadence)


def features_of(
    v: Mapping[str, float], h: int, ts: float, y: float, cadence: float | None
) -> tuple[float, ...]:
    """The :data:`FEATURES` from a forecast's horizon features ``v`` (``HorizonFeatures.vector``
    order), its horizon, time, the value now and the device's cadence: what the processor's
    live batch model (:mod:`online_models.batch_live`) computes from the features it has."""
    phase = (ts % DAY) / DAY * _TAU
    return (
        *v.values(),
        h / 3600.0,
        math.cos(phase),
        math.sin(phase),
        y,
        math.log10(cadence) if cadence and cadence > 0 else _NAN,
    )


# a copied tree: left, right, feature, threshold, value, and where a missing value goes
_Tree = tuple[list[int], list[int], list[int], list[float], list[float], bytes]


class BatchExpert:
    """A fitted batch model: trees copied to plain lists, predicting the change over ``h``.

    ``trees`` and ``baseline`` come from :func:`fit`; ``features`` are the names the
    columns had (:data:`FEATURES` when it was trained). :meth:`predict_change` takes one
    example's features, :meth:`forecast` adds the value now.

    >>> BatchExpert([], 0.5).predict_change((0.0,) * len(FEATURES))
    0.5
    """

    def __init__(
        self, trees: list[_Tree], baseline: float, features: Sequence[str] = FEATURES
    ) -> None:
        self.trees = trees
        self.baseline = float(baseline)
        self.features = tuple(features)

    def predict_change(self, x: Sequence[float]) -> float:
        total = self.baseline
        for left, right, feature, threshold, value, to_left in self.trees:
            node = 0
            while left[node] != -1:
                v = x[feature[node]]
                if v <= threshold[node] or (v != v and to_left[node]):
                    node = left[node]
                else:
                    node = right[node]
            total += value[node]
        return total

    def forecast(self, x: Sequence[float], now: float) -> float:
        """The forecast of the target: the value now plus the predicted change."""
        return now + self.predict_change(x)

    def predict_many(self, xs: Sequence[Sequence[float]]) -> np.ndarray:
        """:meth:`predict_change` of each row (for validation)."""
        return np.fromiter((self.predict_change(x) for x in xs), float, len(xs))


def fit(examples: Examples | Sequence[Example], **params: object) -> BatchExpert:
    """Train a :class:`BatchExpert` on ``examples`` (:data:`DEFAULTS`, overridden by ``params``)."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    if not len(examples):
        raise ValueError("no examples to train on")
    if not isinstance(examples, Examples):
        table = Examples(len(examples[0].x))
        table.extend(examples)
        examples = table
    model = HistGradientBoostingRegressor(**{**DEFAULTS, **params})
    model.fit(examples.features(), examples.changes())
    return from_sklearn(model)


def from_sklearn(model: object) -> BatchExpert:
    """Copy a fitted ``HistGradientBoostingRegressor``'s trees to plain lists."""
    trees: list[_Tree] = []
    for (predictor,) in model._predictors:  # type: ignore[attr-defined]  # one per iteration
        nodes = predictor.nodes
        leaf = nodes["is_leaf"].astype(bool)
        left = np.where(leaf, -1, nodes["left"].astype(np.int64)).tolist()
        trees.append(
            (
                left,
                nodes["right"].tolist(),
                nodes["feature_idx"].tolist(),
                nodes["num_threshold"].tolist(),
                nodes["value"].tolist(),
                bytes(nodes["missing_go_to_left"].astype(np.uint8)),
            )
        )
    baseline = float(np.asarray(model._baseline_prediction).ravel()[0])  # type: ignore[attr-defined]
    return BatchExpert(trees, baseline)

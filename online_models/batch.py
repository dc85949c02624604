"""The batch reference: a scikit-learn random forest trained once on the first day, then frozen.

This is the classic offline approach to this data. :class:`FrozenForest`
collects the (features, target) pairs it is taught during the first
``train_seconds`` of the device's readings (elapsed time is the sum of the
features' ``dt``, or the time since the first when the features carry it), predicting ``None`` ("not yet") meanwhile; then it fits a
``RandomForestRegressor`` once and never learns again. The fitted trees are
copied into plain lists so that one prediction is a few hundred list lookups
(tens of µs) instead of scikit-learn's per-call overhead, and so that the
checkpoint holds only what predicts. At most ``max_samples`` pairs are kept
(every second one is dropped when full, and the stride doubles): memory is
bounded whatever the cadence.

A feature a sample lacks (a sensor the reading does not carry) is NaN, never a
made-up number: scikit-learn's forest learns at each split which side missing
values go to (``missing_go_to_left``), and the copied trees follow it. Features
first seen after the first sample join as further columns (NaN before).

>>> import random
>>> rng = random.Random(0)
>>> f = FrozenForest(train_seconds=100, n_estimators=5, max_depth=4)
>>> for i in range(200):
...     a = rng.random()
...     f.learn_one({"dt": 1.0, "a": a}, 2.0 * a)
>>> f.fitted, round(f.predict_one({"dt": 1.0, "a": 0.5}), 1)
(True, 1.0)
>>> f.predict_one({"dt": 1.0}) is not None  # "a" missing: the trees' missing-value side
True
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.ensemble import RandomForestRegressor

__all__ = ["FrozenForest"]

_NAN = math.nan

# A copied tree: children left and right, feature, threshold, value, per node; then where a
# missing value goes, per node (absent in checkpoints of before missing values were learned).
_Tree = (
    tuple[list[int], list[int], list[int], list[float], list[float]]
    | tuple[list[int], list[int], list[int], list[float], list[float], bytes]
)


class FrozenForest:
    """Random forest fitted on the first ``train_seconds`` of pairs, then frozen.

    >>> FrozenForest().predict_one({"dt": 0.0}) is None
    True
    """

    first_ts: float | None = None  # checkpoints written before this attribute existed
    known: set[str] | None = None  # the names in ``keys`` while training (built on demand)

    def __init__(
        self,
        train_seconds: float = 86_400.0,
        n_estimators: int = 30,
        max_depth: int | None = 12,
        min_samples_leaf: int = 5,
        max_samples: int = 20_000,
        random_state: int = 0,
    ) -> None:
        self.train_seconds = train_seconds
        self.params = {
            "n_estimators": n_estimators,
            "max_depth": max_depth,
            "min_samples_leaf": min_samples_leaf,
            "random_state": random_state,
            "n_jobs": 1,
        }
        self.max_samples = max_samples
        self.elapsed = 0.0
        self.first_ts: float | None = None
        self.stride = 1
        self.seen = 0
        self.keys: tuple[str, ...] | None = None
        self.rows: list[list[float]] | None = []
        self.ys: list[float] | None = []
        self.trees: list[_Tree] = []
        self.fitted = False
        self.n_train = 0

    def learn_one(self, x: dict[str, float], y: float) -> None:
        if self.fitted:
            return
        rows, ys = self.rows, self.ys
        assert rows is not None and ys is not None  # dropped only once fitted
        if self.keys is None:
            self.keys = tuple(sorted(x))
        known = self.known
        if known is None:
            known = self.known = set(self.keys)
        if len(known) < len(x) or not known.issuperset(x):
            new = [k for k in x if k not in known]
            self.keys = (*self.keys, *new)
            known.update(new)
        ts = getattr(x, "ts", None)  # the device loop's features carry their time
        if ts is None:
            self.elapsed += float(x.get("dt", 0.0))
        else:
            if self.first_ts is None:
                self.first_ts = ts
            self.elapsed = ts - self.first_ts
        if self.elapsed >= self.train_seconds and rows:
            self._fit(self.keys, rows, ys)
            return
        if self.seen % self.stride == 0:
            rows.append([float(x.get(k, _NAN)) for k in self.keys])
            ys.append(y)
            if len(rows) >= self.max_samples:
                self.rows = rows[::2]
                self.ys = ys[::2]
                self.stride *= 2
        self.seen += 1

    def _fit(self, keys: tuple[str, ...], samples: list[list[float]], ys: list[float]) -> None:
        forest = RandomForestRegressor(**self.params)
        width = len(keys)
        rows = [r if len(r) == width else r + [_NAN] * (width - len(r)) for r in samples]
        forest.fit(np.asarray(rows), np.asarray(ys))
        for est in forest.estimators_:
            t = est.tree_
            self.trees.append(
                (
                    t.children_left.tolist(),
                    t.children_right.tolist(),
                    t.feature.tolist(),
                    t.threshold.tolist(),
                    t.value[:, 0, 0].tolist(),
                    bytes(t.missing_go_to_left),  # where a missing value goes, per node
                )
            )
        self.n_train = len(samples)
        self.rows = None
        self.ys = None
        self.known = None
        self.fitted = True

    def predict_one(self, x: dict[str, float]) -> float | None:
        if not self.fitted or self.keys is None:
            return None
        row = [float(x.get(k, _NAN)) for k in self.keys]
        total = 0.0
        for tree in self.trees:
            left, right, feature, threshold, value = tree[:5]
            to_left = tree[5] if len(tree) > 5 else None  # None: fitted before missing values
            node = 0
            while left[node] != -1:
                v = row[feature[node]]
                if v <= threshold[node] or (v != v and to_left is not None and to_left[node]):
                    node = left[node]
                else:
                    node = right[node]
            total += value[node]
        return total / len(self.trees)

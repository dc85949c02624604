"""An online combination of a device's models at one horizon: exponentially weighted experts.

:class:`ExpWeighted` forecasts the weighted mean of the other models'
forecasts (the experts), each weighted by ``exp(-(L_i - L_best) / (2 σ²))``:
``L_i`` is an expert's squared error summed over the forecasts scored so far,
older ones discounted by ``exp(-age / memory)``, and ``σ²`` the best
expert's mean squared error. This is Bayesian model averaging with a
Gaussian likelihood and a forgetting prior: a handful of scores leave the
weights spread out, clear evidence concentrates them on what works now, and
a change of regime moves them within about ``memory``. It is scale-free (no
learning rate in °C) and never overflows (every exponent is ≤ 0).

Scored forecasts at one horizon overlap (sixty forecasts made a minute apart
about the next hour share most of their error), so the device loop gives
each score the weight ``w`` of the share of the horizon since the previous
forecast: the evidence counts independent errors, not forecasts.

Experts are named in ``experts``; an expert that has no forecast (not ready
yet) counts as ``fallback`` (persistence) would have, so that every expert
is judged on the same scores. The model's inputs are the experts' forecasts
(a dict), the same verbs as every model: ``predict_one(forecasts)``,
``learn_one(forecasts_then, actual, w)``.

>>> m = ExpWeighted(horizon=60, experts=("persistence", "good"))
>>> m.predict_one({"persistence": 20.0, "good": 21.0})  # no evidence yet: the plain mean
20.5
>>> for i in range(50):
...     m.learn_one({"persistence": 20.0, "good": 21.0 + 0.01 * (i % 2)}, 21.0)
>>> round(m.predict_one({"persistence": 20.0, "good": 21.0}), 3)
21.0
>>> m.weights()["good"] > 0.999
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from river import base
from river.base.typing import FeatureName

__all__ = ["ExpWeighted"]


class ExpWeighted(base.Regressor):
    """Exponentially weighted average of expert forecasts (see the module docstring).

    A River regressor whose features are the experts' forecasts: the parameters below are
    its ``__init__`` arguments under the same names (``clone()`` gives a fresh one), the
    discounted losses are private (:meth:`weights` reads them).

    Parameters:
        horizon: the forecast horizon in seconds (a score of weight ``w``
            ages the others by ``w * horizon`` seconds).
        experts: the names of the models combined, in order.
        memory: the forgetting time constant of the errors, in seconds.
        fallback: the expert that stands in for one without a forecast.
        temper: the posterior's temperature (1: plain Bayes; smaller: more cautious).
        loss: ``absolute`` (Laplace likelihood) or ``squared`` (Gaussian).
    """

    def __init__(
        self,
        horizon: int = 3600,
        experts: Iterable[str] = ("persistence", "rolling_mean", "seasonal_naive", "ridge"),
        memory: float = 3 * 86_400.0,
        fallback: str = "persistence",
        temper: float = 0.5,
        loss: str = "absolute",
    ) -> None:
        self.horizon = max(int(horizon), 1)
        self.experts = tuple(experts)
        self.memory = float(memory)
        self.temper = float(temper)
        if loss not in ("squared", "absolute"):
            raise ValueError(f"loss must be squared or absolute, got {loss!r}")
        self.loss = loss
        self.fallback = fallback
        self._absolute = loss == "absolute"
        self._loss = dict.fromkeys(self.experts, 0.0)  # each expert's discounted loss
        self._weight = 0.0  # of the scores so far, discounted

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        # River's checks run regressors on TrumpApproval: its polls are the experts
        yield {"experts": ("gallup", "ipsos", "rasmussen", "you_gov"), "fallback": "gallup"}

    def __setstate__(self, state: dict[str, object]) -> None:
        """Load a pickle of either layout: checkpoints of model-set format 3 and older kept the
        losses as ``loss`` (a dict), ``weight`` and ``absolute``."""
        if "_loss" not in state:
            state = dict(state)
            state["_loss"] = state.pop("loss")
            state["_weight"] = state.pop("weight")
            state["_absolute"] = absolute = state.pop("absolute")
            state["loss"] = "absolute" if absolute else "squared"
        self.__dict__.update(state)

    def weights(self) -> dict[str, float]:
        """The current weight of each expert (they sum to 1)."""
        loss = self._loss
        best = min(loss.values())
        mse = best / self._weight if self._weight > 0.0 else 0.0  # the best's mean loss
        if mse <= 1e-12:
            # no error to speak of yet: the experts on par with the best share
            raw = {k: 1.0 if v <= best + 1e-12 else 0.0 for k, v in loss.items()}
        else:
            exp = math.exp
            scale = (-1.0 if self._absolute else -0.5) * self.temper / mse
            raw = {k: exp((v - best) * scale) for k, v in loss.items()}
        total = sum(raw.values())
        return {k: v / total for k, v in raw.items()}

    def predict_one(self, x: Mapping[FeatureName, float | None]) -> float | None:  # type: ignore[override]
        # (None: no expert has a forecast yet, where River's regressors always answer)
        loss = self._loss
        present = [(k, v) for k in self.experts if (v := x.get(k)) is not None]
        if not present:
            return None
        best = min(loss[k] for k, _ in present)
        mse = best / self._weight if self._weight > 0.0 else 0.0
        if mse <= 1e-12:
            picked: list[float] = [v for k, v in present if loss[k] <= best + 1e-12]
            return sum(picked) / len(picked)
        exp = math.exp
        scale = (-1.0 if self._absolute else -0.5) * self.temper / mse
        total = 0.0
        acc = 0.0
        for k, v in present:
            wk = exp((loss[k] - best) * scale)
            total += wk
            acc += wk * v
        return acc / total

    def learn_one(self, x: Mapping[FeatureName, float | None], y: float, w: float = 1.0) -> None:
        fallback = x.get(self.fallback)
        lam = math.exp(-w * self.horizon / self.memory)
        self._weight = self._weight * lam + w
        loss = self._loss
        for k in self.experts:
            v = x.get(k)
            if v is None:
                v = fallback
            if v is None:
                err = 0.0 if self._weight <= w else (loss[k] / (self._weight - w)) ** 0.5
            else:
                err = y - v
            loss[k] = loss[k] * lam + w * (abs(err) if self._absolute else err * err)

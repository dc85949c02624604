"""Guarded model calls: a model is guest code, and one that fails is reset alone.

:class:`Guard` keeps a device's plausible range of the target and makes
every call into a model: ``predict_one`` and ``learn_one`` (the series
models' updates among them). It catches three things:

- an exception;
- a non-finite forecast;
- a forecast far outside the plausible range: the device's observed range
  widened on each side by its span, and by at least 5 % of the data
  contract's range, never more than that 5 % beyond the contract's bounds.

The guard judges; it changes nothing of its caller. A call that fails
returns a :class:`Fault`, the verdict, and the model's owner
(:class:`~online_models.horizon_models.HorizonModels`) acts on it: it
replaces the model by a fresh one, ``model.clone()`` (River's: the same
parameters, no learned state; :func:`fresh_model`), a ``model_reset`` event
says which, where and why (counted per model; logged by the device on the
1st, 2nd, 4th... of a model, not every time), and a refused forecast is
replaced by persistence's: what the processor serves in its place, and what
is scored for it, so that a model pays for its failures and every running
sum stays finite. The device's other models go on.

>>> g = Guard("d1", "temp")  # the contract's -55 .. 125 °C, widened by 5 % of its span
>>> g.bounds()
(-64.0, 134.0)
>>> g.observe(20.0); g.bounds()
(11.0, 29.0)

The guard knows only the target: the other sensors, present or not, are not its
business, and a device that never reported the target has no guard at all
(no model set). Its range starts at the first value it observes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from river import base

from telemetry.reading import RANGES

if TYPE_CHECKING:
    from online_models.catalog import ModelSpec

__all__ = ["MARGIN_SHARE", "Fault", "Guard", "fresh_model"]

# the plausible range is the observed one widened by its span, and at least this share of
# the data contract's range for the target
MARGIN_SHARE = 0.05


class Guard:
    """The plausible range of one device's target and the guarded calls into its models.

    The device (:class:`~online_models.device.DeviceModels`) widens the range
    (:meth:`observe`) and reads it (:meth:`bounds`); its horizons
    (:class:`~online_models.horizon_models.HorizonModels`) call their models through
    :meth:`predict` and :meth:`learn` and act on the :class:`Fault` they may return.
    ``n_resets`` counts the faults (each resets its model). With ``timing`` it adds up
    each model's CPU time of this thread in :attr:`cost_ns`.
    """

    def __init__(self, device: str, target: str, *, timing: bool = False) -> None:
        self.device = device
        self.target = target
        lo, hi = RANGES[target]
        self.contract = (lo, hi)
        self.min_margin = MARGIN_SHARE * (hi - lo)
        self.low: float | None = None  # the observed range
        self.high: float | None = None
        self.n_resets = 0
        self.timing = timing
        self.cost_ns: dict[str, int] = {}

    def observe(self, y: float) -> None:
        """Widen the observed range to a learned value."""
        if self.low is None or y < self.low:
            self.low = y
        if self.high is None or y > self.high:
            self.high = y

    def bounds(self) -> tuple[float, float]:
        """The plausible range of a forecast now."""
        floor = self.min_margin
        lo, hi = self.contract[0] - floor, self.contract[1] + floor
        low, high = self.low, self.high
        if low is None or high is None:
            return lo, hi
        margin = max(high - low, floor)
        return max(lo, low - margin), min(hi, high + margin)

    def predict(
        self,
        name: str,
        model: base.Regressor,
        x: Mapping[str, float | None],
        *,
        lo: float,
        hi: float,
    ) -> tuple[float | None, Fault | None]:
        """``model.predict_one(x)`` and no fault, or None and the :class:`Fault` that refused
        it: an exception, or a forecast outside ``lo .. hi`` (the :meth:`bounds`)."""
        timing = self.timing
        t0 = time.thread_time_ns() if timing else 0
        fault = None
        try:
            p: float | None = model.predict_one(x)  # type: ignore[arg-type]
        except Exception as exc:  # guest code: its owner resets it and serves persistence
            p = None
            fault = self._fault("exception", exc)
        else:
            if p is not None and not lo <= p <= hi:
                why = "non_finite" if p != p or p in (math.inf, -math.inf) else "out_of_range"
                fault = self._fault(why, p)
                p = None
        if timing:
            self.cost_ns[name] = self.cost_ns.get(name, 0) + time.thread_time_ns() - t0
        return p, fault

    def learn(
        self,
        name: str,
        model: base.Regressor,
        x: Mapping[str, float | None],
        y: float,
        *,
        w: float | None = None,
    ) -> Fault | None:
        """``model.learn_one(x, y[, w])``; the :class:`Fault` if it raised, else None."""
        timing = self.timing
        t0 = time.thread_time_ns() if timing else 0
        fault = None
        try:
            # (River types a model's input dict[Hashable, Any]; ours are str -> float dicts)
            if w is None:
                model.learn_one(x, y)  # type: ignore[arg-type]
            else:  # the weighted learners (ridge, ensemble) take River's sample weight
                model.learn_one(x, y, w)  # type: ignore[arg-type, call-arg]
        except Exception as exc:  # guest code: its owner resets it
            fault = self._fault("exception", exc)
        if timing:
            self.cost_ns[name] = self.cost_ns.get(name, 0) + time.thread_time_ns() - t0
        return fault

    def _fault(self, reason: str, detail: BaseException | float) -> Fault:
        """The verdict on a failed call, in words; counted in :attr:`n_resets` (every fault
        resets its model)."""
        self.n_resets += 1
        if isinstance(detail, BaseException):
            what = f"{type(detail).__name__}: {detail}"[:200]
        elif isinstance(detail, float):
            lo, hi = self.bounds()
            what = f"forecast {detail!r} outside [{lo:.6g}, {hi:.6g}]"
        else:  # a guest model's forecast of another type
            what = str(detail)
        return Fault(reason, what)


@dataclass(frozen=True, slots=True)
class Fault:
    """The guard's verdict on a call into a model that failed: the model's owner replaces
    it by a fresh one (:func:`fresh_model`) and, for a forecast, serves persistence's.

    ``reason`` is ``exception``, ``non_finite`` or ``out_of_range``; ``detail`` says what
    happened, in words.

    >>> class Constant:  # a guest model that says the same whatever it is told
    ...     def __init__(self, value): self.value = value
    ...     def predict_one(self, x): return self.value
    ...     def learn_one(self, x, y): pass
    >>> g = Guard("d1", "temp")
    >>> g.observe(20.0)
    >>> g.predict("linear", Constant(500.0), {}, lo=11.0, hi=29.0)
    (None, Fault(reason='out_of_range', detail='forecast 500.0 outside [11, 29]'))
    >>> g.predict("linear", Constant(21.0), {}, lo=11.0, hi=29.0), g.n_resets
    ((21.0, None), 1)
    >>> print(g.learn("linear", Constant(21.0), {}, 21.0, w=0.5))  # learn_one takes no weight
    exception: TypeError: Constant.learn_one() takes 3 positional arguments but 4 were given
    """

    reason: str
    detail: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


def fresh_model(model: object, spec: ModelSpec, target: str, horizon: int) -> base.Regressor:
    """A fresh, untrained model in place of ``model``: ``model.clone()``, River's copy of
    its parameters without its learned state, for a River estimator (a wrapper's wrapped
    model one too: River's ``clone`` would deep-copy anything else, learned state and all).
    Guest code that is not one (the frozen forest inside its adapter, a model a test
    plants) is rebuilt from its catalog ``spec``.

    >>> from online_models.catalog import load_catalog
    >>> spec = load_catalog()["ridge"]
    >>> ridge = spec.build("temp", 900)
    >>> ridge.learn_one({"a": 1.0, "temp": 21.0}, 21.5)
    >>> fresh = fresh_model(ridge, spec, "temp", 900)
    >>> fresh.regressor.keys, fresh._get_params() == ridge._get_params()
    (None, True)
    """
    inner = model._wrapped_model if isinstance(model, base.Wrapper) else model
    if isinstance(model, base.Regressor) and isinstance(inner, base.Base):
        return model.clone()
    return spec.build(target, horizon)

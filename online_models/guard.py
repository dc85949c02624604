"""Guarded model calls: a model is guest code, and one that fails is reset alone.

:class:`Guard` keeps a device's plausible range of the target and makes
every call into a model: ``predict_one`` and ``learn_one`` (the series
models' updates among them). It catches three things:

- an exception;
- a non-finite forecast;
- a forecast far outside the plausible range: the device's observed range
  widened on each side by its span, and by at least 5 % of the data
  contract's range, never more than that 5 % beyond the contract's bounds.

The model is then replaced by a fresh one, ``model.clone()`` (River's: the
same parameters, no learned state; :func:`fresh_model`), a ``model_reset``
event says which, where and why (counted per model; logged on the 1st, 2nd,
4th... of a model, not every time), and a refused forecast is replaced by
persistence's: what the processor serves in its place, and what is scored
for it, so that a model pays for its failures and every running sum stays
finite. The device's other models go on.

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

import logging
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from river import base

from online_models.drift import DriftWatch
from online_models.records import Event
from online_models.selection import Selector
from telemetry.reading import RANGES

if TYPE_CHECKING:
    from online_models.catalog import ModelSpec

__all__ = ["MARGIN_SHARE", "Guard", "fresh_model"]

log = logging.getLogger("online_models.device")


class Horizon(Protocol):
    """What the guard reads and replaces of one horizon's models
    (:class:`~online_models.horizon_models.HorizonModels`)."""

    horizon: int
    models: dict[str, base.Regressor]
    specs: dict[str, ModelSpec]
    resets: dict[str, int]
    selector: Selector
    drift: DriftWatch


# the plausible range is the observed one widened by its span, and at least this share of
# the data contract's range for the target
MARGIN_SHARE = 0.05


class Guard:
    """The plausible range of one device's target and the guarded calls into its models.

    With ``timing`` it adds up each model's CPU time of this thread in :attr:`cost_ns`.
    """

    def __init__(self, device: str, target: str, timing: bool = False) -> None:
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
        hz: Horizon,
        name: str,
        x: Mapping[str, float | None],
        fallback: float | None,
        lo: float,
        hi: float,
        ts: float,
        events: list[Event],
        rejected: set[str],
    ) -> float | None:
        """``hz.models[name].predict_one(x)``, or ``fallback`` (and a reset) if it fails."""
        timing = self.timing
        t0 = time.thread_time_ns() if timing else 0
        try:
            p: float | None = hz.models[name].predict_one(x)  # type: ignore[arg-type]
        except Exception as exc:  # guest code: reset it, serve persistence
            p = self._reject(hz, name, "exception", exc, fallback, ts, events, rejected)
        else:
            if p is not None and not lo <= p <= hi:
                why = "non_finite" if p != p or p in (math.inf, -math.inf) else "out_of_range"
                p = self._reject(hz, name, why, p, fallback, ts, events, rejected)
        if timing:
            self.cost_ns[name] = self.cost_ns.get(name, 0) + time.thread_time_ns() - t0
        return p

    def learn(
        self,
        hz: Horizon,
        name: str,
        x: Mapping[str, float | None],
        y: float,
        ts: float,
        events: list[Event],
        w: float | None = None,
    ) -> None:
        """``hz.models[name].learn_one(x, y[, w])``; a model that raises is reset."""
        timing = self.timing
        t0 = time.thread_time_ns() if timing else 0
        try:
            # (River types a model's input dict[Hashable, Any]; ours are str -> float dicts)
            if w is None:
                hz.models[name].learn_one(x, y)  # type: ignore[arg-type]
            else:  # the weighted learners (ridge, ensemble) take River's sample weight
                hz.models[name].learn_one(x, y, w)  # type: ignore[arg-type, call-arg]
        except Exception as exc:  # guest code: reset it
            self.reset(hz, name, "exception", exc, ts, events)
        if timing:
            self.cost_ns[name] = self.cost_ns.get(name, 0) + time.thread_time_ns() - t0

    def _reject(
        self,
        hz: Horizon,
        name: str,
        reason: str,
        detail: BaseException | float,
        fallback: float | None,
        ts: float,
        events: list[Event],
        rejected: set[str],
    ) -> float | None:
        self.reset(hz, name, reason, detail, ts, events)
        rejected.add(name)
        return fallback

    def reset(
        self,
        hz: Horizon,
        name: str,
        reason: str,
        detail: BaseException | float,
        ts: float,
        events: list[Event],
    ) -> None:
        """Replace ``name`` at ``hz``'s horizon by a fresh one (:func:`fresh_model`); record why."""
        h = hz.horizon
        hz.models[name] = fresh_model(hz.models[name], hz.specs[name], self.target, h)
        count = hz.resets[name] = hz.resets.get(name, 0) + 1
        self.n_resets += 1
        if isinstance(detail, BaseException):
            what = f"{type(detail).__name__}: {detail}"[:200]
        elif isinstance(detail, float):
            lo, hi = self.bounds()
            what = f"forecast {detail!r} outside [{lo:.6g}, {hi:.6g}]"
        else:
            what = str(detail)
        events.append(Event("model_reset", name, h, f"{reason}: {what}", {"reason": reason}, ts))
        if name == hz.selector.champion:
            hz.drift.restart()
        if count & (count - 1) == 0:  # the 1st, 2nd, 4th, 8th... of this model: not a flood
            log.warning(
                "device %s horizon %ss: model %s reset (%d so far): %s: %s",
                self.device, h, name, count, reason, what,
            )  # fmt: skip


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

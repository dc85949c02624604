"""The batch expert inside the processor: one loaded version per process, read by every device.

``iotcast retrain`` writes versioned batch models (:mod:`online_models.retrain`,
:mod:`stream.batch_registry`); a processor started with ``--batch-expert`` loads the
current one (:mod:`stream.batch_watch`) into :data:`LIVE`, which holds at most two:

- the **active** version, forecasting as the model ``batch_expert``: scored like every
  model, never champion itself, and weighed with the champion's forecast into the
  forecast served (each
  horizon's ``blend``, :mod:`online_models.horizon_models`: the two weighed online by
  their recent absolute errors, as :mod:`online_models.batch_served` measured offline);
- the **candidate** in shadow, forecasting as ``batch_shadow``: scored, never weighed
  and never champion (an observer of the device's selection), until its shadow ends
  with a verdict; on a sample of the forecasts (one minute in four), which keeps the
  shadow's cost at a quarter of the active version's.

The models are :class:`LiveBatch`, a horizon model with no learned state of its own (a
checkpoint keeps nothing of the trees: a device's state grows by the blend's few floats
only). Before a version is loaded, or at a horizon the version does not serve, a
:class:`LiveBatch` has no forecast (``None``): the champion's forecast is served as is,
and the blend learns the missing batch forecast's error as the champion's, so a version
that arrives later starts on par and earns its weight.

>>> from online_models.batch_expert import BatchExpert, FEATURES
>>> from online_models.horizon import HorizonFeatures
>>> hf = HorizonFeatures((3600,)); hf.add(0.0, 20.0); hf.add(60.0, 20.5)
>>> x = hf.vector(3600, 60.0, 20.5)
>>> m = LiveBatch(horizon=3600, stage="active")
>>> m.predict_one(x) is None  # nothing loaded
True
>>> live = LiveExperts()
>>> live.set("active", 3, BatchExpert([], 0.25), frozenset({3600}))
>>> m.predict_one(x, live)  # the predicted change (Anchored adds the value now)
0.25
>>> LiveBatch(horizon=900).predict_one(x, live) is None  # not trained for 900 s
True
>>> live.version("active"), live.version("shadow")
(3, None)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from river import base

from online_models.batch_expert import BatchExpert, features_of

__all__ = ["ACTIVE", "LIVE", "MODELS", "SHADOW", "LiveBatch", "LiveExperts"]

ACTIVE = "batch_expert"  # the model names in the catalog (online_models/models.toml)
SHADOW = "batch_shadow"
MODELS = (ACTIVE, SHADOW)
STAGES = ("active", "shadow")
# A version in shadow forecasts in one minute of every four only (by the forecast's time, so
# every device and horizon samples alike); its reference is judged on the same forecasts.
# Where forecasts are minutes apart or more, that is most of them.
SHADOW_SAMPLE_S = 60.0
SHADOW_SAMPLE_EVERY = 4


class LiveExperts:
    """The batch versions a process forecasts with: ``active`` and ``shadow``, each a
    (version, expert) or nothing. Set by :class:`stream.batch_watch.BatchWatch` between
    two records (the processor's loop is one thread), read by every :class:`LiveBatch`."""

    __slots__ = ("_slots",)

    def __init__(self) -> None:
        self._slots: dict[str, tuple[int, BatchExpert, frozenset[int]] | None] = dict.fromkeys(
            STAGES
        )

    def set(
        self,
        stage: str,
        version: int | None,
        expert: BatchExpert | None,
        horizons: frozenset[int] | None = None,
    ) -> None:
        """``stage`` forecasts with ``expert`` (version ``version``) at ``horizons`` (None:
        any), or nothing when ``version`` or ``expert`` is None."""
        if stage not in self._slots:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}; got {stage!r}")
        if version is None or expert is None:
            self._slots[stage] = None
        else:
            self._slots[stage] = (version, expert, frozenset(horizons or ()))

    def expert(self, stage: str, horizon: int | None = None) -> BatchExpert | None:
        """The expert of ``stage``, if it was trained for ``horizon`` (None: any)."""
        slot = self._slots.get(stage)
        if slot is None or (horizon is not None and slot[2] and horizon not in slot[2]):
            return None
        return slot[1]

    def version(self, stage: str) -> int | None:
        slot = self._slots.get(stage)
        return None if slot is None else slot[0]


LIVE = LiveExperts()  # the process's (a processor serves one application)


class LiveBatch(base.Regressor):
    """The batch version of ``stage`` (``active`` or ``shadow``) as a horizon model: it
    predicts the target's change over ``horizon`` from the horizon features (wrapped by
    the catalog in :class:`~online_models.adapters.Anchored`, which adds the value now),
    and learns nothing (the batch job does)."""

    def __init__(self, horizon: int = 3600, stage: str = "active") -> None:
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}; got {stage!r}")
        self.horizon = int(horizon)
        self.stage = stage

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        yield {"horizon": 3600, "stage": "active"}

    def learn_one(self, x: Mapping[str, float], y: float, w: float = 1.0) -> None:  # type: ignore[override]
        """Nothing: the batch model is trained by ``iotcast retrain``, not here."""

    def predict_one(  # type: ignore[override]
        self, x: Mapping[str, float], live: LiveExperts | None = None
    ) -> float | None:
        expert = (LIVE if live is None else live).expert(self.stage, self.horizon)
        now = getattr(x, "anchor", None)
        ts = getattr(x, "made_ts", None)
        if expert is None or now is None or ts is None:
            return None
        if self.stage == "shadow" and int(ts // SHADOW_SAMPLE_S) % SHADOW_SAMPLE_EVERY:
            return None  # the shadow is judged on a sample: a quarter of its cost
        return expert.predict_change(features_of(x, self.horizon, ts, now, x.cadence))  # type: ignore[attr-defined]

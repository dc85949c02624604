"""What one step of a device's model set returns: predictions, scores, events.

Plain frozen dataclasses, cheap to build and to serialise (``asdict``).

>>> p = Prediction("linear", 900, 1594512000.0, 1594512900.0, 22.4)
>>> p.target_ts - p.ts
900.0
>>> Event("promotion", "linear", 900, "rolling MAE 0.10 < 0.95 x 0.20", {"old": "persistence"}).kind
'promotion'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypedDict

__all__ = [
    "SERVED",
    "DeviceSummary",
    "Event",
    "ModelAtHorizon",
    "ModelSummary",
    "Prediction",
    "ResetCount",
    "Score",
    "StepResult",
]

SERVED = "served"  # the pseudo-model of the forecast the processor publishes


@dataclass(frozen=True, slots=True)
class Prediction:
    """A model's prediction made at ``ts`` of the target at ``target_ts`` (``ts + horizon``).

    >>> Prediction("persistence", 0, 10.0, 10.0, 21.5).value
    21.5
    """

    model: str
    horizon: int
    ts: float
    target_ts: float
    value: float
    source: str = ""  # for the served forecast: the model it came from
    # for the served forecast: its prediction intervals, (low, high) per level of
    # ``TaskConfig.interval_levels`` in order, flattened (online_models.intervals)
    bounds: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class Score:
    """A prediction made at ``made_ts`` scored against ``actual``, the first reading at or after ``target_ts``.

    >>> s = Score("linear", 60, 0.0, 60.0, 21.0, 21.5)
    >>> s.actual - s.predicted
    0.5
    """

    model: str
    horizon: int
    made_ts: float
    target_ts: float
    predicted: float
    actual: float


@dataclass(frozen=True, slots=True)
class Event:
    """A promotion, a drift detection or a model reset, with the reason in words and the figures.

    Kinds: ``promotion`` (a new champion), ``drift`` (the champion's error
    changed), ``model_reset`` (the guard threw a model's state away: it
    raised, forecast a non-finite value or one outside the plausible range).

    >>> Event("drift", "linear", 900, "ADWIN ...", {"mean_abs_residual_after": 0.4}).figures
    {'mean_abs_residual_after': 0.4}
    """

    kind: str
    model: str
    horizon: int
    reason: str
    figures: dict[str, Any] = field(default_factory=dict)
    ts: float = 0.0


@dataclass(frozen=True, slots=True)
class StepResult:
    """Outcome of one reading: ``status`` is learned, duplicate, late, glitch or no_target
    (the reading does not carry the target: not learned, not scored, nothing predicted).

    >>> StepResult("duplicate").predictions
    ()
    """

    status: str
    predictions: tuple[Prediction, ...] = ()
    scores: tuple[Score, ...] = ()
    events: tuple[Event, ...] = ()


class ModelAtHorizon(NamedTuple):
    """One model at one horizon: the key of its figures, ``"model@horizon"`` as a string (in a
    checkpoint manifest's ``models`` and the tables that show them).

    >>> key = ModelAtHorizon.parse("ridge@900")
    >>> key, str(key), key.horizon + 0
    (ModelAtHorizon(model='ridge', horizon=900), 'ridge@900', 900)
    >>> ModelAtHorizon.parse("ridge")
    Traceback (most recent call last):
    ...
    ValueError: not a model@horizon key: 'ridge'
    """

    model: str
    horizon: int

    def __str__(self) -> str:
        return f"{self.model}@{self.horizon}"

    @classmethod
    def parse(cls, key: str) -> ModelAtHorizon:
        """The key of a ``"model@horizon"`` string (the horizon in seconds, after the last ``@``)."""
        model, at, horizon = key.rpartition("@")
        if not at or not model or not horizon.lstrip("-").isdigit():
            raise ValueError(f"not a model@horizon key: {key!r}")
        return cls(model, int(horizon))


class ModelSummary(TypedDict):
    """One model (or ``"served"``) at one horizon in :class:`DeviceSummary`: its error figures
    (``ErrorStats.as_dict()``)."""

    model: str
    horizon: int
    n: int
    mae: float | None
    rmse: float | None
    r2: float | None
    bias: float | None
    rolling_mae: float | None
    rolling_rmse: float | None


class ResetCount(TypedDict):
    """How often the guard reset one model at one horizon."""

    model: str
    horizon: int
    count: int


class DeviceSummary(TypedDict):
    """A device's figures as ``DeviceModels.summary()`` gives them, JSON-ready: counts by
    outcome, the champion by horizon (a string key), the errors of every model and horizon."""

    device: str
    target: str
    n_learned: int
    n_held: int  # taken in order but not learned: the anomaly watch held it back
    n_duplicate: int
    n_late: int
    n_glitch: int
    n_no_target: int
    n_dropped: int
    n_promotions: int
    n_drifts: int
    n_resets: int
    last_ts: float | None
    champion: dict[str, str]
    models: list[ModelSummary]
    resets: list[ResetCount]

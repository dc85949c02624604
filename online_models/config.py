"""What a device's model set predicts and how it chooses its champion.

A :class:`TaskConfig` names the target sensor, the horizons (seconds ahead;
``0`` is the nowcast, the virtual sensor), the rolling window over which
errors are compared, and the knobs of model selection and drift detection.
It is plain, frozen and picklable: it travels inside every checkpoint.

>>> task = TaskConfig()
>>> task.target, task.horizons
('temp', (0, 60, 900, 3600))
>>> TaskConfig(target="humidity", horizons=(900,)).forecast_horizons
(900,)
>>> TaskConfig(target="pressure")
Traceback (most recent call last):
...
ValueError: target 'pressure' is not a numeric sensor; choose one of co, humidity, lpg, smoke, temp
>>> TaskConfig(extra_features=("pressure",)).extra_features
('pressure',)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from online_models.features import clashes
from online_models.intervals import DEFAULT_LEVELS, check_levels
from telemetry.reading import MAX_EXTRA_FIELDS, SENSORS

__all__ = ["TARGETS", "TaskConfig"]

TARGETS = ("co", "humidity", "lpg", "smoke", "temp")
# the names an extra numeric field of a payload may have (telemetry.reading keeps the same)
_EXTRA_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


@dataclass(frozen=True)
class TaskConfig:
    """Target, horizons, and the selection and drift knobs of one device's model set.

    >>> TaskConfig(horizons=(900, 0)).horizons  # sorted; 0 is the nowcast
    (0, 900)

    Parameters:
        target: the sensor predicted (``temp``, ``humidity``, ``co``, ``lpg``, ``smoke``).
        horizons: seconds ahead; ``0`` is the nowcast (target now, from the other
            sensors, without the target's own history).
        window: number of most recent scored predictions in the rolling MAE/RMSE.
        initial_champion: the model that starts as champion at every horizon
            (falls back to persistence, then the first model, where it does not run).
        promote_margin: a challenger must beat the champion's rolling MAE by this
            fraction (0.05 = 5 %) to be promoted.
        promote_min_samples: both must have at least this many scored predictions
            in their rolling windows.
        promote_cooldown: scored predictions (at that horizon) between two promotions.
        drift_delta: ADWIN's confidence parameter on the champion's |residual|.
        drift_block: residuals averaged into one ADWIN input (they are autocorrelated).
        drift_reset: on drift, replace the champion's model by a fresh one
            (it then relearns from the new regime while the others keep going).
        drift_grace: scored predictions after a promotion or reset before the
            detector listens again.
        max_pending: forecasts waiting for their actual value, per horizon; the
            oldest are dropped (and counted) beyond it.
        forecasts_per_horizon: forecasts at horizon ``h`` are made on a grid of
            ``h / forecasts_per_horizon`` seconds (at most one per reading).
        extra_features: extra numeric fields of the readings (``Reading.extra``, e.g.
            ``pressure``) that become features, with their own history
            (:mod:`online_models.features`); undeclared extras are ignored.
        interval_levels: central coverage levels of the served forecast's prediction
            intervals (:mod:`online_models.intervals`), each strictly between 0 and 1.

    >>> TaskConfig(extra_features=("temp",))
    Traceback (most recent call last):
    ...
    ValueError: extra_features: 'temp' is a sensor (its features exist already); declare only other fields
    """

    target: str = "temp"
    horizons: tuple[int, ...] = (0, 60, 900, 3600)
    window: int = 2000
    initial_champion: str = "ensemble"
    promote_margin: float = 0.05
    promote_min_samples: int = 1000
    promote_cooldown: int = 5000
    drift_delta: float = 0.002
    drift_block: int = 50
    drift_reset: bool = False
    drift_grace: int = 500
    max_pending: int = 20_000
    forecasts_per_horizon: int = 60
    extra_features: tuple[str, ...] = ()
    interval_levels: tuple[float, ...] = DEFAULT_LEVELS

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(
                f"target {self.target!r} is not a numeric sensor; choose one of {', '.join(TARGETS)}"
            )
        hs = tuple(int(h) for h in self.horizons)
        if not hs or any(h < 0 for h in hs) or len(set(hs)) != len(hs):
            raise ValueError(f"horizons must be distinct seconds >= 0, got {self.horizons!r}")
        object.__setattr__(self, "horizons", tuple(sorted(hs)))
        if not 0.0 <= self.promote_margin < 1.0:
            raise ValueError(f"promote_margin must be in [0, 1), got {self.promote_margin!r}")
        if (
            self.window < 1
            or self.promote_min_samples < 1
            or self.max_pending < 1
            or self.forecasts_per_horizon < 1
        ):
            raise ValueError(
                "window, promote_min_samples, max_pending and forecasts_per_horizon must be >= 1"
            )
        if isinstance(self.extra_features, str):
            raise ValueError(
                f"extra_features must be a sequence of names, got the string {self.extra_features!r}"
            )
        extras = tuple(self.extra_features)
        for name in extras:
            if not isinstance(name, str) or not _EXTRA_NAME.fullmatch(name):
                raise ValueError(
                    f"extra_features: {name!r} is not a field name (a-z, then a-z 0-9 _, "
                    "at most 32 characters)"
                )
            if name in SENSORS:
                raise ValueError(
                    f"extra_features: {name!r} is a sensor (its features exist already); "
                    "declare only other fields"
                )
            if clashes(name):
                raise ValueError(
                    f"extra_features: {name!r} is the name of a derived feature (a time feature "
                    "or a <name>_d1/_dev<w>/_sd<w> history); rename the field"
                )
        if len(set(extras)) != len(extras) or len(extras) > MAX_EXTRA_FIELDS:
            raise ValueError(
                f"extra_features must be distinct, at most {MAX_EXTRA_FIELDS}, got {extras!r}"
            )
        object.__setattr__(self, "extra_features", extras)
        object.__setattr__(self, "interval_levels", check_levels(self.interval_levels))

    @property
    def forecast_horizons(self) -> tuple[int, ...]:
        """The horizons > 0 (the forecasts)."""
        return tuple(h for h in self.horizons if h > 0)

    @property
    def nowcast(self) -> bool:
        """True when horizon 0 (the virtual sensor) is asked for."""
        return 0 in self.horizons

    def replace(self, **changes: object) -> TaskConfig:
        """A copy with ``changes`` (field names and values), checked as by the constructor."""
        return replace(self, **changes)  # type: ignore[arg-type]  # __post_init__ checks them

"""Champion selection per device and horizon, with a margin, a minimum sample and a cool-down.

A challenger replaces the champion when (1) over both rolling windows of at
least ``min_samples`` scored predictions its rolling MAE is below
``(1 - margin)`` times the champion's, (2) its MAE over everything scored
since the last change is below ``(1 - margin)`` times the champion's as well,
and (3) at least ``cooldown`` predictions were scored at that horizon since
the last change. The margin, the since-change comparison and the cool-down
are the hysteresis: two models of equal skill do not swap back and forth on
a stationary stream, whose rolling errors wander. The best qualifying challenger wins; every change is an
:class:`~online_models.records.Event` with the figures behind it.

>>> from online_models.scoring import ErrorStats
>>> sel = Selector("persistence", margin=0.05, min_samples=3, cooldown=0)
>>> a, b = ErrorStats(), ErrorStats()
>>> for _ in range(3):
...     _ = a.update(21.0, 20.0); _ = b.update(21.0, 20.9)
...     sel.observe("persistence", 1.0); sel.observe("linear", 0.1); sel.tick()
>>> event = sel.consider({"persistence": a, "linear": b}, horizon=900, ts=0.0)
>>> event.model, sel.champion
('linear', 'linear')
"""

from __future__ import annotations

from online_models.records import Event
from online_models.scoring import ErrorStats

__all__ = ["Selector"]


class Selector:
    """The champion of one horizon and the rule that changes it (see the module docstring).

    >>> Selector("persistence").champion
    'persistence'
    """

    def __init__(
        self, champion: str, margin: float = 0.05, min_samples: int = 300, cooldown: int = 1000
    ) -> None:
        self.champion = champion
        self.margin = margin
        self.min_samples = min_samples
        self.cooldown = cooldown
        self.scored_since_change = 0
        self.promotions = 0
        self.since: dict[
            str, list[float]
        ] = {}  # model -> [sum |error|, count] since the last change

    def observe(self, model: str, abs_error: float) -> None:
        """One scored prediction of ``model`` (for the since-change comparison)."""
        acc = self.since.get(model)
        if acc is None:
            self.since[model] = [abs_error, 1]
        else:
            acc[0] += abs_error
            acc[1] += 1

    def tick(self) -> None:
        """One more prediction scored at this horizon."""
        self.scored_since_change += 1

    def set(self, model: str) -> None:
        """Make ``model`` the champion now (operator or automatic); restarts the cool-down."""
        self.champion = model
        self.scored_since_change = 0
        self.promotions += 1
        self.since = {}

    def consider(self, stats: dict[str, ErrorStats], horizon: int, ts: float) -> Event | None:
        """Promote the best qualifying challenger; return the event, or None."""
        if self.scored_since_change < self.cooldown:
            return None
        current = stats.get(self.champion)
        if current is None or current.rolling_n < self.min_samples:
            return None
        champion_mae = current.rolling_mae
        champ_since = self.since.get(self.champion)
        if champ_since is None or champion_mae is None:
            return None
        champion_since_mae = champ_since[0] / champ_since[1]
        best, best_mae = None, champion_mae * (1.0 - self.margin)
        for name, s in stats.items():
            if name == self.champion or s.rolling_n < self.min_samples:
                continue
            since = self.since.get(name)
            if since is None or since[0] / since[1] >= champion_since_mae * (1.0 - self.margin):
                continue
            mae = s.rolling_mae
            if mae is not None and mae < best_mae:
                best, best_mae = name, mae
        if best is None:
            return None
        old = self.champion
        samples = min(current.rolling_n, stats[best].rolling_n)
        new_since_mae = self.since[best][0] / self.since[best][1]
        scored = self.scored_since_change
        self.set(best)
        return Event(
            kind="promotion",
            model=best,
            horizon=horizon,
            reason=(
                f"rolling MAE {best_mae:.4f} beats champion {old}'s {champion_mae:.4f} "
                f"by more than {self.margin:.0%} over {samples} scored predictions"
            ),
            figures={
                "old": old,
                "new": best,
                "old_rolling_mae": champion_mae,
                "new_rolling_mae": best_mae,
                "samples": samples,
                "old_mae_since_change": champion_since_mae,
                "new_mae_since_change": new_since_mae,
                "scored_since_change": scored,
                "margin": self.margin,
            },
            ts=ts,
        )

"""Drift detection: River's ADWIN on the champion's absolute residuals.

One :class:`DriftWatch` per horizon. It listens to the champion's
``|actual - predicted|``, averaged over blocks of ``block`` consecutive
residuals (forecast residuals are strongly autocorrelated: ADWIN's bound
assumes independent values and fires constantly on raw ones); when ADWIN
finds that the recent mean differs from the older one, it reports a drift
:class:`~online_models.records.Event` (with the error level before and
after) and starts over. ADWIN checks every block (``clock=1``): blocks are
few, so detection comes within a few blocks of a change. After a change of
champion or a reset it ignores ``grace`` residuals (the new model's error is
another series).

>>> import random
>>> rng = random.Random(1)
>>> w = DriftWatch(delta=0.002, grace=0, block=10)
>>> events = [w.update("linear", 900, abs(rng.gauss(0, 0.1 if i < 2000 else 1.0)), float(i)) for i in range(4000)]
>>> [e.kind for e in events if e], 2000 <= next(e.ts for e in events if e) < 2500
(['drift'], True)
"""

from __future__ import annotations

from collections import deque

from river import drift

from online_models.records import Event

__all__ = ["DriftWatch"]


class DriftWatch:
    """ADWIN over one horizon's champion residuals (see the module docstring).

    >>> DriftWatch().detections
    0
    """

    def __init__(self, delta: float = 0.002, grace: int = 300, block: int = 50) -> None:
        self.delta = delta
        self.grace = grace
        self.block = block
        self.block_sum = 0.0
        self.block_n = 0
        self.recent: deque[float] = deque(maxlen=5)
        self.detector = drift.ADWIN(delta=delta, clock=1)
        self.skip = grace
        self.detections = 0
        self.model: str | None = None

    def restart(self) -> None:
        """Forget the residuals seen (new champion or fresh model)."""
        self.detector = drift.ADWIN(delta=self.delta, clock=1)
        self.skip = self.grace
        self.block_sum = 0.0
        self.block_n = 0
        self.recent.clear()

    def update(self, model: str, horizon: int, abs_residual: float, ts: float) -> Event | None:
        """Add the champion's |residual|; return a drift event when ADWIN detects a change."""
        if model != self.model:
            self.model = model
            self.restart()
        if self.skip > 0:
            self.skip -= 1
            return None
        self.block_sum += abs_residual
        self.block_n += 1
        if self.block_n < self.block:
            return None
        mean = self.block_sum / self.block_n
        self.block_sum = 0.0
        self.block_n = 0
        before = self.detector.estimation
        self.recent.append(mean)
        self.detector.update(mean)
        if not self.detector.drift_detected:
            return None
        self.detections += 1
        k = len(self.recent)
        after = sum(self.recent) / k
        width = self.detector.width
        self.restart()
        self.skip = 0
        return Event(
            kind="drift",
            model=model,
            horizon=horizon,
            reason=(
                f"ADWIN: mean |residual| of {model} was {before:.4f} over its window, "
                f"{after:.4f} over the last {k} blocks "
                f"(window {width:.0f} blocks of {self.block})"
            ),
            figures={
                "mean_abs_residual_before": before,
                "mean_abs_residual_after": after,
                "window_blocks": width,
                "block": self.block,
            },
            ts=ts,
        )

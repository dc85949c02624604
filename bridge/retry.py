"""Bounded retries: exponential backoff with full jitter, and the failure a person acts on.

Every Kinesis or S3 error the bridge meets is retried under one
:class:`RetryPolicy`: the delay before attempt ``n`` is drawn uniformly from
``[0, min(cap, base * 2**n)]`` ("full jitter"), and once the same work has
kept failing for ``give_up_after`` seconds the bridge stops with a
:class:`BridgeFailure` whose message says what failed and what to check.
Nothing is dropped on the way: unacknowledged MQTT messages stay queued in the
broker's persistent session until a later run forwards them.

>>> policy = RetryPolicy(base=0.1, cap=1.0, give_up_after=5.0)
>>> all(0.0 <= policy.delay(n) <= min(1.0, 0.1 * 2**n) for n in range(10))
True
>>> attempts = Attempts(policy, "PutRecords to stream 's'", abort=threading.Event(),
...                     clock=iter([0.0, 10.0]).__next__, sleep=lambda s: False)
>>> attempts.failed("InternalFailure", "boom")      # first failure at t=0: wait and retry
>>> try:
...     attempts.failed("InternalFailure", "boom")  # still failing at t=10 > 5: give up
... except BridgeFailure as exc:
...     print(exc.code)
InternalFailure
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Aborted", "Attempts", "BridgeFailure", "RetryPolicy"]


class BridgeFailure(RuntimeError):
    """The bridge cannot go on; ``str(exc)`` tells a person what to check.

    Raised past the retry bound or on an error that retrying cannot fix
    (stream deleted, access denied).  ``code`` is the last error code.
    """

    def __init__(self, message: str, code: str = "unknown") -> None:
        super().__init__(message)
        self.code = code


class Aborted(RuntimeError):
    """Retrying was cut short because the bridge is shutting down (work stays unacknowledged)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff shape and bound shared by every retried call of the bridge."""

    base: float = 0.05
    cap: float = 2.0
    give_up_after: float = 120.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based), with full jitter."""
        return random.uniform(0.0, min(self.cap, self.base * (2 ** min(attempt, 30))))


@dataclass(eq=False)
class Attempts:
    """The retry state of one unit of work (a batch, a dead-letter file).

    Call :meth:`failed` after each failed attempt: it sleeps the backoff
    delay (``sleep``: by default a wait on ``abort``), or raises
    :class:`BridgeFailure` past the bound (its message ends with ``hint``),
    or :class:`Aborted` when ``abort`` is set during the wait.
    """

    policy: RetryPolicy
    what: str
    abort: threading.Event
    hint: str = field(default="", kw_only=True)
    clock: Callable[[], float] = field(default=time.monotonic, kw_only=True)
    sleep: Callable[[float], bool] | None = field(default=None, kw_only=True)
    count: int = field(default=0, init=False)
    first_failure: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.sleep is None:
            self.sleep = self.abort.wait

    def failed(self, code: str, detail: str) -> None:
        now = self.clock()
        if self.first_failure is None:
            self.first_failure = now
        elapsed = now - self.first_failure
        if elapsed > self.policy.give_up_after:
            raise BridgeFailure(
                f"{self.what} kept failing for {elapsed:.0f}s ({self.count + 1} attempts; "
                f"last error {code}: {detail}). {self.hint}".strip(),
                code,
            )
        delay = self.policy.delay(self.count)
        self.count += 1
        sleep = self.sleep or self.abort.wait  # set by __post_init__
        if sleep(delay) or self.abort.is_set():
            raise Aborted(f"{self.what}: shutting down while retrying ({code})")

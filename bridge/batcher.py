"""A lane: one ordered queue of records that leaves in batches.

The bridge gives each device one lane for life and each lane one sender, so a
device's records leave in the order they arrived and two batches holding the
same device are never in flight together; several lanes send at once.
:meth:`Lane.take` returns up to ``max_records`` items and ``max_bytes``
bytes, waiting at most ``linger`` seconds after the oldest queued item
arrived for the batch to fill.

>>> lane = Lane(max_records=2, max_bytes=100, linger=0.0)
>>> for n in range(3):
...     lane.put(f"r{n}", size=10)
True
True
True
>>> lane.take(), lane.take()
(['r0', 'r1'], ['r2'])
>>> lane.close(); lane.take() is None
True
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

__all__ = ["Lane"]


class Lane:
    """A bounded-by-the-caller FIFO with size/count/linger batching; thread-safe."""

    def __init__(
        self, max_records: int = 500, max_bytes: int = 5 * 1024 * 1024, linger: float = 0.02
    ):
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.linger = linger
        self._items: deque[tuple[float, int, Any]] = deque()
        self._bytes = 0
        self._closed = False
        self._cond = threading.Condition()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Any, size: int) -> bool:
        """Queue ``item`` (``size`` bytes); False when the lane is closed (the caller keeps it)."""
        with self._cond:
            if self._closed:
                return False
            self._items.append((time.monotonic(), size, item))
            self._bytes += size
            if (
                len(self._items) == 1
                or len(self._items) >= self.max_records
                or self._bytes >= self.max_bytes
            ):
                self._cond.notify()
        return True

    def close(self) -> None:
        """Take no more items; :meth:`take` hands out what is queued, then returns None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def take(self) -> list[Any] | None:
        """The next batch (waits for one), or None once closed and empty."""
        with self._cond:
            while not self._items:
                if self._closed:
                    return None
                self._cond.wait()
            deadline = self._items[0][0] + self.linger
            while (
                not self._closed
                and len(self._items) < self.max_records
                and self._bytes < self.max_bytes
                and (remaining := deadline - time.monotonic()) > 0
            ):
                self._cond.wait(remaining)
            batch: list[Any] = []
            size = 0
            while self._items and len(batch) < self.max_records:
                item_size = self._items[0][1]
                if batch and size + item_size > self.max_bytes:
                    break
                _, item_size, item = self._items.popleft()
                size += item_size
                batch.append(item)
            self._bytes -= size
            return batch

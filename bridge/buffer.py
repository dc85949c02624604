"""The bridge's bounded buffer: messages received and not yet settled.

Every message takes a slot from arrival until it is *settled*: acknowledged
after Kinesis accepted it or the dead letter holds it, or released without
acknowledgement (shutdown, fatal error: the broker redelivers it later).
When all slots are taken :meth:`Buffer.admit` waits, which holds up paho's
network thread, so nothing more is read from the broker; with the MQTT
``ReceiveMaximum`` set to the same capacity the broker stops sending first.

>>> acked = []
>>> buf = Buffer(2, ack=lambda m: acked.append(m) or True)
>>> buf.admit("m1"), buf.admit("m2"), len(buf)
(True, True, 2)
>>> buf.admit("m3", timeout=0.01)
False
>>> buf.settle(["m1"], ack=True); acked, len(buf)
(['m1'], 1)

A message may carry several readings (a device's batch), each settled on its own
(forwarded, or dead-lettered): the message is settled when its last part is, and
acknowledged only when every part was delivered (:meth:`Buffer.settle_parts`).

>>> held = Held("m2", parts=2)
>>> buf.settle_parts([held], ok=True); acked
['m1']
>>> buf.settle_parts([held], ok=True); acked, len(buf)
(['m1', 'm2'], 0)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from monitoring.metrics import BRIDGE_BUFFER, BRIDGE_BUFFER_CAPACITY, BRIDGE_OLDEST_UNACKED

__all__ = ["Buffer", "Held"]


@dataclass(eq=False, slots=True)
class Held:
    """A message in the buffer and how many of its parts (readings) are not settled yet."""

    message: Any
    parts: int
    ok: bool = True


class Buffer:
    """At most ``capacity`` unsettled messages; tracks the age of the oldest one."""

    def __init__(self, capacity: int, ack: Callable[[Any], bool]) -> None:
        self.capacity = capacity
        self._ack = ack
        self._slots = threading.Semaphore(capacity)
        self._held: dict[int, tuple[Any, float]] = {}  # id(message) -> (message, arrival), in order
        self._lock = threading.Lock()
        self._parts_lock = threading.Lock()
        self.acked = 0
        self.unacked_released = 0
        BRIDGE_BUFFER_CAPACITY.set(capacity)
        BRIDGE_BUFFER.set_function(lambda: len(self._held))
        BRIDGE_OLDEST_UNACKED.set_function(self.oldest_age)

    def __len__(self) -> int:
        return len(self._held)

    def admit(self, message: Any, timeout: float | None = None) -> bool:
        """Take a slot for ``message`` (waits while full); False if none came within ``timeout``."""
        if not self._slots.acquire(timeout=timeout):
            return False
        with self._lock:
            self._held[id(message)] = (message, time.monotonic())
        return True

    def settle(self, messages: Iterable[Any], ack: bool) -> None:
        """Free the slots of ``messages``, acknowledging them to the broker when ``ack``."""
        for message in messages:
            if ack and self._ack(message):
                self.acked += 1
            elif not ack:
                self.unacked_released += 1
            with self._lock:
                del self._held[id(message)]
            self._slots.release()

    def settle_parts(self, parts: Iterable[Held], ok: bool) -> None:
        """One part of each of ``parts`` is settled (delivered when ``ok``); a message whose
        last part this was is settled, acknowledged when all its parts were delivered."""
        acked: list[Any] = []
        released: list[Any] = []
        with self._parts_lock:
            for held in parts:
                held.parts -= 1
                held.ok = held.ok and ok
                if held.parts == 0:
                    (acked if held.ok else released).append(held.message)
        if acked:
            self.settle(acked, ack=True)
        if released:
            self.settle(released, ack=False)

    def oldest_age(self) -> float:
        """Seconds since the oldest unsettled message arrived (0 when empty)."""
        with self._lock:
            if not self._held:
                return 0.0
            _, arrived = next(iter(self._held.values()))
        return time.monotonic() - arrived

"""The soak's load: synthetic devices publishing over MQTT at a sustained rate.

``--devices`` synthetic devices publish (paho, QoS 1, ``--publishers`` clients
in threads) at ``--rate`` readings/s in total for ``--duration`` seconds.
Readings: the values of the three calibrated devices of ``telemetry.generate``
(no faults), replayed by device ``k`` from profile ``k % 3`` at an offset with
a small temperature shift; ``ts`` is the wall clock at which the reading is
due, so each device's readings are ``devices / rate`` seconds apart; every
payload passes ``telemetry.reading.decode_payload`` (checked on the first
thousand before the run).  Each publisher records, per message, the device,
the ``ts`` and when it called publish (:class:`PubLog`), so a reading found
later (learned, predicted) is joined with its publish time
(:meth:`Load.published_at`).

>>> [d.id for d in make_devices(2)]
['02:50:00:00:00:00', '02:50:00:00:00:01']
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from iotcast.stack import HOST
from telemetry.generate import Faults, generate
from telemetry.reading import Reading, decode_payload, encode, topic_for

__all__ = ["Device", "Load", "PubLog", "Publisher", "base_series", "make_devices", "reading_for"]


# ------------------------------------------------------------------ readings
def base_series(minutes: float = 120.0) -> list[list[tuple]]:
    """Value tuples (co, humidity, light, lpg, motion, smoke, temp) of the 3 calibrated devices."""
    series: dict[str, list[tuple]] = {}
    for r in generate(days=minutes / 1440, seed=1, faults=Faults.none()):
        series.setdefault(r.device, []).append(
            (r.co, r.humidity, r.light, r.lpg, r.motion, r.smoke, r.temp)
        )
    return [series[d] for d in sorted(series)]


@dataclass
class Device:
    """A synthetic device: an id, a base profile, an offset into it and a temperature shift."""

    index: int
    id: str
    topic: str
    profile: int
    offset: int
    shift: float


def make_devices(n: int) -> list[Device]:
    out = []
    for k in range(n):
        dev = f"02:50:{k >> 24 & 255:02x}:{k >> 16 & 255:02x}:{k >> 8 & 255:02x}:{k & 255:02x}"
        shift = round(((k * 7919) % 41 - 20) / 10, 1)  # -2.0 .. +2.0 °C, deterministic
        out.append(Device(k, dev, topic_for(dev), k % 3, (k * 104729) % 997, shift))
    return out


def reading_for(dev: Device, step: int, ts: float, series: list[list[tuple]]) -> Reading:
    values = series[dev.profile]
    co, hum, light, lpg, motion, smoke, temp = values[(dev.offset + step) % len(values)]
    temp = min(79.0, max(-39.0, round(temp + dev.shift, 1)))
    return Reading(ts, dev.id, co, hum, light, lpg, motion, smoke, temp)


# ------------------------------------------------------------------ publisher
@dataclass
class PubLog:
    """What one publisher thread sent: message i -> device index, ts (due), publish wall time."""

    device: array = field(default_factory=lambda: array("I"))
    ts: array = field(default_factory=lambda: array("d"))
    published: array = field(default_factory=lambda: array("d"))
    acked: int = 0
    errors: int = 0


@dataclass(frozen=True)
class Schedule:
    """When a publisher's messages are due: message ``i`` at ``start + i / rate`` (both clocks)."""

    rate: float
    start_mono: float
    start_wall: float

    def due(self, i: int) -> float:
        return self.start_mono + i / self.rate

    def ts_of(self, i: int) -> float:
        return self.start_wall + i / self.rate

    def index_of(self, ts: float) -> int:
        return round((ts - self.start_wall) * self.rate)


class Publisher(threading.Thread):
    """One paho client publishing its ``devices`` round-robin on ``schedule``, QoS 1."""

    def __init__(
        self,
        idx: int,
        port: int,
        devices: list[Device],
        series: list[list[tuple]],
        schedule: Schedule,
        stop: threading.Event,
        max_outstanding: int = 5000,
    ) -> None:
        super().__init__(name=f"publisher-{idx}", daemon=True)
        self.devices, self.series, self.schedule = devices, series, schedule
        self.stop_event = stop
        self.log = PubLog()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"soak-pub-{idx}-{os.getpid()}"
        )
        # No client-side queue: paho walks its whole message table per PUBACK when messages
        # wait for an inflight slot, and message ids wrap at 65,535. Backpressure is ours (run).
        self.client.max_inflight_messages_set(0)
        self.client.max_queued_messages_set(0)
        self.max_outstanding = max_outstanding
        self.waited = 0.0  # seconds spent waiting for PUBACKs (the broker side held us back)
        self.client.on_publish = self._on_publish
        self.client.connect(HOST, port, keepalive=60)
        self.client.loop_start()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self.log.acked += 1

    def run(self) -> None:
        log, devs, n, plan = self.log, self.devices, len(self.devices), self.schedule
        i = 0
        while not self.stop_event.is_set():
            due = plan.due(i)
            now = time.monotonic()
            if due > now:
                time.sleep(min(due - now, 0.05))
                continue
            # everything due now, then sleep again (catches up if it fell behind)
            while i < (now - plan.start_mono) * plan.rate + 1 and not self.stop_event.is_set():
                if i - log.acked >= self.max_outstanding:
                    t = time.monotonic()
                    while i - log.acked >= self.max_outstanding and not self.stop_event.is_set():
                        time.sleep(0.001)
                    self.waited += time.monotonic() - t
                    break
                dev = devs[i % n]
                ts = plan.ts_of(i)
                payload = encode(reading_for(dev, i // n, ts, self.series))
                log.published.append(time.time())
                info = self.client.publish(dev.topic, payload, qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    log.errors += 1
                log.device.append(dev.index)
                log.ts.append(ts)
                i += 1

    def finish(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.log.acked < len(self.log.ts) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.client.disconnect()
        self.client.loop_stop()


# ------------------------------------------------------------------ the load
class Load:
    """The publishers of one soak, their logs and the publishing phase's start and end."""

    def __init__(self, args: argparse.Namespace, say: Callable[[str], None]) -> None:
        self.args = args
        self.say = say
        self.publishers: list[Publisher] = []
        self.device_index: dict[str, int] = {}
        self.t_start = self.t_stop = 0.0  # wall
        self.waited: list[float] = []

    def sent(self) -> int:
        return sum(len(p.log.ts) for p in self.publishers)

    def acked(self) -> int:
        return sum(p.log.acked for p in self.publishers)

    def published_at(self, device: str, ts: float) -> float | None:
        """Publish wall time of (device, ts), or None if this bench did not publish it."""
        k = self.device_index.get(device)
        if k is None or not self.publishers:
            return None
        pub = self.publishers[k % len(self.publishers)]
        i = pub.schedule.index_of(ts)
        if 0 <= i < len(pub.log.published) and pub.log.device[i] == k and pub.log.ts[i] == ts:
            return pub.log.published[i]
        return None

    def run(self, port: int, last_poll: Callable[[], dict[str, Any]]) -> None:
        """Publish for ``--duration`` seconds to the broker on ``port``; a progress line a
        minute (``last_poll()``: the latest figures of the pipeline)."""
        a = self.args
        series = base_series()
        devices = make_devices(a.devices)
        self.device_index = {d.id: d.index for d in devices}
        for d in devices[:1000]:  # the data contract, on a sample, before the run
            r = reading_for(d, 0, time.time(), series)
            decode_payload(encode(r), d.topic)
        stop = threading.Event()
        n = a.publishers
        start_mono, start_wall = time.monotonic() + 0.5, time.time() + 0.5
        schedule = Schedule(a.rate / n, start_mono, start_wall)
        self.publishers = [
            Publisher(j, port, devices[j::n], series, schedule, stop) for j in range(n)
        ]
        self.t_start = start_wall
        self.say(
            f"publishing: {a.devices} devices, {a.rate:g} readings/s in total over {n} "
            f"client(s), for {a.duration:g} s"
        )
        for p in self.publishers:
            p.start()
        next_report = time.monotonic() + 60
        end = start_mono + a.duration
        while time.monotonic() < end:
            time.sleep(min(1.0, end - time.monotonic()) if end > time.monotonic() else 0)
            if time.monotonic() >= next_report:
                next_report += 60
                last = last_poll()
                self.say(
                    f"  t={time.time() - start_wall:5.0f}s published {last.get('published', 0):,.0f}"
                    f" bridge fwd {last.get('bridge_forwarded', 0):,.0f}"
                    f" learned {last.get('iotcast_readings_learned_total', 0):,.0f}"
                    f" lag {last.get('lag_max')}"
                )
        stop.set()
        for p in self.publishers:
            p.join(10)
        self.t_stop = time.time()
        for p in self.publishers:
            p.finish(30)
        sent, acked = self.sent(), self.acked()
        self.waited = waited = [round(p.waited, 1) for p in self.publishers]
        self.say(
            f"publisher stopped: {sent:,} published, {acked:,} acknowledged (PUBACK); seconds "
            f"spent waiting for PUBACKs (over {self.publishers[0].max_outstanding} outstanding) "
            f"per client: {waited}"
        )

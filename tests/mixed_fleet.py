"""A mixed fleet of real-looking sensors, as payloads built by hand, and what must come of it.

The devices (``N`` readings each, ``STEP`` seconds apart, interleaved in time order):

- ``full-a``, ``full-b``: the seven sensors; ``full-a`` sends ``co`` as a string now and
  then, ``full-b`` ``light`` as ``1`` and ``smoke`` out of range (each value dropped, the
  reading kept);
- ``th-a``, ``th-b``: temperature and humidity; ``th-a`` sometimes sends humidity alone,
  ``th-b`` sometimes a temperature of 900 (dropped): readings lacking the target;
- ``t-a``, ``t-b``: temperature only;
- ``hstop``: temperature and humidity, then from halfway temperature only (the field absent);
- ``sat``: humidity at saturation, 100.5 and 102 (clipped to 100) and once 106 (dropped);
- ``pres``: temperature, humidity and an extra ``pressure`` (declared: a feature) and
  ``wind`` (undeclared: ignored);
- ``h-only``: humidity only, never the target: no model set, no series;

plus a few payloads with nothing usable (``no_sensor``), under ``t-a``'s id.

The expectations are counted while building, not by decoding (the decoder is under test).

>>> f = build()
>>> len(f.messages) == f.records and f.records == sum(f.learned.values()) + f.no_target + len(f.unusable)
True
>>> dict(f.clipped)
{('humidity', 'clipped'): 24}
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import orjson

__all__ = ["DEVICES", "EXTRA", "Fleet", "TEMP_DEVICES", "build"]

START = 1_594_512_000.0
STEP = 10.0
N = 120
EXTRA = "pressure"  # declared to the processor (--extra-features)
TEMP_DEVICES = ("full-a", "full-b", "th-a", "th-b", "t-a", "t-b", "hstop", "sat", "pres")
DEVICES = (*TEMP_DEVICES, "h-only")
UNUSABLE = (
    {"temp": None},
    {},
    {"temp": "hot", "humidity": -20.0},
    {"light": 1, "motion": None},
)


@dataclass
class Fleet:
    """The payloads in publish order and what the pipeline must make of them."""

    messages: list[tuple[str, bytes]] = field(default_factory=list)  # (device, payload)
    learned: Counter = field(default_factory=Counter)  # device -> readings with the target
    no_target: int = 0
    dropped: Counter = field(default_factory=Counter)  # (field, reason) -> values
    clipped: Counter = field(default_factory=Counter)
    unusable: list[bytes] = field(default_factory=list)  # nothing usable: no_sensor
    noted: set[bytes] = field(default_factory=set)  # payloads with a value dropped or clipped

    @property
    def records(self) -> int:
        return len(self.messages)

    def metric(self, which: str) -> dict[str, float]:
        """``{labels: value}`` as :func:`tests.support.metric_values` reads the counter."""
        counts = self.dropped if which == "dropped" else self.clipped
        return {f'field="{f}",reason="{r}"': float(n) for (f, r), n in counts.items()}


def _data(device: str, i: int, fleet: Fleet) -> dict[str, object]:
    """The ``data`` of reading ``i`` of ``device``; counts what validation must do to it."""
    temp = round(21.0 + 2.0 * ((i * 7 + len(device)) % 13) / 13 + 0.01 * i, 2)
    humidity = round(45.0 + ((i * 5) % 11), 1)
    drop, clip = fleet.dropped, fleet.clipped
    if device.startswith("full-"):
        d: dict[str, object] = {
            "co": 0.004, "humidity": humidity, "light": i % 9 == 0, "lpg": 0.007,
            "motion": i % 17 == 0, "smoke": 0.02, "temp": temp,
        }  # fmt: skip
        if device == "full-a" and i % 20 == 5:
            d["co"] = "high"
            drop["co", "wrong_type"] += 1
        if device == "full-b" and i % 30 == 11:
            d["light"], d["smoke"] = 1, 250.0
            drop["light", "wrong_type"] += 1
            drop["smoke", "out_of_range"] += 1
        return d
    if device == "th-a":
        return {"humidity": humidity} if i % 25 == 7 else {"temp": temp, "humidity": humidity}
    if device == "th-b":
        if i % 40 == 13:
            drop["temp", "out_of_range"] += 1
            return {"temp": 900.0, "humidity": humidity}
        return {"temp": temp, "humidity": humidity}
    if device.startswith("t-"):
        return {"temp": temp}
    if device == "hstop":
        return {"temp": temp, "humidity": humidity} if i < N // 2 else {"temp": temp}
    if device == "sat":
        h = 96.0 + (i % 4)
        if i % 10 == 3:
            h = 100.5
        elif i % 10 == 6:
            h = 102.0
        elif i == 9:
            h = 106.0
        if h > 100.0:
            if h <= 105.0:
                clip["humidity", "clipped"] += 1
            else:
                drop["humidity", "out_of_range"] += 1
        return {"temp": temp, "humidity": h}
    if device == "pres":
        return {"temp": temp, "humidity": humidity, EXTRA: 1013.0 + (i % 7), "wind": 3.5}
    assert device == "h-only"
    return {"humidity": humidity}


def build() -> Fleet:
    fleet = Fleet()
    for i in range(N):
        for k, device in enumerate(DEVICES):
            before = sum(fleet.dropped.values()) + sum(fleet.clipped.values())
            data = _data(device, i, fleet)
            payload = orjson.dumps({"data": data, "device_id": device, "ts": START + i * STEP + k})
            fleet.messages.append((device, payload))
            if sum(fleet.dropped.values()) + sum(fleet.clipped.values()) > before:
                fleet.noted.add(payload)
            temp = data.get("temp")
            if isinstance(temp, float) and -55.0 <= temp <= 125.0:
                fleet.learned[device] += 1
            else:
                fleet.no_target += 1
        if i % 30 == 15:  # nothing usable: dead-lettered, reason no_sensor
            data = UNUSABLE[(i // 30) % len(UNUSABLE)]
            payload = orjson.dumps({"data": data, "device_id": "t-a", "ts": START + i * STEP + 0.5})
            fleet.messages.append(("t-a", payload))
            fleet.unusable.append(payload)
    return fleet

"""Plant sensor faults into a stream of readings, with their truth: what an anomaly detector
must find.

:func:`plant` takes readings (any source: :func:`telemetry.generate.generate` with
``Faults.none()`` for otherwise clean data) and, per device, at random times drawn from
``seed``, plants:

``spike``
    one reading's temperature off by ``spike_c`` (either sign);
``stuck``
    temperature and humidity repeat one value for ``stuck_s`` (the gases go on);
``dropout``
    the device sends nothing for ``dropout_s``;
``drift``
    the temperature drifts away linearly over ``drift_s``, then jumps back (a sensor losing
    its calibration until it is reset), by ``drift_c`` or ``drift_sds`` times the device's
    own temperature standard deviation so far, whichever is larger: a drift smaller than
    what the device does by itself (the variable device swings 2 °C a day) is no anomaly
    anyone could tell from its readings;
``gas_leak``
    co, lpg and smoke rise together, ``leak_factor`` times their level over ``leak_s``,
    then fall back.

Each device gets ``per_day`` faults of each kind a day (at least one over the span), at
times that do not overlap (a gap of an hour between two), none in the first hour (the
detectors learn the device's usual first) and no drift nor gas leak in the first day (a
departure from the device's usual level needs that level, a daily cycle of it). The truth
is a list of :class:`Planted` (device, kind, start, end), which :func:`windows` writes in
the ``--windows`` format of ``iotcast evaluate``.

From the command line, a generated span with faults planted and its windows file (the
planted week of ``docs/forecasting.md``)::

    python -m telemetry.plant --days 7 --seed 1 --out planted.csv --windows planted.windows.json

>>> from telemetry.generate import Faults, generate
>>> readings, truth = plant(generate(days=1, seed=1, faults=Faults.none()), seed=1, days=1)
>>> sorted({p.kind for p in truth})
['drift', 'dropout', 'gas_leak', 'spike', 'stuck']
>>> n = sum(1 for _ in readings)
>>> n > 0
True
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from telemetry.reading import Reading

__all__ = ["KINDS", "Planted", "plant", "windows"]

KINDS = ("spike", "stuck", "dropout", "drift", "gas_leak")
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Planted:
    """One planted fault: ``device``, ``kind`` and its time span (a spike: one reading)."""

    device: str
    kind: str
    start: float
    end: float


@dataclass(frozen=True)
class Sizes:
    """How large each planted fault is (see the module docstring)."""

    spike_c: float = 8.0
    stuck_s: float = 1800.0
    dropout_s: float = 1200.0
    drift_c: float = 4.0
    drift_sds: float = 6.0
    drift_s: float = 4 * 3600.0
    leak_factor: float = 20.0
    leak_s: float = 3600.0


def _schedule(
    devices: Iterable[str], start: float, days: float, per_day: float, rng: random.Random, s: Sizes
) -> list[Planted]:
    span = days * DAY
    length = {"spike": 0.0, "stuck": s.stuck_s, "dropout": s.dropout_s, "drift": s.drift_s,
              "gas_leak": s.leak_s}  # fmt: skip
    first = {"drift": DAY, "gas_leak": DAY}  # level faults: after the device's usual level
    out: list[Planted] = []
    for device in sorted(devices):
        taken: list[tuple[float, float]] = []
        for kind in KINDS:
            for _ in range(max(1, round(per_day * days))):
                for _attempt in range(100):
                    # not in the first hour: the detectors learn the device's usual first
                    skip = min(first.get(kind, 3600.0), span / 2.0)
                    t0 = start + skip + rng.random() * max(span - skip - length[kind], 1.0)
                    t1 = t0 + length[kind]
                    if all(t1 + 3600.0 < a or t0 > b + 3600.0 for a, b in taken):
                        taken.append((t0, t1))
                        out.append(Planted(device, kind, t0, t1))
                        break
    return sorted(out, key=lambda p: (p.start, p.device))


def plant(
    readings: Iterable[Reading],
    *,
    seed: int = 0,
    days: float,
    start: float | None = None,
    devices: Iterable[str] | None = None,
    per_day: float = 1.0,
    sizes: Sizes | None = None,
) -> tuple[Iterator[Reading], list[Planted]]:
    """The readings with faults planted, and the truth (known before the first reading).

    ``days`` and ``start`` (default: :data:`telemetry.generate.START_TS`) bound the span,
    ``devices`` (default: the generator's devices for ``seed``... given explicitly when the
    readings come from elsewhere) the devices that get faults.
    """
    from telemetry.generate import START_TS, profiles_for

    s = sizes or Sizes()
    start = START_TS if start is None else start
    if devices is None:
        devices = [p.device for p in profiles_for(3, seed)]
    truth = _schedule(devices, start, days, per_day, random.Random(seed ^ 0x5EED), s)
    by_device: dict[str, list[Planted]] = {}
    for p in truth:
        by_device.setdefault(p.device, []).append(p)
    return _apply(readings, by_device, s), truth


def _apply(
    readings: Iterable[Reading], by_device: dict[str, list[Planted]], s: Sizes
) -> Iterator[Reading]:
    held: dict[str, tuple[float | None, float | None]] = {}  # stuck values per device
    spiked: set[tuple[str, float]] = set()
    spread: dict[str, list[float]] = {}  # per device: n, mean, m2 of its true temperature
    drift_c: dict[tuple[str, float], float] = {}  # each drift's size, fixed at its start
    for r in readings:
        faults = by_device.get(r.device, ())
        if r.temp is not None:
            w = spread.setdefault(r.device, [0.0, 0.0, 0.0])
            w[0] += 1.0
            d = r.temp - w[1]
            w[1] += d / w[0]
            w[2] += d * (r.temp - w[1])
        out: Reading | None = r
        for p in faults:
            if not p.start <= r.ts <= p.end + (1e9 if p.kind == "spike" else 0.0):
                continue
            assert out is not None
            if p.kind == "spike":
                if (p.device, p.start) in spiked or out.temp is None:
                    continue
                spiked.add((p.device, p.start))
                sign = 1.0 if int(p.start) % 2 else -1.0
                out = replace(out, temp=round(out.temp + sign * s.spike_c, 1))
            elif p.kind == "stuck":
                key = f"{p.device}@{p.start}"
                if key not in held:
                    held[key] = (out.temp, out.humidity)
                temp, hum = held[key]
                out = replace(out, temp=temp, humidity=hum)
            elif p.kind == "dropout":
                out = None
                break
            elif p.kind == "drift" and out.temp is not None:
                key2 = (p.device, p.start)
                if key2 not in drift_c:
                    n, _, m2 = spread.get(p.device, (0.0, 0.0, 0.0))
                    sd = (m2 / (n - 1.0)) ** 0.5 if n > 1 else 0.0
                    drift_c[key2] = max(s.drift_c, s.drift_sds * sd)
                frac = (r.ts - p.start) / max(p.end - p.start, 1.0)
                out = replace(out, temp=round(out.temp + drift_c[key2] * frac, 1))
            elif p.kind == "gas_leak":
                frac = (r.ts - p.start) / max(p.end - p.start, 1.0)
                k = 1.0 + (s.leak_factor - 1.0) * frac
                out = replace(
                    out,
                    co=None if out.co is None else out.co * k,
                    lpg=None if out.lpg is None else out.lpg * k,
                    smoke=None if out.smoke is None else out.smoke * k,
                )
        if out is not None:
            yield out


def windows(truth: Iterable[Planted], path: str | Path) -> None:
    """Write the truth as ``iotcast evaluate --windows`` reads it: per device, each fault's
    span and the minute after it (a spike's confirmation, the return of a stuck or drifted
    sensor: the reading that ends a fault is part of it)."""
    devices: dict[str, list[list[float]]] = {}
    faults = []
    for p in truth:
        end = p.end + 60.0
        devices.setdefault(p.device, []).append([p.start, end])
        faults.append({"device": p.device, "kind": p.kind, "start": p.start, "end": p.end})
    Path(path).write_text(json.dumps({"devices": devices, "faults": faults}, indent=1))


def main(argv: list[str] | None = None) -> int:
    """``python -m telemetry.plant``: a generated span with faults planted, and its windows."""
    import argparse

    from telemetry.csvfile import write_csv
    from telemetry.generate import Faults, generate

    ap = argparse.ArgumentParser(prog="python -m telemetry.plant", description=main.__doc__)
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--devices", type=int, default=3)
    ap.add_argument("--out", required=True, help="telemetry CSV to write")
    ap.add_argument("--windows", required=True, help="windows JSON to write (with the kinds)")
    a = ap.parse_args(argv)
    clean = generate(days=a.days, seed=a.seed, devices=a.devices, faults=Faults.none())
    from telemetry.generate import profiles_for

    devices = [p.device for p in profiles_for(a.devices, a.seed)]
    readings, truth = plant(clean, seed=a.seed, days=a.days, devices=devices)
    n = write_csv(a.out, readings)
    windows(truth, a.windows)
    print(f"{n:,} readings, {len(truth)} planted faults: {a.out}, {a.windows}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

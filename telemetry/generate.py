"""A calibrated synthetic week of telemetry, in arrival order, deterministic for a seed.

The public ``iot_telemetry_data.csv`` is not shipped here, so this module
makes data that behaves like it (DESIGN.md, "Message format" gives the
figures).  The model of the data, per device:

* **Reporting**: intervals are gamma distributed (shape 4) around the
  device's mean interval (3.7 s, 6.2 s, 6.5 s for the three real devices), so
  readings come irregularly, a few seconds apart.  Arrival order is event
  order except for the faults below; devices are merged by arrival time.
* **Temperature** (°C, in DHT22 steps of 0.1):
  ``mean + amplitude * cos(2π (hour - peak) / 24) + drift(day) + noise``:
  a diurnal cycle peaking in the afternoon, a day-to-day drift (one normal
  offset per day, interpolated linearly between day midpoints) and an AR(1)
  noise with a 10-minute time constant.  The three parts are sized so the
  device's overall standard deviation matches the table (0.48, 0.64, 2.03).
  A light that is on warms its sensor slightly (``light_heat``).
* **Humidity** (%, steps of 0.1): ``mean + std * (corr * z + sqrt(1 - corr²) * e)``
  where ``z`` is the standardised temperature and ``e`` an AR(1) noise: the
  temperature–humidity correlation is −0.37, +0.29 and −0.40 as measured.
* **Light**: a two-state Markov chain per device whose switch-on probability
  follows the day (more likely in daytime), tuned so the share of readings
  with light on is 1.6 %, 3.2 % and ~100 %.
* **Motion**: rare independent events (0.10 %, 0.02 %, 0.37 % of readings),
  more likely in daytime.
* **Gases** (CO, LPG, smoke): one MQ-2 style sensor: a latent log-level
  ``g`` (AR(1), 30-minute time constant) drives all three,
  ``co = co0 * exp(g)``, ``lpg = lpg0 * exp(0.73 g)``, ``smoke = smoke0 * exp(0.77 g)``,
  each with a small independent noise, so they correlate strongly.

Faults, at low configurable rates (:class:`Faults`; defaults in brackets):

* **gaps** [2 per device-day]: the device is silent for 2–20 minutes;
* **duplicates** [0.2 % of readings]: the same reading arrives twice in a row;
* **out of order** [0.1 % of readings]: a reading is held back and arrives
  after the device's next 1–5 readings (its ``ts`` is older than one already seen);
* **stuck sensor** [0.5 per device-day]: temperature and humidity repeat one
  value for 5–30 minutes while the gases go on;
* **glitches** [0.002 % of readings]: temperature 0.0 and humidity ~1 %, as
  the real file holds (:func:`telemetry.reading.is_glitch` flags them).

Sensors, per device (:class:`Profile`; default: all seven, for good):

* **a subset**: ``Profile.sensors``, e.g. temperature and humidity (a DHT22
  or SHT31 board) or temperature alone; the others are absent (``None``) from
  every reading.  The values are the very ones the full device would report
  (the same draws), so a subset device is its full twin with fields left out;
* **a sensor that dies**: ``Profile.dies`` holds ``(sensor, seconds after the
  start)``; from then on that field is absent.  A device left with no sensor
  falls silent.  Glitches need both temperature and humidity (the DHT22's
  failure): a device without both has none.

:func:`profiles_for` gives devices their sensors (``sensors=``, in turn) and
deaths (``dies=``); :func:`generate` takes the same arguments, or ``profiles=``.

With ``devices`` > 3, device ``k`` takes the profile ``k % 3`` with jitter
(means, spreads, interval, phase) and a MAC-like id drawn from the seed.
Every random draw comes from ``numpy.random.Generator``/``random.Random``
objects seeded from ``seed`` (one independent stream per device): the same
seed gives the same readings, byte for byte once written.  Memory is
constant in the number of readings (streams are merged with :func:`heapq.merge`).

>>> rows = list(generate(days=0.01, seed=1))
>>> sorted({r.device for r in rows})
['00:0f:00:70:91:0a', '1c:bf:ce:15:ec:4d', 'b8:27:eb:bf:9d:51']
>>> rows == list(generate(days=0.01, seed=1))
True
>>> all(abs(r.temp * 10 - round(r.temp * 10)) < 1e-9 for r in rows)
True
>>> mixed = list(generate(days=0.01, seed=1, sensors=[SENSORS, ("humidity", "temp"), ("temp",)],
...                       dies=[(0, "co", 432.0)]))
>>> sorted({r.sensors() for r in mixed})  # doctest: +NORMALIZE_WHITESPACE
[('co', 'humidity', 'light', 'lpg', 'motion', 'smoke', 'temp'), ('humidity', 'light', 'lpg',
  'motion', 'smoke', 'temp'), ('humidity', 'temp'), ('temp',)]
>>> [r.temp for r in mixed if r.device == "1c:bf:ce:15:ec:4d"][:3] == [
...     r.temp for r in rows if r.device == "1c:bf:ce:15:ec:4d"][:3]
True
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from telemetry.reading import SENSORS, Reading, _build

__all__ = [
    "PROFILES",
    "SENSORS",
    "START_TS",
    "Faults",
    "Profile",
    "expected_rows",
    "generate",
    "profiles_for",
]

START_TS = 1_594_512_000.0  # 2020-07-12T00:00:00Z, the start of the public data
DAY = 86_400.0
_CHUNK = 4096
_exp = math.exp
_TEMP_TAU_S = 600.0
_HUM_TAU_S = 900.0
_GAS_TAU_S = 1800.0


@dataclass(frozen=True)
class Faults:
    """Fault rates of the generator (see the module docstring).

    >>> Faults.none().duplicate_rate
    0.0
    """

    gaps_per_day: float = 2.0
    gap_min_s: float = 120.0
    gap_max_s: float = 1200.0
    duplicate_rate: float = 0.002
    out_of_order_rate: float = 0.001
    stuck_per_day: float = 0.5
    stuck_min_s: float = 300.0
    stuck_max_s: float = 1800.0
    glitch_rate: float = 0.00002

    @classmethod
    def none(cls) -> Faults:
        return cls(0.0, 120.0, 1200.0, 0.0, 0.0, 0.0, 300.0, 1800.0, 0.0)


@dataclass(frozen=True)
class Profile:
    """How one device behaves; the three real devices are :data:`PROFILES`."""

    device: str
    temp_mean: float
    temp_amplitude: float  # diurnal cycle, °C (half peak-to-peak)
    temp_drift_sd: float  # day-to-day offset, °C
    temp_noise_sd: float  # AR(1) noise, °C
    peak_hour: float  # UTC hour of the daily maximum
    hum_mean: float
    hum_std: float
    hum_corr: float  # correlation with temperature
    light_share: float
    light_episode_s: float  # mean length of a light-on episode
    light_heat: float  # °C added while the light is on
    motion_share: float
    interval_s: float
    co: float
    lpg: float
    smoke: float
    gas_sd: float  # sd of the latent log gas level
    sensors: tuple[str, ...] = SENSORS  # the sensors the device has (module docstring)
    dies: tuple[tuple[str, float], ...] = ()  # (sensor, s after the start): absent from then on

    def __post_init__(self) -> None:
        unknown = [s for s in (*self.sensors, *(s for s, _ in self.dies)) if s not in SENSORS]
        if unknown or not self.sensors:
            raise ValueError(
                f"device {self.device}: sensors must be one or more of {', '.join(SENSORS)}; "
                + (f"not {', '.join(unknown)}" if unknown else "got none")
            )
        if any(not after >= 0.0 for _, after in self.dies):
            raise ValueError(f"device {self.device}: a sensor dies at 0 s after the start or later")

    @property
    def temp_std(self) -> float:
        """The overall temperature standard deviation the parts add up to (before quantising)."""
        return math.sqrt(
            self.temp_amplitude**2 / 2 + self.temp_drift_sd**2 * 2 / 3 + self.temp_noise_sd**2
        )


PROFILES: tuple[Profile, ...] = (
    # stable, warmer, drier: 22.28 / 0.48 °C, 50.81 / 1.89 %, corr -0.37
    Profile("b8:27:eb:bf:9d:51", 22.28, 0.50, 0.28, 0.18, 15.0,
            50.81, 1.89, -0.37, 0.016, 600.0, 0.15, 0.0010, 3.7,
            0.0050, 0.0077, 0.0205, 0.12),
    # stable, cooler, more humid: 19.36 / 0.64 °C, 75.44 / 1.98 %, corr +0.29
    Profile("00:0f:00:70:91:0a", 19.36, 0.75, 0.35, 0.20, 16.0,
            75.44, 1.98, 0.29, 0.032, 900.0, 0.15, 0.0002, 6.2,
            0.0029, 0.0052, 0.0135, 0.10),
    # highly variable: 26.03 / 2.03 °C, 61.91 / 8.94 %, corr -0.40, light almost always on
    Profile("1c:bf:ce:15:ec:4d", 26.03, 2.30, 1.30, 0.50, 14.0,
            61.91, 8.94, -0.40, 0.998, 6 * 3600.0, 0.0, 0.0037, 6.5,
            0.0040, 0.0066, 0.0175, 0.20),
)  # fmt: skip


def _mac(rng: random.Random) -> str:
    first = (rng.randrange(256) & 0xFC) | 0x02  # locally administered, unicast
    return ":".join(f"{b:02x}" for b in [first] + [rng.randrange(256) for _ in range(5)])


def profiles_for(
    devices: int,
    seed: int = 0,
    *,
    sensors: Sequence[Iterable[str]] = (),
    dies: Iterable[tuple[int, str, float]] = (),
) -> list[Profile]:
    """The three real profiles, then jittered copies of them with MAC-like ids.

    ``sensors``: sensor sets the devices take in turn (device ``k`` has ``sensors[k %
    len(sensors)]``); default: all seven.  ``dies``: ``(device index, sensor, seconds after
    the start)`` for each sensor that stops for good.  Neither changes any value drawn.

    >>> [p.device for p in profiles_for(4, seed=0)][:3] == [p.device for p in PROFILES]
    True
    >>> len({p.device for p in profiles_for(1000, seed=0)})
    1000
    >>> [p.sensors for p in profiles_for(3, sensors=[("temp", "humidity"), ("temp",)])]
    [('humidity', 'temp'), ('temp',), ('humidity', 'temp')]
    >>> profiles_for(2, dies=[(1, "humidity", 3600.0)])[1].dies
    (('humidity', 3600.0),)
    """
    if devices < 1:
        raise ValueError(f"devices must be >= 1, got {devices}")
    out = list(PROFILES[:devices])
    rng = random.Random(f"iotcast-devices-{seed}")
    seen = {p.device for p in out}
    for k in range(len(out), devices):
        base = PROFILES[k % 3]
        device = _mac(rng)
        while device in seen:
            device = _mac(rng)
        seen.add(device)
        scale = rng.uniform(0.8, 1.25)
        out.append(
            dataclasses.replace(
                base,
                device=device,
                temp_mean=base.temp_mean + rng.gauss(0.0, 0.8),
                temp_amplitude=base.temp_amplitude * scale,
                temp_drift_sd=base.temp_drift_sd * rng.uniform(0.8, 1.25),
                temp_noise_sd=base.temp_noise_sd * rng.uniform(0.8, 1.25),
                peak_hour=(base.peak_hour + rng.uniform(-1.5, 1.5)) % 24,
                hum_mean=min(95.0, max(5.0, base.hum_mean + rng.gauss(0.0, 3.0))),
                hum_std=base.hum_std * rng.uniform(0.8, 1.25),
                interval_s=base.interval_s * rng.uniform(0.8, 1.25),
                co=base.co * rng.uniform(0.85, 1.15),
            )
        )
    sets = []
    for chosen in sensors:
        chosen = tuple(chosen)
        unknown = [s for s in chosen if s not in SENSORS]
        if unknown:
            raise ValueError(
                f"sensors must be one or more of {', '.join(SENSORS)}; not {', '.join(unknown)}"
            )
        sets.append(tuple(s for s in SENSORS if s in chosen))
    deaths: dict[int, list[tuple[str, float]]] = {}
    for index, sensor, after in dies:
        if not 0 <= index < devices:
            raise ValueError(f"dies: no device {index} among {devices} (0 .. {devices - 1})")
        deaths.setdefault(index, []).append((sensor, float(after)))
    if sets or deaths:
        out = [
            dataclasses.replace(
                p,
                sensors=sets[k % len(sets)] if sets else p.sensors,
                dies=tuple(deaths.get(k, ())),
            )
            for k, p in enumerate(out)
        ]
    return out


def expected_rows(days: float, devices: int = 3, seed: int = 0) -> int:
    """Roughly how many readings :func:`generate` makes (for progress bars)."""
    return int(sum(days * DAY / p.interval_s for p in profiles_for(devices, seed)))


def _draws(
    rng: np.random.Generator,
    t: float,
    chunk: int,
    p: Profile,
    faults: Faults,
    gap_p: float,
    drift: tuple[np.ndarray, np.ndarray],
    light_rates: tuple[float, float],
) -> list[list[Any]]:
    """The next ``chunk`` readings' draws after time ``t``, as lists (numpy, a chunk at a time,
    ``tolist()``: Python floats, and bools for the motion draws):
    arrival times, the smooth temperature, the AR factors and innovations, the light chain's
    switch probabilities, the uniforms of the faults and the gases' noises."""
    shape = 4.0
    exp, sqrt = np.exp, np.sqrt
    dts = rng.gamma(shape, p.interval_s / shape, chunk)
    u = rng.random((8, chunk))
    z = rng.standard_normal((6, chunk))
    gaps = u[7] < gap_p
    if gaps.any():
        dts = dts + np.where(
            gaps, faults.gap_min_s + (faults.gap_max_s - faults.gap_min_s) * u[6], 0.0
        )
    ts_arr = t + np.cumsum(dts)
    daylight_arr = np.cos(2.0 * np.pi * (ts_arr / DAY - p.peak_hour / 24.0))
    base_arr = p.temp_mean + p.temp_amplitude * daylight_arr + np.interp(ts_arr, *drift)
    rho_t = exp(-dts / _TEMP_TAU_S)
    rho_h = exp(-dts / _HUM_TAU_S)
    rho_g = exp(-dts / _GAS_TAU_S)
    inn_t = sqrt(1.0 - rho_t * rho_t) * p.temp_noise_sd * z[0]
    inn_h = sqrt(1.0 - rho_h * rho_h) * z[1]
    inn_g = sqrt(1.0 - rho_g * rho_g) * p.gas_sd * z[2]
    light_off_rate, light_on_rate = light_rates
    p_off = dts * light_off_rate
    p_on = dts * light_on_rate * (1.0 + 0.8 * daylight_arr)
    motion_arr = u[1] < p.motion_share * (1.0 + 0.5 * daylight_arr)
    noise_co = 0.01 * z[3]
    noise_lpg = 0.008 * z[4]
    noise_smoke = 0.008 * z[5]
    return [
        a.tolist()
        for a in (ts_arr, base_arr, rho_t, inn_t, rho_h, inn_h, rho_g, inn_g, p_off, p_on,
                  u[0], motion_arr, u[2], u[3], u[4], u[5], noise_co, noise_lpg, noise_smoke)
    ]  # fmt: skip


def _device_stream(
    index: int, profile: Profile, seed: int, start: float, end: float, faults: Faults, chunk: int
) -> Iterator[tuple[float, int, int, Reading]]:
    """One device's readings as ``(arrival, index, seq, reading)``, in arrival order.

    Everything that does not depend on the previous reading is computed a chunk
    at a time with numpy; the loop keeps only the recursions (AR noises, light
    chain) and the faults.
    """
    ss = np.random.SeedSequence([seed, index, 0x10CA57])
    rng = np.random.Generator(np.random.PCG64(ss))
    prng = random.Random(int(ss.generate_state(1)[0]))
    p = profile
    n_days = int(math.ceil((end - start) / DAY)) + 3
    # day-to-day drift: one offset per day, linear between day midpoints (day -1 .. n_days-2)
    drift_x = start + DAY * (np.arange(n_days) - 0.5)
    drift_y = np.array([prng.gauss(0.0, p.temp_drift_sd) for _ in range(n_days)])
    temp_std = p.temp_std
    hum_corr = p.hum_corr
    hum_indep = math.sqrt(max(0.0, 1.0 - hum_corr * hum_corr))
    light_off_rate = 1.0 / p.light_episode_s  # per second
    share = min(p.light_share, 0.9999)
    light_on_rate = light_off_rate * share / (1.0 - share)
    gap_p = faults.gaps_per_day * p.interval_s / DAY
    stuck_p = faults.stuck_per_day * p.interval_s / DAY
    dup_p = faults.duplicate_rate
    ooo_p = faults.out_of_order_rate
    glitch_p = faults.glitch_rate
    device, mean, heat = p.device, p.temp_mean, p.light_heat
    # sensors: the time each one ends (absent: at once; dies: then; otherwise never)
    died = dict(p.dies)
    ends = tuple((start + died.get(s, math.inf)) if s in p.sensors else -math.inf for s in SENSORS)
    masked = any(e != math.inf for e in ends)
    silent_from = max(ends)  # no sensor left: the device sends nothing
    glitch_end = min(ends[SENSORS.index("humidity")], ends[SENSORS.index("temp")])
    hum_mean, hum_std, co0, lpg0, smoke0 = p.hum_mean, p.hum_std, p.co, p.lpg, p.smoke
    # state
    t = start + prng.uniform(0.0, p.interval_s)
    e_temp = prng.gauss(0.0, p.temp_noise_sd)
    e_hum = prng.gauss(0.0, 1.0)
    g = prng.gauss(0.0, p.gas_sd)
    light = prng.random() < share
    stuck_until = -1.0
    stuck_temp = stuck_hum = 0.0
    held: list[tuple[int, Reading]] = []  # (readings still to wait, reading)
    seq = 0
    while True:
        (ts_l, base_l, rho_t_l, inn_t_l, rho_h_l, inn_h_l, rho_g_l, inn_g_l, p_off_l, p_on_l,
         u_light, motion_l, u_stuck, u_glitch, u_dup, u_ooo, n_co, n_lpg, n_smoke) = _draws(
            rng, t, chunk, p, faults, gap_p, (drift_x, drift_y), (light_off_rate, light_on_rate)
        )  # fmt: skip
        for i in range(chunk):
            t = ts_l[i]
            if t >= end:
                for _, r in held:
                    seq += 1
                    yield t, index, seq, r
                return
            e_temp = rho_t_l[i] * e_temp + inn_t_l[i]
            e_hum = rho_h_l[i] * e_hum + inn_h_l[i]
            g = rho_g_l[i] * g + inn_g_l[i]
            # light: two-state Markov chain, switch-on more likely in daytime
            if light:
                if u_light[i] < p_off_l[i]:
                    light = False
            elif u_light[i] < p_on_l[i]:
                light = True
            true_temp = base_l[i] + e_temp
            zt = (true_temp - mean) / temp_std
            hum = hum_mean + hum_std * (hum_corr * zt + hum_indep * e_hum)
            temp = round(true_temp + heat if light else true_temp, 1)
            hum = round(100.0 if hum > 100.0 else 0.0 if hum < 0.0 else hum, 1)
            if t < stuck_until:
                temp, hum = stuck_temp, stuck_hum
            elif u_stuck[i] < stuck_p:
                stuck_until = t + prng.uniform(faults.stuck_min_s, faults.stuck_max_s)
                stuck_temp, stuck_hum = temp, hum
            sensed_temp, sensed_hum = temp, hum
            if u_glitch[i] < glitch_p:
                temp, hum = 0.0, round(prng.uniform(0.8, 1.5), 1)
            gz = g + 0.03 * zt
            values = (
                co0 * _exp(gz + n_co[i]),
                hum,
                light,
                lpg0 * _exp(0.73 * gz + n_lpg[i]),
                motion_l[i],
                smoke0 * _exp(0.77 * gz + n_smoke[i]),
                temp,
            )
            if masked:
                if t >= silent_from:
                    for _, r in held:
                        seq += 1
                        yield t, index, seq, r
                    return
                if t >= glitch_end:  # a glitch is temperature and humidity together
                    values = (*values[:1], sensed_hum, *values[2:6], sensed_temp)
                reading = _build(
                    t, device, *(v if t < e else None for v, e in zip(values, ends, strict=True))
                )
            else:
                reading = _build(t, device, *values)
            if u_ooo[i] < ooo_p:
                held.append((prng.randint(1, 5), reading))
                continue
            seq += 1
            yield t, index, seq, reading
            if u_dup[i] < dup_p:
                seq += 1
                yield t, index, seq, reading
            if held:
                keep = []
                for wait, r in held:
                    if wait <= 1:
                        seq += 1
                        yield t, index, seq, r
                    else:
                        keep.append((wait - 1, r))
                held = keep


def generate(
    days: float = 7,
    seed: int = 0,
    devices: int = 3,
    start: float = START_TS,
    *,
    faults: Faults | None = None,
    sensors: Sequence[Iterable[str]] = (),
    dies: Iterable[tuple[int, str, float]] = (),
    profiles: Sequence[Profile] | None = None,
) -> Iterator[Reading]:
    """Readings of ``devices`` devices over ``days`` days from ``start`` (epoch s), in arrival order.

    ``faults`` sets the fault rates (default :class:`Faults`; ``Faults.none()`` for clean data).
    ``sensors`` and ``dies`` give the devices their sensors as in :func:`profiles_for`;
    ``profiles`` replaces the devices altogether (then ``devices``, ``sensors`` and ``dies``
    are not used).
    """
    if days <= 0:
        raise ValueError(f"days must be > 0, got {days}")
    faults = Faults() if faults is None else faults
    end = start + days * DAY
    if profiles is None:
        profiles = profiles_for(devices, seed, sensors=sensors, dies=dies)
    elif not profiles:
        raise ValueError("profiles: give at least one device")
    budget = max(16, (1 << 16) // len(profiles))  # ~64k readings in flight: bounded memory
    streams = [
        _device_stream(
            i, p, seed, start, end, faults, min(_CHUNK, budget, int(days * DAY / p.interval_s) + 64)
        )
        for i, p in enumerate(profiles)
    ]
    for item in heapq.merge(*streams):
        yield item[3]

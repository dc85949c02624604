"""The demo's live view: figures scraped from the bridge's and processors' /metrics.

The view knows the running parts only through their Prometheus exposition
(the metric names declared in ``monitoring/metrics.py``), never through their
internals: :func:`parse_metrics` reads one /metrics text, :func:`aggregate`
folds the bridge's and every processor's into one :class:`PipelineFigures`,
:func:`render` draws it as ``rich`` tables and :func:`progress_line` as one
line of text for logs and CI (when stdout is not a terminal).

What it reads does not grow with the fleet: the fleet's counts (readings by
shard and outcome), the fleet's error distributions (served and persistence
per horizon, :class:`FleetError`), the worst device per horizon, and the
per-device series of the watched devices only (``iotcast process --watch``).
Counters and histograms are summed over processors.  A watched device's gauges
(champion, rolling MAE, last actual and prediction) are taken from the
processor whose ``iotcast_last_reading_timestamp_seconds`` for that device is
newest, since a processor that handed the device's shard over keeps exporting
its old values.

>>> bridge = parse_metrics('iotcast_bridge_readings_forwarded_total 10\\n'
...                        'iotcast_bridge_messages_received_total 11\\n'
...                        'iotcast_bridge_dead_letters_total{reason="bad_json"} 1\\n')
>>> proc = parse_metrics('iotcast_readings_learned_total{shard="s0"} 9\\n'
...                      'iotcast_readings_glitch_total{shard="s0"} 1\\n'
...                      'iotcast_device_readings_total{device="a",outcome="learned"} 4\\n')
>>> snap = aggregate(bridge, [proc])
>>> snap.forwarded, snap.dead_lettered, snap.learned, snap.accounted, snap.learned_by_device
(10, 1, 9, 10, {'a': 4})
>>> progress_line(snap, replayed=11, total=11)
'replayed 11/11  received 11  forwarded 10  dead-lettered 1  learned 9  duplicates 0  late 0  glitches 1'
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Group
from rich.table import Table
from rich.text import Text

__all__ = [
    "DeviceView",
    "FleetError",
    "METRIC_NAMES",
    "OUTCOMES",
    "Parsed",
    "Scraper",
    "PipelineFigures",
    "aggregate",
    "parse_metrics",
    "progress_line",
    "render",
    "scrape",
]

# Sample names read by the view (declared in monitoring/metrics.py).
RECEIVED = "iotcast_bridge_messages_received_total"
FORWARDED = "iotcast_bridge_readings_forwarded_total"
DEAD_LETTERS = "iotcast_bridge_dead_letters_total"
BUFFER = "iotcast_bridge_buffer_records"
# the fleet, by shard
LEARNED = "iotcast_readings_learned_total"
DUPLICATES = "iotcast_readings_duplicate_total"
LATE = "iotcast_readings_late_total"
GLITCHES = "iotcast_readings_glitch_total"
NO_TARGET = "iotcast_readings_no_target_total"
HELD = "iotcast_readings_held_total"  # taken in order, not learned: the anomaly watch held it
POISON = "iotcast_records_poison_total"
RECORDS = "iotcast_records_processed_total"
MISROUTED = "iotcast_records_misrouted_total"
SHARD_LAG = "iotcast_shard_lag_seconds"
SHARD_OWNED = "iotcast_shard_owned"
DEVICES_HELD = "iotcast_devices_held"
ERROR_SUM = "iotcast_error_celsius_sum"
ERROR_COUNT = "iotcast_error_celsius_count"
WORST_RATIO = "iotcast_worst_device_error_ratio"
# the watched devices
DEVICE_READINGS = "iotcast_device_readings_total"
CHAMPION = "iotcast_champion_info"
ROLLING_MAE = "iotcast_rolling_mae_celsius"
MAE = "iotcast_mae_celsius"
ACTUAL = "iotcast_actual_celsius"
PREDICTION = "iotcast_prediction_celsius"
LAST_TS = "iotcast_last_reading_timestamp_seconds"
FORECAST_MODELS = ("served", "persistence", "rolling_mean", "seasonal_naive")
#: the outcome label of iotcast_device_readings_total (a watched device's readings)
OUTCOMES = ("learned", "held", "duplicate", "late", "glitch")

METRIC_NAMES = (
    RECEIVED,
    FORWARDED,
    DEAD_LETTERS,
    BUFFER,
    LEARNED,
    DUPLICATES,
    LATE,
    GLITCHES,
    NO_TARGET,
    HELD,
    POISON,
    RECORDS,
    MISROUTED,
    SHARD_LAG,
    SHARD_OWNED,
    DEVICES_HELD,
    ERROR_SUM,
    ERROR_COUNT,
    WORST_RATIO,
    DEVICE_READINGS,
    CHAMPION,
    ROLLING_MAE,
    MAE,
    ACTUAL,
    PREDICTION,
    LAST_TS,
)

#: sample name -> [(labels, value), ...] of one /metrics page
Parsed = dict[str, list[tuple[dict[str, str], float]]]


def parse_metrics(text: str) -> Parsed:
    """Index a Prometheus text exposition by sample name (``..._total`` for counters).

    >>> parse_metrics('iotcast_shard_lag_seconds{shard="shardId-0"} 0.5\\n')
    {'iotcast_shard_lag_seconds': [({'shard': 'shardId-0'}, 0.5)]}
    """
    parsed: Parsed = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            parsed[sample.name].append((dict(sample.labels), float(sample.value)))
    return dict(parsed)


def scrape(url: str, timeout: float = 2.0) -> Parsed | None:
    """GET ``url`` (a /metrics page) and parse it; ``None`` when it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return parse_metrics(response.read().decode("utf-8", errors="replace"))
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def _total(page: Parsed | None, name: str) -> float:
    return sum(v for _, v in (page or {}).get(name, ()))


def _by(page: Parsed | None, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for labels, value in (page or {}).get(name, ()):
        out[labels.get(label, "")] += value
    return dict(out)


@dataclass(frozen=True)
class DeviceView:
    """What the view shows for one watched device.

    >>> DeviceView("a", learned=5, champion="linear").champion
    'linear'
    """

    device: str
    learned: int = 0
    champion: str | None = None
    champion_rolling_mae: float | None = None
    baseline_rolling_mae: float | None = None
    champion_mae: float | None = None
    baseline_mae: float | None = None
    actual: float | None = None
    predicted: float | None = None
    last_ts: float | None = None


@dataclass(frozen=True)
class FleetError:
    """The fleet's error at one horizon: the served forecast's MAE and persistence's (from
    the ``iotcast_error_celsius`` histograms: _sum / _count), and the worst device now.

    >>> FleetError("900", served_mae=0.3, persistence_mae=0.5, scored=10).gain
    0.4
    """

    horizon: str
    served_mae: float | None = None
    persistence_mae: float | None = None
    scored: int = 0
    worst_device: str | None = None
    worst_ratio: float | None = None

    @property
    def gain(self) -> float | None:
        """How much smaller the served MAE is than persistence's (0.25 = 25 % better)."""
        p, s = self.persistence_mae, self.served_mae
        return None if not p or s is None else (p - s) / p


@dataclass(frozen=True)
class PipelineFigures:
    """The whole pipeline's figures at one moment.

    ``learned_by_device`` and ``device_readings`` (device -> outcome -> readings) are
    the watched devices'; the other counts are the fleet's.

    >>> PipelineFigures(learned=3, duplicates=1).accounted
    4
    """

    bridge_up: bool = False
    processors_up: tuple[bool, ...] = ()
    received: int = 0
    forwarded: int = 0
    dead_lettered: int = 0
    dead_letters_by_reason: Mapping[str, int] = field(default_factory=dict)
    buffered: int = 0
    learned: int = 0
    duplicates: int = 0
    late: int = 0
    glitches: int = 0
    no_target: int = 0
    held: int = 0  # readings the anomaly watch held back from learning (decided, not lost)
    poison: int = 0
    records: int = 0  # Kinesis records the processors handled (a packed record: many readings)
    misrouted: int = 0  # of which stray copies a reshard left, skipped whole
    devices_held: int = 0
    learned_by_device: Mapping[str, int] = field(default_factory=dict)
    device_readings: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    shard_lag: Mapping[str, float] = field(default_factory=dict)
    fleet: tuple[FleetError, ...] = ()
    devices: tuple[DeviceView, ...] = ()
    # watched device -> horizon (s, as the label holds it) -> model -> prequential MAE, for
    # the served forecast and the baselines (FORECAST_MODELS)
    forecasts: Mapping[str, Mapping[str, Mapping[str, float]]] = field(default_factory=dict)
    horizon: str = "0"
    baseline: str = "persistence"

    @property
    def accounted(self) -> int:
        """Readings the processors took a decision on: learned, held back by the anomaly
        watch, duplicate, late, glitch or without the target."""
        return (
            self.learned + self.held + self.duplicates + self.late + self.glitches + self.no_target
        )

    def figures(self) -> dict[str, object]:
        """The counters as a plain dict (for the summary file)."""
        return {
            "received": self.received,
            "forwarded": self.forwarded,
            "dead_lettered": self.dead_lettered,
            "dead_letters_by_reason": dict(self.dead_letters_by_reason),
            "learned": self.learned,
            "duplicates": self.duplicates,
            "late": self.late,
            "glitches": self.glitches,
            "no_target": self.no_target,
            "held": self.held,
            "poison": self.poison,
            "records": self.records,
            "misrouted": self.misrouted,
            "devices_held": self.devices_held,
            "learned_by_device": dict(self.learned_by_device),
            "device_readings": {d: dict(v) for d, v in self.device_readings.items()},
            "shard_lag_seconds": dict(self.shard_lag),
            "fleet_error": [
                {
                    "horizon": int(f.horizon or 0),
                    "served_mae": f.served_mae,
                    "persistence_mae": f.persistence_mae,
                    "scored": f.scored,
                    "worst_device": f.worst_device,
                    "worst_ratio": f.worst_ratio,
                }
                for f in self.fleet
            ],
        }


def _select(page: Parsed, name: str, **want: str) -> float | None:
    for labels, value in page.get(name, ()):
        if all(labels.get(k) == v for k, v in want.items()):
            return value
    return None


def _device_view(
    device: str, page: Parsed, learned: int, horizon: str, baseline: str
) -> DeviceView:
    champion = next(
        (
            labels.get("model")
            for labels, v in page.get(CHAMPION, ())
            if labels.get("device") == device
            and v == 1
            and labels.get("horizon", horizon) == horizon
        ),
        None,
    )

    def at(name: str, model: str | None) -> float | None:
        if model is None:
            return None
        return _select(page, name, device=device, model=model, horizon=horizon)

    return DeviceView(
        device=device,
        learned=learned,
        champion=champion,
        champion_rolling_mae=at(ROLLING_MAE, champion),
        baseline_rolling_mae=at(ROLLING_MAE, baseline),
        champion_mae=at(MAE, champion),
        baseline_mae=at(MAE, baseline),
        actual=_select(page, ACTUAL, device=device),
        predicted=at(PREDICTION, champion),
        last_ts=_select(page, LAST_TS, device=device),
    )


def _maes(page: Parsed, device: str) -> dict[str, dict[str, float]]:
    """horizon -> model -> MAE of one device's served forecast and baselines."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for labels, value in page.get(MAE, ()):
        if labels.get("device") == device and labels.get("model") in FORECAST_MODELS:
            out[labels.get("horizon", "")][labels["model"]] = value
    return {h: out[h] for h in sorted(out, key=lambda h: float(h or 0))}


def _fleet(pages: Sequence[Parsed]) -> tuple[FleetError, ...]:
    """Per horizon: the fleet's served and persistence MAE (histograms summed over the
    processors) and the worst device of all the processors' worst-k."""
    sums: dict[tuple[str, str], float] = defaultdict(float)
    counts: dict[tuple[str, str], float] = defaultdict(float)
    worst: dict[str, tuple[float, str]] = {}
    for page in pages:
        for name, into in ((ERROR_SUM, sums), (ERROR_COUNT, counts)):
            for labels, value in page.get(name, ()):
                into[(labels.get("model", ""), labels.get("horizon", ""))] += value
        for labels, value in page.get(WORST_RATIO, ()):
            h = labels.get("horizon", "")
            if value == value and (h not in worst or value > worst[h][0]):
                worst[h] = (value, labels.get("device", ""))

    def mae(model: str, h: str) -> float | None:
        n = counts.get((model, h), 0.0)
        return sums[(model, h)] / n if n else None

    horizons = {h for _, h in counts} | set(worst)
    return tuple(
        FleetError(
            horizon=h,
            served_mae=mae("served", h),
            persistence_mae=mae("persistence", h),
            scored=int(counts.get(("served", h), 0)),
            worst_device=worst[h][1] if h in worst else None,
            worst_ratio=worst[h][0] if h in worst else None,
        )
        for h in sorted(horizons, key=lambda h: float(h or 0))
    )


def aggregate(
    bridge: Parsed | None,
    processors: Sequence[Parsed | None],
    *,
    horizon: str = "0",
    baseline: str = "persistence",
) -> PipelineFigures:
    """Fold the bridge's and the processors' parsed /metrics into one :class:`PipelineFigures`.

    ``None`` stands for a page that did not answer.  ``horizon`` (seconds, as
    the label holds it) and ``baseline`` (a model name) choose what the device
    rows compare the champion with.
    """
    pages = [p for p in processors if p is not None]
    readings: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for page in pages:
        for labels, value in page.get(DEVICE_READINGS, ()):
            readings[labels.get("device", "")][labels.get("outcome", "")] += value
    device_readings = {
        d: {o: int(by.get(o, 0)) for o in OUTCOMES} for d, by in sorted(readings.items())
    }

    # A shard's lag comes from the processor that owns it (else the largest reported).
    lag: dict[str, float] = {}
    owned_lag: dict[str, float] = {}
    for page in pages:
        owned = {labels.get("shard") for labels, v in page.get(SHARD_OWNED, ()) if v == 1}
        for labels, value in page.get(SHARD_LAG, ()):
            shard = labels.get("shard", "")
            lag[shard] = max(lag.get(shard, value), value)
            if shard in owned:
                owned_lag[shard] = value
    lag.update(owned_lag)

    # A watched device's gauges come from the processor that learned it most recently.
    newest: dict[str, tuple[float, Parsed]] = {}
    for page in pages:
        seen = {labels.get("device") for labels, _ in page.get(CHAMPION, ())}
        seen |= {labels.get("device") for labels, _ in page.get(DEVICE_READINGS, ())}
        for device in seen - {None}:
            ts = _select(page, LAST_TS, device=device)
            ts = float("-inf") if ts is None else ts
            if device not in newest or ts > newest[device][0]:
                newest[device] = (ts, page)
    learned_by_device = {d: by["learned"] for d, by in device_readings.items()}
    devices = tuple(
        _device_view(d, newest[d][1], learned_by_device.get(d, 0), horizon, baseline)
        for d in sorted(newest)
    )
    dead = _by(bridge, DEAD_LETTERS, "reason")

    def fleet(name: str) -> int:
        return int(sum(_total(p, name) for p in pages))

    return PipelineFigures(
        bridge_up=bridge is not None,
        processors_up=tuple(p is not None for p in processors),
        received=int(_total(bridge, RECEIVED)),
        forwarded=int(_total(bridge, FORWARDED)),
        dead_lettered=int(sum(dead.values())),
        dead_letters_by_reason={k: int(v) for k, v in dead.items()},
        buffered=int(_total(bridge, BUFFER)),
        learned=fleet(LEARNED),
        duplicates=fleet(DUPLICATES),
        late=fleet(LATE),
        glitches=fleet(GLITCHES),
        no_target=fleet(NO_TARGET),
        held=fleet(HELD),
        poison=fleet(POISON),
        records=fleet(RECORDS),
        misrouted=fleet(MISROUTED),
        devices_held=fleet(DEVICES_HELD),
        learned_by_device=learned_by_device,
        device_readings=device_readings,
        shard_lag=dict(sorted(lag.items())),
        fleet=_fleet(pages),
        devices=devices,
        forecasts={d: _maes(newest[d][1], d) for d in sorted(newest)},
        horizon=horizon,
        baseline=baseline,
    )


class Scraper:
    """Scrapes the bridge and the processors again and again: a page that does not answer
    counts with its last figures (and as down), and the rate of readings accounted for is
    kept over the last ~10 s.

    >>> scraper = Scraper("http://127.0.0.1:9/metrics", [], timeout=0.1)
    >>> snap = scraper.collect()
    >>> snap.bridge_up, snap.accounted, scraper.rate()
    (False, 0, 0.0)
    """

    def __init__(
        self,
        bridge_url: str,
        processor_urls: Sequence[str],
        *,
        horizon: str = "0",
        baseline: str = "persistence",
        timeout: float = 2.0,
    ) -> None:
        self.urls = [bridge_url, *processor_urls]
        self.horizon = horizon
        self.baseline = baseline
        self.timeout = timeout
        self.latest = PipelineFigures()
        self.last_pages: dict[str, Parsed] = {}
        self.history: deque[tuple[float, int]] = deque()

    def collect(self) -> PipelineFigures:
        pages = [scrape(u, self.timeout) for u in self.urls]
        for url, page in zip(self.urls, pages, strict=True):
            if page is not None:
                self.last_pages[url] = page
        known = [self.last_pages.get(u) for u in self.urls]
        snap = aggregate(known[0], known[1:], horizon=self.horizon, baseline=self.baseline)
        up = [p is not None for p in pages]
        self.latest = replace(snap, bridge_up=up[0], processors_up=tuple(up[1:]))
        return self.latest

    def rate(self) -> float:
        """Readings the processors accounted for per second, over the last ~10 s."""
        now = time.monotonic()
        self.history.append((now, self.latest.accounted))
        while len(self.history) > 2 and now - self.history[0][0] > 10:
            self.history.popleft()
        (t0, n0), (t1, n1) = self.history[0], self.history[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0


def progress_line(snap: PipelineFigures, replayed: int, total: int | None) -> str:
    """One line of progress, for logs and CI."""
    line = (
        f"replayed {replayed}/{total if total is not None else '?'}  received {snap.received}  "
        f"forwarded {snap.forwarded}  dead-lettered {snap.dead_lettered}  learned {snap.learned}  "
        f"duplicates {snap.duplicates}  late {snap.late}  glitches {snap.glitches}"
    )
    if snap.no_target:
        line += f"  no target {snap.no_target}"
    if snap.held:
        line += f"  held back (anomalous) {snap.held}"
    if snap.records:
        line += f"  records {snap.records}"
    if snap.misrouted:
        line += f" ({snap.misrouted} misrouted)"
    if snap.shard_lag:
        line += "  lag " + " ".join(
            f"{_short_shard(s)}={v:.1f}s" for s, v in snap.shard_lag.items()
        )
    return line


def _short_shard(shard: str) -> str:
    return shard.removeprefix("shardId-").lstrip("0") or "0"


def _num(value: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if value is None else fmt.format(value)


def render(
    snap: PipelineFigures,
    replayed: int,
    total: int | None,
    *,
    title: str = "iotcast demo",
    footer: str | None = None,
) -> Group:
    """The live view: pipeline counters, lag per shard, the fleet's error per horizon and
    one row per watched device.

    >>> import io
    >>> from rich.console import Console
    >>> console = Console(width=120, file=io.StringIO(), record=True)
    >>> fleet = (FleetError("900", 0.3, 0.4, 10, "d7", 1.8),)
    >>> snap = PipelineFigures(learned=7, fleet=fleet, devices=(DeviceView("a", 7, "linear"),))
    >>> console.print(render(snap, 8, 10))
    >>> text = console.export_text(); "linear" in text and "+25.0%" in text and "d7" in text
    True
    """
    up = (
        ("up" if snap.bridge_up else "DOWN")
        + " / "
        + " ".join("up" if u else "DOWN" for u in snap.processors_up)
    )
    pipeline = Table(title=title, title_justify="left", show_edge=False)
    for column in (
        "replayed",
        "received",
        "forwarded",
        "dead letters",
        "buffered",
        "learned",
        "duplicates",
        "late",
        "glitches",
        "devices",
        "bridge / processors",
    ):
        pipeline.add_column(column, justify="right")
    pipeline.add_row(
        f"{replayed}/{total if total is not None else '?'}",
        str(snap.received),
        str(snap.forwarded),
        str(snap.dead_lettered),
        str(snap.buffered),
        str(snap.learned),
        str(snap.duplicates),
        str(snap.late),
        str(snap.glitches),
        str(snap.devices_held),
        up,
    )
    lag = Table(title="lag per shard", title_justify="left", show_edge=False)
    lag.add_column("shard")
    lag.add_column("lag (s)", justify="right")
    for shard, seconds in snap.shard_lag.items():
        lag.add_row(shard, f"{seconds:.1f}")
    fleet = Table(
        title="the fleet (prequential MAE of every scored prediction, °C; worst = served "
        "rolling MAE / persistence's)",
        title_justify="left",
        show_edge=False,
    )
    for column, justify in (
        ("horizon", "right"),
        ("scored", "right"),
        ("served MAE", "right"),
        ("persistence MAE", "right"),
        ("vs pers.", "right"),
        ("worst device", "left"),
        ("worst", "right"),
    ):
        fleet.add_column(column, justify=justify)
    for f in snap.fleet:
        fleet.add_row(
            f"{f.horizon} s",
            str(f.scored),
            _num(f.served_mae),
            _num(f.persistence_mae),
            _num(None if f.gain is None else 100 * f.gain, "{:+.1f}%"),
            Text(f.worst_device or "-"),  # an id as it is: ":ab:" is no emoji, "[x]" no markup
            _num(f.worst_ratio, "{:.2f}"),
        )
    devices = Table(
        title=f"watched devices (horizon {snap.horizon} s; MAE = rolling mean absolute error, °C)",
        title_justify="left",
        show_edge=False,
    )
    for column, justify in (
        ("device", "left"),
        ("learned", "right"),
        ("champion", "left"),
        ("champion MAE", "right"),
        (f"{snap.baseline} MAE", "right"),
        ("actual °C", "right"),
        ("predicted °C", "right"),
    ):
        devices.add_column(column, justify=justify)
    for d in snap.devices:
        devices.add_row(
            Text(d.device),
            str(d.learned),
            d.champion or "-",
            _num(d.champion_rolling_mae),
            _num(d.baseline_rolling_mae),
            _num(d.actual, "{:.1f}"),
            _num(d.predicted, "{:.2f}"),
        )
    parts: list = [pipeline, lag, fleet, devices]
    if footer:
        parts.append(Text(footer, style="dim"))
    return Group(*parts)

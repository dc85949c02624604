"""The report's prediction intervals and anomaly events: how often the served forecast's
ranges held the measured value and how wide they were; each anomaly event of each device."""

from __future__ import annotations

from datetime import UTC, datetime

from online_models.evaluate import EvalResult
from online_models.report.base import Block, fmt, horizon_name

__all__ = ["MAX_EVENTS_LISTED", "anomaly_section", "interval_section"]

MAX_EVENTS_LISTED = 200


def interval_section(res: EvalResult) -> list[Block]:
    """Per device, horizon and level: the coverage of the published intervals against the
    level asked for, their mean width, and how many were scored (``kind=interval`` rows)."""
    blocks: list[Block] = [
        ("h2", "Prediction intervals"),
        (
            "p",
            "Each served forecast is published with central intervals (80 % and 95 % by "
            "default). Coverage is the fraction of targets that fell inside the interval "
            "published with their forecast (it should be close to the level); width is the "
            "mean width, in the target's unit. Forecasts of the band's warm-up carry none.",
        ),
    ]
    rows = []
    for device in sorted(res.devices):
        for h in res.devices[device].horizons:
            band = res.devices[device].interval(h)
            for level in band.levels:
                cov = band.coverage(level)
                rows.append(
                    [
                        device,
                        horizon_name(h),
                        f"{100 * level:g} %",
                        "-" if cov is None else f"{100 * cov:.1f} %",
                        fmt(band.width(level)),
                        fmt(band.scored),
                    ]
                )
    if not rows:
        return [*blocks, ("p", "No interval was scored.")]
    header = ["device", "horizon", "level", "coverage", "mean width", "scored"]
    return [*blocks, ("table", header, rows)]


def _utc(ts: float | None) -> str:
    if ts is None:
        return "ongoing"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def anomaly_section(res: EvalResult) -> list[Block]:
    """Every anomaly event (as ``events.csv`` has them), the first :data:`MAX_EVENTS_LISTED`
    in start order, and their count per device and kind."""
    blocks: list[Block] = [
        ("h2", "Anomaly events"),
        (
            "p",
            "A spike (a reading far outside its own nowcast interval), a stuck sensor, a "
            "silent device, a lasting level shift or a rising gas. The value and the "
            "expected range are in the target's unit, except for a silence (seconds without a "
            "reading) and a gas rise (the gas's own level). Times in UTC; every event is in "
            "events.csv.",
        ),
    ]
    events = sorted(res.anomalies.values(), key=lambda a: (a.start_ts, a.device, a.kind))
    if not events:
        return [*blocks, ("p", "No anomaly event.")]
    counts: dict[tuple[str, str], int] = {}
    for a in events:
        counts[(a.device, a.kind)] = counts.get((a.device, a.kind), 0) + 1
    count_rows = [[d, k, fmt(n)] for (d, k), n in sorted(counts.items())]
    blocks.append(("table", ["device", "kind", "events"], count_rows))
    if len(events) > MAX_EVENTS_LISTED:
        blocks.append(("p", f"The first {MAX_EVENTS_LISTED} of {len(events):,} events:"))
    rows = [
        [
            a.device,
            a.kind,
            _utc(a.start_ts),
            _utc(a.end_ts),
            fmt(a.value),
            f"{fmt(a.expected_low)} .. {fmt(a.expected_high)}",
            fmt(a.score, 2),
        ]
        for a in events[:MAX_EVENTS_LISTED]
    ]
    header = ["device", "kind", "start", "end", "value", "expected range", "score"]
    return [*blocks, ("table", header, rows)]

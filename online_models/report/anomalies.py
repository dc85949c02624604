"""Anomaly events of an evaluation: ``events.csv``, and their score against labelled windows.

``events.csv`` has one row per anomaly (:class:`~online_models.anomaly.Anomaly`, in its
last state: ``end_ts`` empty while it was still going on at the end of the file), with
the columns ``device,kind,start_ts,end_ts,value,expected_low,expected_high,score``.

A windows file is JSON: ``{"anomaly_windows": [[start_ts, end_ts], ...]}`` (every device,
as NAB's labels), and/or ``{"devices": {"<device>": [[start_ts, end_ts], ...]}}``. Per
device, :func:`score_windows` counts the windows an event meets (``windows_caught`` of
``windows``), the events that meet no window (``false_events``) and the mean time from a
caught window's start to its first event's (``mean_delay_s``, 0 for an event that began
before the window). An event meets a window when its span (start to end; its start alone
while it goes on) overlaps it: a stuck sensor's event begins where the run of equal values
began, which may be a little before the fault that froze it. A ``silent`` event is a fact of the file (no reading for that long), not
a judgement of the values: it is counted apart (``silent_events``) and neither catches a
window nor counts as false.

A file of planted faults (:func:`telemetry.plant.windows`) also lists each fault's kind
(``{"faults": [{"device", "kind", "start", "end"}, ...]}``): :func:`score_faults` counts,
per kind, the faults caught by an event of the matching kind that meets the fault's span
widened by a minute each side (a ``dropout`` by ``silent``, a ``drift`` by ``level_shift``, a
``gas_leak`` by ``gas_rise``), and the time to the first one.

>>> from online_models.anomaly import Anomaly
>>> events = [Anomaly("d", "spike", 50.0, 51.0, 9.0, 1.0, 2.0, 1.5),
...           Anomaly("d", "level_shift", 500.0, None, 9.0, 1.0, 2.0, 1.1)]
>>> score_windows(events, {"d": [(0.0, 100.0), (200.0, 300.0)]})["d"]
{'windows_caught': 1, 'windows': 2, 'false_events': 1, 'mean_delay_s': 50.0, 'silent_events': 0}
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from online_models.anomaly import Anomaly

__all__ = [
    "EVENT_COLUMNS",
    "Windows",
    "load_faults",
    "load_windows",
    "score_faults",
    "score_windows",
    "write_events_csv",
]

CATCHES = {"spike": "spike", "stuck": "stuck", "dropout": "silent", "drift": "level_shift",
           "gas_leak": "gas_rise"}  # fmt: skip
TOLERANCE_S = 60.0

EVENT_COLUMNS = (
    "device", "kind", "start_ts", "end_ts", "value", "expected_low", "expected_high", "score",
)  # fmt: skip
ALL = ""  # the devices key of windows that hold for every device
Windows = Mapping[str, list[tuple[float, float]]]


def write_events_csv(anomalies: Iterable[Anomaly], path: Path) -> int:
    """One row per anomaly, in start order; returns how many."""
    rows = sorted(anomalies, key=lambda a: (a.start_ts, a.device, a.kind))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(EVENT_COLUMNS)
        for a in rows:
            w.writerow(
                [a.device, a.kind, repr(a.start_ts), "" if a.end_ts is None else repr(a.end_ts),
                 repr(a.value), repr(a.expected_low), repr(a.expected_high), repr(a.score)]
            )  # fmt: skip
    return len(rows)


def load_windows(path: str | Path) -> dict[str, list[tuple[float, float]]]:
    """The labelled windows of a file (see the module docstring), by device (``""``: all)."""
    try:
        body = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"windows file {path}: cannot read it as JSON ({exc})") from None
    out: dict[str, list[tuple[float, float]]] = {}
    try:
        if "anomaly_windows" in body:
            out[ALL] = [(float(a), float(b)) for a, b in body["anomaly_windows"]]
        for device, windows in body.get("devices", {}).items():
            out[str(device)] = [(float(a), float(b)) for a, b in windows]
    except (TypeError, ValueError, AttributeError):
        raise ValueError(
            f'windows file {path}: expected {{"anomaly_windows": [[start_ts, end_ts], ...]}} '
            'or {"devices": {"<device>": [[start_ts, end_ts], ...]}}'
        ) from None
    if not out:
        raise ValueError(f'windows file {path}: no "anomaly_windows" nor "devices" in it')
    return out


def score_windows(
    anomalies: Iterable[Anomaly], windows: Windows, devices: Iterable[str] = ()
) -> dict[str, dict[str, float | int | None]]:
    """Per device (those with windows or events, and ``devices``): the figures above."""
    by_device: dict[str, list[Anomaly]] = {}
    for a in anomalies:
        by_device.setdefault(a.device, []).append(a)
    names = set(by_device) | set(devices) | (set(windows) - {ALL})
    out: dict[str, dict[str, float | int | None]] = {}
    for device in sorted(names):
        wins = [*windows.get(ALL, []), *windows.get(device, [])]
        events = by_device.get(device, [])
        judged = [a for a in events if a.kind != "silent"]
        delays = []
        for start, end in wins:
            inside = [a.start_ts for a in judged if _meets(a, start, end)]
            if inside:
                delays.append(max(min(inside) - start, 0.0))
        false = sum(not any(_meets(a, s, e) for s, e in wins) for a in judged)
        out[device] = {
            "windows_caught": len(delays),
            "windows": len(wins),
            "false_events": false,
            "mean_delay_s": sum(delays) / len(delays) if delays else None,
            "silent_events": len(events) - len(judged),
        }
    return out


def _meets(a: Anomaly, start: float, end: float) -> bool:
    """Whether the event's span overlaps the window (an ongoing event: its start)."""
    return a.start_ts <= end and (a.start_ts if a.end_ts is None else a.end_ts) >= start


def load_faults(path: str | Path) -> list[tuple[str, str, float, float]]:
    """The planted faults of a windows file, (device, kind, start, end); none if untyped."""
    body = json.loads(Path(path).read_text())
    out = []
    for f in body.get("faults", []):
        if f.get("kind") not in CATCHES:
            raise ValueError(f"windows file {path}: unknown fault kind {f.get('kind')!r}")
        out.append((str(f["device"]), f["kind"], float(f["start"]), float(f["end"])))
    return out


def score_faults(
    anomalies: Iterable[Anomaly], faults: Iterable[tuple[str, str, float, float]]
) -> dict[str, dict[str, float | int | None]]:
    """Per fault kind: ``planted``, ``caught`` and ``mean_delay_s`` (see the module docstring)."""
    spans: dict[tuple[str, str], list[Anomaly]] = {}
    for a in anomalies:
        spans.setdefault((a.device, a.kind), []).append(a)
    out: dict[str, dict[str, float | int | None]] = {}
    delays: dict[str, list[float]] = {}
    for device, kind, start, end in faults:
        fig = out.setdefault(kind, {"planted": 0, "caught": 0, "mean_delay_s": None})
        fig["planted"] = int(fig["planted"] or 0) + 1
        hits = [
            a.start_ts
            for a in spans.get((device, CATCHES[kind]), [])
            if _meets(a, start - TOLERANCE_S, end + TOLERANCE_S)
        ]
        if hits:
            fig["caught"] = int(fig["caught"] or 0) + 1
            delays.setdefault(kind, []).append(max(min(hits) - start, 0.0))
    for kind, ds in delays.items():
        out[kind]["mean_delay_s"] = sum(ds) / len(ds)
    return out

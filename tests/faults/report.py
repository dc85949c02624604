"""Turn the fault suite's results JSON into the table of docs/reliability.md.

Regenerate the table (full size, as the issue asks; ~30 min on 2 cores)::

    IOTCAST_FAULT_READINGS=100000 IOTCAST_FAULT_OUTAGE_SECONDS=30 IOTCAST_FAULT_KILLS=3 \\
    IOTCAST_FAULT_RESULTS=faults.json .venv/bin/python -m pytest -q tests/faults/test_faults.py
    .venv/bin/python -m tests.faults.report faults.json docs/reliability.md

The table replaces what lies between the two ``<!-- faults-table -->``
markers of the document; the rest of it is left alone.

>>> print(table({"readings": 10, "outage_seconds": 30, "kills": 3, "commit": "abc1234",
...     "date": "2026-11-27T00:40:00+00:00", "faults": {}}).splitlines()[0])
Readings per fault: 10; outages and slowdown 30 s; kills 3; commit abc1234; 2026-11-27T00:40:00+00:00.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

__all__ = ["MARK", "table", "update"]

MARK = "<!-- faults-table -->"
COLUMNS = (
    ("fault", "fault"),
    ("replayed", "readings replayed"),
    ("lost", "lost"),
    ("learned_twice", "learned twice"),
    ("learned", "learned"),
    ("redelivered", "duplicates seen (redelivered upstream)"),
    ("duplicates_dropped", "dropped as duplicate (same ts)"),
    ("late", "dropped as late (older ts, incl. redelivered copies)"),
    ("late_by_reordering", "late by reordering (not learned)"),
    ("dead_lettered", "dead-lettered"),
    ("recovery", "recovery s (learned / checkpointed), worst"),
    ("seconds", "run s"),
    ("date", "date (UTC)"),
    ("commit", "commit"),
)


def _cell(fault: dict[str, Any], key: str) -> str:
    if key == "recovery":
        a, b = fault.get("recovery_learned_s"), fault.get("recovery_committed_s")
        return "–" if a is None else f"{a:.1f} / {b:.1f}"
    if key == "date":
        return str(fault.get("date", "–"))[:16].replace("T", " ")
    value = fault.get(key, "–")
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(results: dict[str, Any]) -> str:
    """The results as a Markdown table, with the size, commit and date above it."""
    lines = [
        f"Readings per fault: {results['readings']:,}; outages and slowdown "
        f"{results['outage_seconds']:g} s"
        + (
            f" (Kinesis for the processors {results['kinesis_outage_seconds']:g} s)"
            if "kinesis_outage_seconds" in results
            else ""
        )
        + f"; kills {results.get('kills', '–')}; "
        f"commit {results['commit']}; {results['date']}.",
        "",
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for fault in sorted(results["faults"].values(), key=lambda f: f.get("date", "")):
        lines.append("| " + " | ".join(_cell(fault, key) for key, _ in COLUMNS) + " |")
    return "\n".join(lines)


def update(doc: Path, results: dict[str, Any]) -> None:
    """Replace the table between the markers of ``doc``."""
    text = doc.read_text()
    head, sep, rest = text.partition(MARK)
    if not sep or MARK not in rest:
        raise SystemExit(f"{doc} lacks the two {MARK} markers around the table")
    _, _, tail = rest.partition(MARK)
    doc.write_text(f"{head}{MARK}\n{table(results)}\n{MARK}{tail}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m tests.faults.report RESULTS.json docs/reliability.md")
    update(Path(sys.argv[2]), orjson.loads(Path(sys.argv[1]).read_bytes()))

"""The soak's report: the figures per window and per process, the bottleneck, the printout.

Measured (printed at the end; ``--json FILE`` writes them too):

* publish rate: target vs achieved (PUBACKed), per window and overall;
* throughput held end to end: readings learned per second by the processors
  per ``--window`` s window: min / median / max while publishing;
* latency, two ways: publish -> learned (a sample of one reading per watched
  device per poll) and publish -> prediction emitted (every reading with a
  prediction, read from ``iot-predictions`` after the run);
* RSS and CPU of each process; the RSS slope over the second half of the
  publishing phase (MB/min);
* backlog when the publisher stops and the time to drain it;
* readings lost (see ``bench/soak_accounting.py``);
* CPU per reading of each process and the stream rate at which it would need
  one full core (a Python process does not go past one core).

>>> round(slope_per_min([(0, 1.0), (60, 2.0), (120, 3.0)]), 6)
1.0
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
from typing import Any, Protocol

from bench.soak_accounting import Watch
from bench.soak_load import Load


class Soak(Protocol):
    """What the report reads of a soak run (``bench.soak.Soak``; a Protocol, so this module
    does not import the one that imports it)."""

    args: argparse.Namespace
    load: Load
    notes: list[str]
    report: dict[str, Any]
    t_stop_begin: float
    watch: Watch


__all__ = ["pct", "print_report", "slope_per_min", "summarize"]


# ------------------------------------------------------------------ statistics
def slope_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (t seconds, value) in value per minute.

    >>> round(slope_per_min([(0, 1.0), (60, 2.0), (120, 3.0)]), 6)
    1.0
    """
    if len(points) < 3:
        return None
    ts = [p[0] for p in points]
    vs = [p[1] for p in points]
    mt, mv = statistics.fmean(ts), statistics.fmean(vs)
    den = sum((t - mt) ** 2 for t in ts)
    if den == 0:
        return None
    return sum((t - mt) * (v - mv) for t, v in zip(ts, vs, strict=True)) / den * 60


def pct(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1, nearest rank) of ``values``.

    >>> pct([3.0, 1.0, 2.0, 4.0], 0.5), pct([], 0.5)
    (2.0, None)
    """
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


# ------------------------------------------------------------------ figures
def windows(soak: Soak, width: float) -> list[dict[str, Any]]:
    """Per ``width``-second window of the publishing phase: published, forwarded, learned per second."""
    polls = [p for p in soak.watch.polls if "bridge_forwarded" in p]
    out = []
    t = soak.load.t_start
    while t + width <= soak.load.t_stop + 1e-6:
        inside = [
            p for p in polls if t - soak.args.poll / 2 <= p["t"] <= t + width + soak.args.poll
        ]
        a = min(inside, key=lambda p: abs(p["t"] - t), default=None)
        b = min(inside, key=lambda p: abs(p["t"] - (t + width)), default=None)
        if a is not None and b is not None and b["t"] - a["t"] > width / 2:
            dt = b["t"] - a["t"]
            lat = [x for p in polls if a["t"] < p["t"] <= b["t"] for x in p["latency_learned"]]
            out.append(
                {
                    "from_s": round(a["t"] - soak.load.t_start, 1),
                    "to_s": round(b["t"] - soak.load.t_start, 1),
                    "published_per_s": (b["acked"] - a["acked"]) / dt,
                    "forwarded_per_s": (b["bridge_forwarded"] - a["bridge_forwarded"]) / dt,
                    "learned_per_s": (
                        b["iotcast_readings_learned_total"] - a["iotcast_readings_learned_total"]
                    )
                    / dt,
                    "lag_max_s": b.get("lag_max"),
                    "learned_latency_p50_s": _round(pct(lat, 0.5), 2),
                    "learned_latency_p99_s": _round(pct(lat, 0.99), 2),
                    "broker_backlog": max(0, b["acked"] - b.get("bridge_received", 0)),
                    "kinesis_backlog": b["bridge_forwarded"]
                    - b.get("iotcast_readings_processed_total", 0),
                }
            )
        t += width
    return out


def process_figures(soak: Soak, readings: float) -> dict[str, Any]:
    """RSS and CPU figures per process; ``readings`` = readings learned from publish start to stop."""
    out: dict[str, Any] = {}
    names = (
        [n for n in soak.watch.samples[0] if n not in ("t", "machine", "load1")]
        if soak.watch.samples
        else []
    )
    pub = [s for s in soak.watch.samples if soak.load.t_start <= s["t"] <= soak.load.t_stop + 1]
    half = soak.load.t_start + (soak.load.t_stop - soak.load.t_start) / 2
    for name in names:
        series = [(s["t"], *s[name]) for s in soak.watch.samples if name in s]
        during = [(t, r, c) for t, r, c in series if soak.load.t_start <= t <= soak.load.t_stop + 1]
        if not series:
            continue
        cores = None
        if len(during) >= 2:
            cores = (during[-1][2] - during[0][2]) / (during[-1][0] - during[0][0])
        # CPU per reading: from publish start to the graceful stop, over the readings learned
        work = [(t, c) for t, _, c in series if soak.load.t_start - 1 <= t <= soak.t_stop_begin]
        ms_per_reading = None
        if len(work) >= 2 and readings:
            ms_per_reading = (work[-1][1] - work[0][1]) / readings * 1000
        last5 = [r for t, r, _ in during if t >= soak.load.t_stop - 300]
        out[name] = {
            "cpu_ms_per_reading": _round(ms_per_reading, 3),
            "one_core_ceiling_per_s": _round(1000 / ms_per_reading if ms_per_reading else None, 0),
            "rss_start_mib": round(series[0][1], 1),
            "rss_pub_start_mib": round(during[0][1], 1) if during else None,
            "rss_pub_end_mib": round(during[-1][1], 1) if during else None,
            "rss_max_mib": round(max(r for _, r, _ in series), 1),
            "rss_slope_second_half_mib_per_min": _round(
                slope_per_min([(t, r) for t, r, _ in during if t >= half]), 2
            ),
            # The plateau: min and max RSS over the last five minutes of publishing.
            "rss_last5min_mib": (round(min(last5), 1), round(max(last5), 1)) if last5 else None,
            "rss_last5min_spread_pct": _round((max(last5) / min(last5) - 1) * 100, 1)
            if last5
            else None,
            "cpu_cores_while_publishing": _round(cores, 2),
            "cpu_seconds_total": round(series[-1][2], 1),
            "rss_series": [(round(t - soak.load.t_start), round(r, 1)) for t, r, _ in series],
            "cpu_series": [(round(t - soak.load.t_start), round(c, 1)) for t, _, c in series],
        }
    if len(pub) >= 2:
        busy = pub[-1]["machine"][0] - pub[0]["machine"][0]
        tot = pub[-1]["machine"][1] - pub[0]["machine"][1]
        out["_machine"] = {
            "busy_cores_while_publishing": round(busy / (tot / os.cpu_count()), 2) if tot else None,
            "cores": os.cpu_count(),
            "load1_median": statistics.median(s["load1"] for s in pub),
            "load1_start_end": (pub[0]["load1"], pub[-1]["load1"]),
        }
    return out


def _round(v: float | None, n: int) -> float | None:
    return None if v is None else round(v, n)


def _fmt(v: Any, spec: str = ",.0f") -> str:
    return "-" if v is None else format(v, spec)


def summarize(soak: Soak, preds: dict[str, Any]) -> None:
    a, r = soak.args, soak.report
    dur = soak.load.t_stop - soak.load.t_start
    acked = r["accounting"]["published_acked"]
    win = windows(soak, a.window)
    learned_rates = [w["learned_per_s"] for w in win]
    steady = [w["learned_per_s"] for w in win if w["from_s"] >= a.warmup]
    pub_rates = [w["published_per_s"] for w in win]
    lat_l = [
        x for p in soak.watch.polls if soak.load.t_start + a.warmup <= p["t"] <= soak.load.t_stop
        for x in p.get("latency_learned", [])
    ]  # fmt: skip
    lat_l_all = [x for p in soak.watch.polls for x in p.get("latency_learned", [])]
    lat_p = [x for _, x in preds["latencies"]]
    lat_p_steady = [x for t, x in preds["latencies"] if t >= soak.load.t_start + a.warmup]
    learned_by_stop = [
        p["iotcast_readings_learned_total"] for p in soak.watch.polls if p["t"] <= soak.t_stop_begin
    ]
    procs = process_figures(soak, max(learned_by_stop, default=0))
    learned_total = r["accounting"]["learned_in_manifests"]
    r.update(
        publish={
            "target_per_s": a.rate,
            "achieved_per_s": round(acked / dur, 1) if dur else None,
            "seconds": round(dur, 1),
            "window_min_per_s": _round(min(pub_rates, default=None), 1),
            "window_median_per_s": _round(statistics.median(pub_rates) if pub_rates else None, 1),
        },
        throughput={
            "window_seconds": a.window,
            "learned_per_s_min": _round(min(steady or learned_rates, default=None), 1),
            "learned_per_s_median": _round(
                statistics.median(steady or learned_rates) if learned_rates else None, 1
            ),
            "learned_per_s_max": _round(max(learned_rates, default=None), 1),
            "learned_during_publishing_per_s": None,
            "learned_overall_per_s": None,
            "windows": win,
        },
        latency={
            "publish_to_learned": {
                "samples": len(lat_l),
                "p50_s": _round(pct(lat_l, 0.5), 3),
                "p99_s": _round(pct(lat_l, 0.99), 3),
                "max_s": _round(max(lat_l, default=None), 3),
                "p50_all_s": _round(pct(lat_l_all, 0.5), 3),
                "p99_all_s": _round(pct(lat_l_all, 0.99), 3),
                "how": "every poll: each watched device's newest learned reading (its gauges), "
                "joined with the publisher's log; after warm-up, while publishing",
            },
            "publish_to_prediction_emitted": {
                "readings": len(lat_p),
                "p50_s": _round(pct(lat_p_steady or lat_p, 0.5), 3),
                "p99_s": _round(pct(lat_p_steady or lat_p, 0.99), 3),
                "max_s": _round(max(lat_p, default=None), 3),
                "p50_all_s": _round(pct(lat_p, 0.5), 3),
                "p99_all_s": _round(pct(lat_p, 0.99), 3),
                "how": "iot-predictions read after the run; first record per (device, ts); "
                "ApproximateArrivalTimestamp - publish time",
                **{k: v for k, v in preds.items() if k != "latencies"},
            },
        },
        processes=procs,
        notes=soak.notes,
    )
    first_poll = next((p for p in soak.watch.polls if p["t"] >= soak.load.t_start), None)
    stop_poll = min(soak.watch.polls, key=lambda p: abs(p["t"] - soak.load.t_stop), default=None)
    if first_poll and stop_poll and stop_poll["t"] > first_poll["t"]:
        r["throughput"]["learned_during_publishing_per_s"] = round(
            (
                stop_poll["iotcast_readings_learned_total"]
                - first_poll["iotcast_readings_learned_total"]
            )
            / (stop_poll["t"] - first_poll["t"]),
            1,
        )
    end = r["drain"]["drain_seconds"]
    if end is not None:
        r["throughput"]["learned_overall_per_s"] = round(learned_total / (dur + end), 1)
    # prediction latency over time: p50 per window
    lat_windows = []
    for w in win:
        t0, t1 = soak.load.t_start + w["from_s"], soak.load.t_start + w["to_s"]
        xs = [x for t, x in preds["latencies"] if t0 <= t < t1]
        lat_windows.append((w["from_s"], _round(pct(xs, 0.5), 2), _round(pct(xs, 0.99), 2)))
    r["latency"]["publish_to_prediction_emitted"]["p50_p99_per_window"] = lat_windows
    r["bottleneck"] = bottleneck(soak, win, procs)
    print_report(soak)


def bottleneck(soak: Soak, win: list[dict[str, Any]], procs: dict[str, Any]) -> list[str]:
    """Where the readings piled up, and which process was busy: evidence, in words."""
    a = soak.args
    lines = []
    pub = soak.report["publish"]
    if pub["achieved_per_s"] and pub["achieved_per_s"] < 0.95 * a.rate:
        lines.append(
            f"the publisher itself held only {pub['achieved_per_s']:,.0f}/s of {a.rate:,.0f}/s "
            f"(bench CPU {procs.get('publisher (bench)', {}).get('cpu_cores_while_publishing')} cores)"
        )
    if win:
        last = win[-1]
        lines.append(
            f"at the end of publishing: {last['broker_backlog']:,.0f} readings waiting in the broker "
            f"(bridge behind), {last['kinesis_backlog']:,.0f} in Kinesis (processors behind), "
            f"MillisBehindLatest max {_fmt(last['lag_max_s'], '.1f')} s"
        )
        fwd = statistics.median(w["forwarded_per_s"] for w in win)
        learned = statistics.median(w["learned_per_s"] for w in win)
        lines.append(
            f"median per window: published {statistics.median(w['published_per_s'] for w in win):,.0f}/s, "
            f"bridge forwarded {fwd:,.0f}/s, processors learned {learned:,.0f}/s"
        )
    busy = {
        n: f["cpu_cores_while_publishing"]
        for n, f in procs.items()
        if not n.startswith("_") and f.get("cpu_cores_while_publishing") is not None
    }
    if busy:
        lines.append(
            "CPU cores while publishing: "
            + ", ".join(f"{n} {v:.2f}" for n, v in sorted(busy.items(), key=lambda x: -x[1]))
        )
        hot = [n for n, v in busy.items() if v >= 0.85]
        if hot:
            lines.append(
                "near one full core (a Python process is GIL-bound at ~1.0): " + ", ".join(hot)
            )
    m = procs.get("_machine")
    if m:
        ours = sum(busy.values())
        lines.append(
            f"machine: {m['busy_cores_while_publishing']} of {m['cores']} cores busy "
            f"(everything, other engineers included), load1 median {m['load1_median']} "
            f"(publish start, end: {m['load1_start_end']}); "
            f"this soak's processes used {ours:.2f} cores of it"
        )
        if (
            m["busy_cores_while_publishing"]
            and m["busy_cores_while_publishing"] >= 0.95 * m["cores"]
        ):
            lines.append(
                "the machine was saturated: every process above got less CPU than it wanted, so "
                "rates are CPU-bound (compare each process's cores with its share)"
            )
    polls = [p for p in soak.watch.polls if p.get("bridge_put_count")]
    if len(polls) >= 2:
        q = len(polls) // 4 or 1
        for part, sel in (("first quarter", polls[:q]), ("last quarter", polls[-q:])):
            if len(sel) >= 2:
                n = sel[-1]["bridge_put_count"] - sel[0]["bridge_put_count"]
                s = sel[-1]["bridge_put_sum"] - sel[0]["bridge_put_sum"]
                if n:
                    lines.append(f"bridge PutRecords mean latency, {part}: {s / n * 1000:.0f} ms")
    return lines


def print_report(soak: Soak) -> None:
    r = soak.report
    a = soak.args
    p, th, acc = r["publish"], r["throughput"], r["accounting"]
    ll, lp = r["latency"]["publish_to_learned"], r["latency"]["publish_to_prediction_emitted"]
    print("\n================ soak: figures ================")
    print(
        f"setup: {a.devices:,} devices, {a.shards} shards, {a.bridges} bridge(s)"
        f"{' (shared subscription)' if a.bridges > 1 else ''}, iotcast process "
        f"--workers {a.workers}, {a.publishers} publisher clients; kinesalite (Kinesis) and "
        f"moto (S3, DynamoDB); git {r.get('git')}; work dir {r['workdir']}"
    )
    print(
        f"publish rate: target {a.rate:,.0f}/s, achieved {_fmt(p['achieved_per_s'], ',.1f')}/s "
        f"over {p['seconds']} s (window min {_fmt(p['window_min_per_s'], ',.1f')}, "
        f"median {_fmt(p['window_median_per_s'], ',.1f')})"
    )
    print(
        f"publisher: seconds spent waiting for PUBACKs per client (more than "
        f"{soak.load.publishers[0].max_outstanding if soak.load.publishers else '-'} outstanding): "
        f"{r.get('publisher_waited_for_pubacks_s')}"
    )
    print(
        f"throughput held (readings learned/s per {a.window:g} s window, after {a.warmup:g} s "
        f"warm-up): min {_fmt(th['learned_per_s_min'], ',.1f')}, median "
        f"{_fmt(th['learned_per_s_median'], ',.1f')}, max {_fmt(th['learned_per_s_max'], ',.1f')}; "
        f"while publishing {_fmt(th['learned_during_publishing_per_s'], ',.1f')}/s; "
        f"publish start to drained {_fmt(th['learned_overall_per_s'], ',.1f')}/s"
    )
    print(
        "  window (s)     published/s forwarded/s  learned/s broker backlog kinesis backlog"
        "  lag s  publish->learned p50/p99 s"
    )
    for w in th["windows"]:
        print(
            f"  {w['from_s']:6.0f}-{w['to_s']:<6.0f} {w['published_per_s']:11,.0f} "
            f"{w['forwarded_per_s']:11,.0f} {w['learned_per_s']:10,.0f} {w['broker_backlog']:14,.0f} "
            f"{w['kinesis_backlog']:15,.0f} {_fmt(w['lag_max_s'], '6.1f')}  "
            f"{_fmt(w['learned_latency_p50_s'], '.2f')}/{_fmt(w['learned_latency_p99_s'], '.2f')}"
        )
    print(
        f"latency publish -> learned ({ll['samples']:,} samples, one per watched device per poll, after "
        f"warm-up): p50 {_fmt(ll['p50_s'], '.3f')} s, p99 {_fmt(ll['p99_s'], '.3f')} s, "
        f"max {_fmt(ll['max_s'], '.3f')} s (whole run: p50 {_fmt(ll['p50_all_s'], '.3f')}, "
        f"p99 {_fmt(ll['p99_all_s'], '.3f')})"
    )
    print(
        f"latency publish -> prediction emitted ({lp['readings']:,} readings joined of "
        f"{lp['readings_with_a_prediction']:,} with a prediction, {lp['records_read']:,} records "
        f"read in {lp['read_seconds']} s, {'all' if lp['complete'] else 'NOT all: time budget'}; "
        f"unmatched {lp['unmatched']}; event records skipped "
        f"{sum((lp.get('events') or {}).values()):,}): p50 {_fmt(lp['p50_s'], '.3f')} s, "
        f"p99 {_fmt(lp['p99_s'], '.3f')} s, max {_fmt(lp['max_s'], '.3f')} s (whole run: "
        f"p50 {_fmt(lp['p50_all_s'], '.3f')}, p99 {_fmt(lp['p99_all_s'], '.3f')})"
    )
    print(
        "  per window (from s, p50, p99): "
        + ", ".join(
            f"{f:.0f}: {_fmt(m, '.2f')}/{_fmt(q, '.2f')}" for f, m, q in lp["p50_p99_per_window"]
        )
    )
    print(
        "RSS MiB (first sample / publish start / publish end / max; slope of the 2nd half MiB/min) and CPU:"
    )
    for name, f in r["processes"].items():
        if name.startswith("_"):
            continue
        print(
            f"  {name:18s} {f['rss_start_mib']:8.1f} {_fmt(f['rss_pub_start_mib'], '8.1f')} "
            f"{_fmt(f['rss_pub_end_mib'], '8.1f')} {f['rss_max_mib']:8.1f}  slope "
            f"{_fmt(f['rss_slope_second_half_mib_per_min'], '+.2f')}  last 5 min "
            f"{f['rss_last5min_mib']} ({_fmt(f['rss_last5min_spread_pct'], '.1f')} %)  CPU "
            f"{_fmt(f['cpu_cores_while_publishing'], '.2f')} cores while publishing, "
            f"{f['cpu_seconds_total']:.0f} s in all, {_fmt(f['cpu_ms_per_reading'], '.2f')} ms "
            f"per reading (one full core at {_fmt(f['one_core_ceiling_per_s'], ',.0f')} readings/s)"
        )
    pipeline = [
        f["cpu_ms_per_reading"]
        for n, f in r["processes"].items()
        if not n.startswith(("_", "publisher")) and f.get("cpu_ms_per_reading")
    ]
    if pipeline:
        ms = sum(pipeline)
        print(
            f"  the pipeline (all but the publisher) spent {ms:.2f} ms CPU per reading at this rate "
            "(fixed per-second costs such as polling included): on "
            f"{os.cpu_count()} dedicated cores at most ~{os.cpu_count() * 1000 / ms:,.0f} readings/s, "
            "and no single-process part beyond its one-core figure above"
        )
    d = r["drain"]
    print(f"backlog when the publisher stopped: {d['at_stop']}")
    print(
        "time to drain after the publisher stopped: "
        + (f"{d['drain_seconds']:.1f} s" if d["drain_seconds"] is not None else
           f"NOT drained within {a.drain_timeout:.0f} s ({d['left_unaccounted']:,.0f} left)")
    )  # fmt: skip
    print(
        f"readings: published {acc['published_acked']:,} (PUBACKed; {acc['published_sent']:,} sent), "
        f"bridge forwarded {acc['bridge_forwarded']:,.0f}, learned {acc['learned_in_manifests']:,} "
        f"(S3 manifests; /metrics {_fmt(acc['learned_metric'])}), duplicates {acc['duplicates']:,.0f}, "
        f"late {acc['late']:,.0f}, glitches {acc['glitches']:,.0f}, dead-lettered "
        f"{acc['dead_lettered_bridge_metric']:,.0f} (S3 lines {acc['dead_letter_lines_s3']}), "
        f"still in Kinesis after the manifests {acc['still_in_kinesis_after_manifests']:,}, "
        f"still in the broker {acc['still_in_broker']:,} (read from the bridge's session after "
        f"the run; {acc['in_kinesis_and_broker_both']:,} of them also in Kinesis: a bridge stopped "
        "between PutRecords and PUBACK, duplicates the processors drop)"
    )
    print(
        f"LOST: {acc['lost']:,} (published readings neither learned (the first S3-manifest "
        "samples of their device), nor in Kinesis after the manifests, nor in the broker); "
        f"devices with missing readings: {acc['devices_with_missing']}"
        f"{' e.g. ' + str(acc['missing_examples']) if acc['missing_examples'] else ''}; "
        f"learned more than published: {acc['devices_learned_more_than_published'] or 'none'}"
    )
    print(f"exit codes: {r['exit_codes']}")
    print("bottleneck evidence:")
    for line in r["bottleneck"]:
        print(f"  - {line}")
    for note in r["notes"]:
        print(f"note: {note}")

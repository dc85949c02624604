"""Prometheus config and rules (promtool), Grafana dashboards and alert rules.

Every PromQL expression of the dashboards, the Grafana alert rules and the
Prometheus rules is sent to a real Prometheus (Debian package, 127.0.0.1):
a syntax or type error comes back as HTTP 400 ``bad_data``. Every metric name
they use must be declared in ``monitoring/metrics.py`` (or be a recording rule
built from those, or Prometheus' own ``up``).
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import monitoring.metrics
from iotcast.stack import ManagedProcess, require, start_prometheus
from monitoring.alerting import GRAFANA_ALERTS_FILE, load_prometheus_alerts, render_grafana_alerts

ROOT = Path(__file__).resolve().parent.parent
PROM_DIR = ROOT / "monitoring" / "prometheus"
GRAFANA_DIR = ROOT / "monitoring" / "grafana"
DASHBOARDS = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
RULE_FILES = sorted((PROM_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROM_DIR / "tests").glob("*.yml"))

# Series Prometheus makes itself, not our code.
PROMETHEUS_BUILTINS = {"up"}

# Values for Grafana template variables when checking a query.
VARIABLES = {
    "device": "b8:27:eb:bf:9d:51",
    "horizon": "60",
    "model": "linear",
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
}


# ------------------------------------------------------------------ helpers
def module_metric_names() -> set[str]:
    """Every series name the metrics module can expose."""
    return set(module_metric_labels())


def module_metric_labels() -> dict[str, tuple[str, ...]]:
    """Every series name the metrics module can expose -> the label names of its metric."""
    out: dict[str, tuple[str, ...]] = {}
    for metric in monitoring.metrics.declared().values():
        out |= dict.fromkeys(_series_names(metric.name, metric.kind), metric.labelnames)
    return out


def _series_names(name: str, kind: str) -> set[str]:
    """The names of the series a metric exposes (a counter's _total, ...)."""
    if kind == "counter":
        return {f"{name}_total", f"{name}_created"}
    if kind == "histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
    return {name}


def recording_rules() -> dict[str, str]:
    out = {}
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    out[rule["record"]] = rule["expr"]
    return out


def source_metric_names(expr: str, rules: dict[str, str] | None = None) -> set[str]:
    """The metrics an expression reads, recording rules replaced by what they read.

    >>> sorted(source_metric_names("a:b:rate1m / c", {"a:b:rate1m": "sum(rate(b_total[1m]))"}))
    ['b_total', 'c']
    """
    rules = recording_rules() if rules is None else rules
    out: set[str] = set()
    todo, seen = list(metric_names(expr)), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in rules:
            todo += metric_names(rules[name])
        else:
            out.add(name)
    return out


_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "and",
    "or",
    "unless",
    "inf",
    "nan",
    "atan2",
}
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_LABEL_LISTS = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_IDENT = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:]|\s*\()")


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression refers to (functions, labels, keywords left out).

    >>> sorted(metric_names('sum by (le) (rate(a_bucket{x="y"}[5m])) / on (i) b offset 5m'))
    ['a_bucket', 'b']
    """
    e = _STRINGS.sub('""', expr)
    e = _BRACES.sub("{}", e)
    e = _BRACKETS.sub("[]", e)
    e = _LABEL_LISTS.sub(" ", e)
    e = re.sub(r"\boffset\s+-?\d+[smhdwy]", " ", e)
    names = set(_IDENT.findall(e))
    return {n for n in names if n.lower() not in _KEYWORDS and not re.fullmatch(r"\d.*", n)}


def substitute(expr: str, variables: dict[str, str] = VARIABLES) -> str:
    """Replace Grafana template variables (``$device``, ``${horizon}``, ``$__rate_interval``)."""

    def value(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        if name not in variables:
            raise KeyError(f"unknown Grafana variable ${name} in {expr!r}")
        return variables[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)


def _label_values_selector(query: str) -> str:
    m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query)
    return m.group(1) if m else query


def dashboard_expressions() -> list[tuple[str, str]]:
    """``(where, expr)`` for every query of every dashboard, annotations and variables included."""
    out = []
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())

        def panels(items: list) -> Iterator[dict]:
            for p in items:
                yield p
                yield from panels(p.get("panels", []))

        for panel in panels(dash["panels"]):
            for t in panel.get("targets", []):
                out.append((f"{path.name}: panel {panel['title']!r} {t['refId']}", t["expr"]))
        for ann in dash.get("annotations", {}).get("list", []):
            if "expr" in ann:
                out.append((f"{path.name}: annotation {ann['name']!r}", ann["expr"]))
        for var in dash.get("templating", {}).get("list", []):
            if var.get("type") == "query":
                q = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
                out.append((f"{path.name}: variable {var['name']!r}", _label_values_selector(q)))
    return out


def grafana_alert_expressions() -> list[tuple[str, str]]:
    rules = yaml.safe_load(GRAFANA_ALERTS_FILE.read_text())
    return [
        (f"grafana alert {r['title']}", d["model"]["expr"])
        for g in rules["groups"]
        for r in g["rules"]
        for d in r["data"]
        if "expr" in d["model"]
    ]


def prometheus_rule_expressions() -> list[tuple[str, str]]:
    out = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                out.append(
                    (f"{path.name}: {rule.get('alert') or rule.get('record')}", rule["expr"])
                )
    return out


def promtool(*args: str, cwd: Path = PROM_DIR) -> subprocess.CompletedProcess:
    return subprocess.run(
        [require("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    """A real Prometheus with no targets, only to parse and type-check PromQL."""
    work = tmp_path_factory.mktemp("prometheus-parse")
    config = work / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1h\n")
    proc = start_prometheus(work, config)
    yield proc
    proc.stop()


def query_error(prometheus: ManagedProcess, expr: str) -> str | None:
    """None when Prometheus accepts ``expr``, else its error message."""
    url = f"{prometheus.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            answer = json.load(r)
    except urllib.error.HTTPError as exc:
        answer = json.load(exc)
    return None if answer["status"] == "success" else f"{answer['errorType']}: {answer['error']}"


# ------------------------------------------------------------------ promtool
def test_promtool_accepts_the_prometheus_config() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout


def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", *(str(p) for p in RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", *(str(p.relative_to(PROM_DIR)) for p in RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for t in case.get("alert_rule_test", []):
                (firing if t.get("exp_alerts") else silent).add(t["alertname"])
    alerts = {r["alert"] for g in load_prometheus_alerts()["groups"] for r in g["rules"]}
    assert alerts - firing == set(), "alerts without a firing test"
    assert alerts - silent == set(), "alerts without a not-firing test"


def test_fleet_rules_read_no_watched_device_series() -> None:
    """The fleet's alerts and recording rules work with an empty watch list: they read no
    series with a device label but the worst-k gauges, directly or through a recording rule."""
    fleet = [
        (rule.get("alert") or rule["record"], rule["expr"])
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        if group["name"] in {"iotcast-fleet", "iotcast-recording-fleet"}
        for rule in group["rules"]
    ]
    assert len(fleet) > 20
    labels = module_metric_labels()
    per_device = {
        f"{name}: {metric}"
        for name, expr in fleet
        for metric in source_metric_names(expr)
        if "device" in labels.get(metric, ()) and metric not in WORST_K
    }
    assert per_device == set()
    assert any("iotcast_error_celsius_sum" in source_metric_names(e) for _, e in fleet)


def test_service_discovery_files_list_targets() -> None:
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"iotcast-bridge", "iotcast-processor"}
    for job in jobs.values():
        files = [
            f
            for sd in job["file_sd_configs"]
            for pattern in sd["files"]
            for f in PROM_DIR.glob(pattern)
        ]
        assert files, f"{job['job_name']}: no file matches its file_sd pattern"
        for f in files:
            groups = yaml.safe_load(f.read_text())
            assert all(re.fullmatch(r"[\w.-]+:\d+", t) for g in groups for t in g["targets"])


# ---------------------------------------------------------------- dashboards
@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_loads_with_uid_and_live_refresh(path: Path) -> None:
    dash = json.loads(path.read_text())
    assert re.fullmatch(r"iotcast-[a-z]+", dash["uid"]) and dash["title"]
    assert dash["refresh"] == "5s"
    assert dash["panels"], "empty dashboard"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            assert t["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel["title"]


def test_dashboards_are_the_overview_models_device_and_bridge() -> None:
    uids = {json.loads(p.read_text())["uid"] for p in DASHBOARDS}
    assert uids == {"iotcast-overview", "iotcast-models", "iotcast-device", "iotcast-bridge"}


def _dashboard(name: str) -> dict:
    return json.loads((GRAFANA_DIR / "dashboards" / name).read_text())


def _used(name: str) -> set[str]:
    """Metric names the queries of one dashboard read."""
    return set().union(
        *(
            metric_names(substitute(e))
            for where, e in dashboard_expressions()
            if where.startswith(name)
        )
    )


WORST_K = {"iotcast_worst_device_error_ratio", "iotcast_worst_device_mae_celsius"}


def test_fleet_dashboards_read_no_per_device_series_but_the_worst_k() -> None:
    """The overview, models and bridge dashboards read series that do not grow with the
    fleet: none with a device label but the worst-k gauges (k x horizons series)."""
    labels = module_metric_labels()
    per_device = {
        f"{name}: {metric}"
        for name in ("overview.json", "models.json", "bridge.json")
        for metric in _used(name)
        if "device" in labels.get(metric, ()) and metric not in WORST_K
    }
    assert per_device == set()
    assert _used("overview.json") >= {
        "iotcast_readings_learned_total", "iotcast_readings_duplicate_total",
        "iotcast_readings_late_total", "iotcast_readings_glitch_total",
        "iotcast_readings_no_target_total", "iotcast_devices_held", "iotcast_devices_quiet",
        "iotcast_devices_reset_last_hour", "iotcast_shard_lag_seconds",
        "iotcast_checkpoint_age_seconds", "iotcast_shard_devices", "iotcast_error_celsius_sum",
        "iotcast_error_celsius_count", "iotcast_champions", "iotcast_promotions_total",
        "iotcast_drift_detected_total", "iotcast_model_resets_total", "iotcast_events_total",
        "iotcast_values_dropped_total",
    }  # fmt: skip
    assert not _used("overview.json") & WORST_K  # the worst devices are on the models dashboard


def test_models_dashboard_has_error_distributions_and_the_worst_k_table() -> None:
    dash = _dashboard("models.json")
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert {"horizon", "model"} <= set(variables)
    rows = [p for p in dash["panels"] if p["type"] == "row"]
    assert [r.get("repeat") for r in rows].count("horizon") == 1  # distributions per horizon
    exprs = {p["title"]: [t["expr"] for t in p.get("targets", [])] for p in dash["panels"]}
    heatmaps = [p for p in dash["panels"] if p["type"] == "heatmap"]
    assert {next(m for m in ("served", "persistence") if f'model="{m}"' in p["targets"][0]["expr"])
            for p in heatmaps} == {"served", "persistence"}  # fmt: skip
    assert all("iotcast_error_celsius_bucket" in p["targets"][0]["expr"] for p in heatmaps)
    quantiles = [e for es in exprs.values() for e in es if e.startswith("histogram_quantile")]
    assert quantiles and all(
        "by (model" in e and "iotcast_error_celsius_bucket" in e for e in quantiles
    )
    (table,) = [p for p in dash["panels"] if p["type"] == "table"]
    targets = {t["refId"]: t for t in table["targets"]}
    assert all(t["instant"] and t["format"] == "table" for t in targets.values())
    assert "iotcast_worst_device_error_ratio" in targets["A"]["expr"]
    assert "iotcast_worst_device_mae_celsius" in targets["B"]["expr"]
    organize = next(t for t in table["transformations"] if t["id"] == "organize")["options"]
    columns = sorted(organize["indexByName"], key=organize["indexByName"].get)
    renamed = [organize["renameByName"].get(c, c) for c in columns]
    assert renamed == ["horizon", "rank", "device", "served / persistence", "served MAE"]


def test_device_dashboard_shows_watched_devices_only() -> None:
    """Its device variable lists the devices with watched-only series, its description says
    how to watch one, and every query and annotation reads that one device's series."""
    dash = _dashboard("device.json")
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert {"device", "horizon", "model"} <= set(variables)
    device = variables["device"]
    assert not device["multi"]
    assert device["query"]["query"] == "label_values(iotcast_actual_celsius, device)"
    assert "--watch" in dash["description"] and "IOTCAST_WATCH" in dash["description"]
    annotations = {a["name"] for a in dash["annotations"]["list"]}
    assert {"Promotions", "Model versions"} <= annotations
    exprs = [
        e
        for where, e in dashboard_expressions()
        if where.startswith("device.json") and ": variable 'device'" not in where
    ]
    assert all('device="$device"' in e for e in exprs)
    labels = module_metric_labels()
    assert all("device" in labels[name] for name in _used("device.json"))
    assert any("iotcast_prediction_celsius" in e and "offset ${horizon}s1ms" in e for e in exprs)
    assert any("iotcast_device_readings_total" in e for e in exprs)


def test_device_dashboard_draws_the_served_forecasts_band_for_watched_devices() -> None:
    """The actual-vs-predicted panel shades the served forecast's 95 % and 80 % intervals
    (the watched-only bound gauges, shifted like the forecast they belong to)."""
    dash = _dashboard("device.json")
    (panel,) = [p for p in dash["panels"] if p["title"].startswith("Actual vs predicted, h")]
    exprs = {t["legendFormat"]: t["expr"] for t in panel["targets"]}
    for pct, level in (("95 %", "0.95"), ("80 %", "0.8")):
        low, high = exprs[f"served {pct} low"], exprs[f"served {pct} high"]
        assert "iotcast_prediction_low_celsius" in low and f'level="{level}"' in low
        assert "iotcast_prediction_high_celsius" in high and f'level="{level}"' in high
        assert all("offset ${horizon}s1ms" in e for e in (low, high))
        fills = [
            prop["value"]
            for o in panel["fieldConfig"]["overrides"]
            if o["matcher"]["options"] == f"served {pct} high"
            for prop in o["properties"]
            if prop["id"] == "custom.fillBelowTo"
        ]
        assert fills == [f"served {pct} low"]
    labels = module_metric_labels()
    assert labels["iotcast_prediction_low_celsius"] == ("device", "horizon", "level")


def test_overview_shows_anomalies_by_kind_without_a_device_label() -> None:
    dash = _dashboard("overview.json")
    exprs = {p["title"]: [t["expr"] for t in p.get("targets", [])] for p in dash["panels"]}
    assert exprs["Anomalies by kind"] == [
        "sum by (kind) (increase(iotcast_anomaly_events_total[$__rate_interval]))"
    ]
    assert exprs["Devices with an anomaly going on, by kind"] == [
        "kind:iotcast_anomalies_ongoing:sum"
    ]
    labels = module_metric_labels()
    assert labels["iotcast_anomaly_events_total"] == ("kind",)
    assert labels["iotcast_anomalies_ongoing"] == ("kind",)
    ys = [(p["gridPos"]["y"], p["gridPos"]["x"]) for p in dash["panels"]]
    assert len(set(ys)) == len(ys)  # no two panels in the same place


def test_every_query_parses_in_a_real_prometheus(prometheus: ManagedProcess) -> None:
    expressions = (
        dashboard_expressions() + grafana_alert_expressions() + prometheus_rule_expressions()
    )
    assert len(expressions) > 60
    errors = [
        f"{where}: {err}\n    {expr}"
        for where, expr in expressions
        if (err := query_error(prometheus, substitute(expr)))
    ]
    # and at the nowcast's horizon, 0 (Prometheus refuses "offset 0s")
    nowcast = {**VARIABLES, "horizon": "0"}
    errors += [
        f"{where} (horizon 0): {err}\n    {expr}"
        for where, expr in dashboard_expressions()
        if (err := query_error(prometheus, substitute(expr, nowcast)))
    ]
    assert errors == [], "\n".join(errors)


def test_a_broken_query_is_caught(prometheus: ManagedProcess) -> None:
    """The parse check above can fail: Prometheus rejects bad PromQL with bad_data."""
    assert query_error(prometheus, "rate(iotcast_readings_learned_total[5m]") is not None
    assert query_error(prometheus, "rate(iotcast_actual_celsius)") is not None  # type error
    assert query_error(prometheus, substitute('iotcast_actual_celsius{device="$device"}')) is None
    assert query_error(prometheus, "iotcast_actual_celsius offset 0s") is not None


def test_every_metric_used_is_declared_in_the_metrics_module() -> None:
    declared = module_metric_names()
    recorded = recording_rules()
    allowed = declared | set(recorded) | PROMETHEUS_BUILTINS
    for name, expr in recorded.items():  # from our metrics, or from other recording rules
        assert metric_names(expr) <= allowed - {name}, f"recording rule {name}"
        assert source_metric_names(name) <= declared | PROMETHEUS_BUILTINS, f"recording rule {name}"
    expressions = (
        dashboard_expressions() + grafana_alert_expressions() + prometheus_rule_expressions()
    )
    unknown = {
        f"{where}: {sorted(metric_names(substitute(e)) - allowed)}"
        for where, e in expressions
        if metric_names(substitute(e)) - allowed
    }
    assert unknown == set()
    used = set().union(*(metric_names(substitute(e)) for _, e in expressions))
    assert {"iotcast_rolling_mae_celsius", "iotcast_champion_info"} <= used
    assert {"iotcast_error_celsius_bucket", "iotcast_worst_device_error_ratio"} <= used


def test_an_undeclared_metric_is_caught() -> None:
    """The name check above can fail."""
    names = metric_names(substitute('rate(iotcast_no_such_thing_total{device="$device"}[5m])'))
    assert names == {"iotcast_no_such_thing_total"}
    assert not names <= module_metric_names()


# ------------------------------------------------------------ grafana alerts
def test_grafana_alert_rules_are_generated_from_the_prometheus_rules() -> None:
    assert GRAFANA_ALERTS_FILE.read_text() == render_grafana_alerts(), (
        "regenerate with: .venv/bin/python -m monitoring.alerting"
    )
    grafana = yaml.safe_load(GRAFANA_ALERTS_FILE.read_text())
    titles = [r["title"] for g in grafana["groups"] for r in g["rules"]]
    alerts = [r["alert"] for g in load_prometheus_alerts()["groups"] for r in g["rules"]]
    assert titles == alerts
    uids = [r["uid"] for g in grafana["groups"] for r in g["rules"]]
    assert len(set(uids)) == len(uids) and all(len(u) <= 40 for u in uids)


def test_grafana_provisioning_points_at_the_provisioned_datasource() -> None:
    ds = yaml.safe_load((GRAFANA_DIR / "provisioning/datasources/prometheus.yml").read_text())
    assert [d["uid"] for d in ds["datasources"]] == ["prometheus"]
    providers = yaml.safe_load((GRAFANA_DIR / "provisioning/dashboards/iotcast.yml").read_text())
    assert providers["providers"][0]["options"]["path"].startswith("/var/lib/grafana/dashboards")
    grafana = yaml.safe_load(GRAFANA_ALERTS_FILE.read_text())
    sources = {d["datasourceUid"] for g in grafana["groups"] for r in g["rules"] for d in r["data"]}
    assert sources == {"prometheus", "__expr__"}


# ------------------------------------------------------- residual/scored export
@pytest.mark.parametrize("which", ["residual", "error"])
def test_score_series_exposes_what_the_declared_histogram_and_counter_would(which: str) -> None:
    """The processor's histograms that the hot loop feeds come from plain accumulators
    (monitoring.metrics.ScoreSeries): a watched device's residual histogram and scored
    counter, the fleet's absolute-error histogram. Their exposition equals that of a real
    Histogram (and Counter) declared like them and fed the same values (NaN, infinities and
    bucket bounds included), in both exposition formats."""
    import math
    import random

    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics

    m = monitoring.metrics
    plain, ours = CollectorRegistry(), CollectorRegistry()
    if which == "residual":
        declared, scored, bounds = m.RESIDUAL, m.SCORED, m.RESIDUAL_BOUNDS
        labels: tuple[str, ...] = ("device", "model", "horizon")
    else:
        declared, scored, bounds, labels = m.ERROR, None, m.ERROR_BOUNDS, ("model", "horizon")
    (family,) = declared.describe()
    hist = Histogram(family.name, family.documentation, labels, buckets=bounds, registry=plain)
    count = None
    if scored is not None:
        (cfam,) = scored.describe()
        count = Counter(cfam.name, cfam.documentation, labels, registry=plain)
    series = m.ScoreSeries(declared, labels, bounds[:-1], scored, registry=ours)
    rng = random.Random(7)
    values = [rng.gauss(0.0, 2.0) for _ in range(2000)] + list(bounds)
    values += [-0.0, math.inf, -math.inf, math.nan]
    if which == "error":  # absolute errors: never negative
        values = [abs(v) for v in values]
    for v in values:
        key = (rng.choice(["d1", "d2"]), rng.choice(["linear", "persistence"]), rng.choice("06"))
        key = key[-len(labels) :]
        hist.labels(*key).observe(v)
        if count is not None:
            count.labels(*key).inc()
        series.add(series.series(*key), v)

    def lines(text: bytes) -> list[str]:  # creation times differ by construction
        return sorted(
            re.sub(r"_created(\{.*\}) \S+", r"_created\1 T", t) for t in text.decode().splitlines()
        )

    assert lines(generate_latest(ours)) == lines(generate_latest(plain))
    assert lines(openmetrics(ours)) == lines(openmetrics(plain))
    assert 'le="+Inf"' in generate_latest(ours).decode()

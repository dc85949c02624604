"""Grafana unified-alerting rules, generated from the Prometheus alert rules.

The Prometheus rules in ``monitoring/prometheus/rules/alerts.yml`` are the
source of truth (they carry the ``promtool`` unit tests). Each becomes one
Grafana rule with three steps: ``A`` runs the very same PromQL expression (an
instant query, which returns a series only while the condition holds), ``B``
reduces it to its last value, and the condition ``C = is_number($B)`` fires for
every series ``A`` returns. ``for``, labels and annotations are carried over;
``{{ $value }}`` becomes Grafana's ``{{ $values.B.Value }}``.

The provisioning file ``monitoring/grafana/provisioning/alerting/iotcast.yml``
is this module's output (``python -m monitoring.alerting`` rewrites it) and a
test keeps the two identical.

>>> prom = {"groups": [{"name": "g", "rules": [{"alert": "Down", "expr": "up == 0",
...         "for": "1m", "labels": {"severity": "page"},
...         "annotations": {"summary": "{{ $labels.instance }} down ({{ $value }})"}}]}]}
>>> rule = grafana_alert_rules(prom)["groups"][0]["rules"][0]
>>> rule["uid"], rule["condition"], rule["for"], rule["data"][0]["model"]["expr"]
('iotcast-down', 'C', '1m', 'up == 0')
>>> rule["annotations"]["summary"]
'{{ $labels.instance }} down ({{ $values.B.Value }})'
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ALERTS_FILE",
    "GRAFANA_ALERTS_FILE",
    "DATASOURCE_UID",
    "FOLDER_TITLE",
    "FOLDER_UID",
    "GROUP_INTERVAL",
    "grafana_alert_rules",
    "load_prometheus_alerts",
    "render_grafana_alerts",
    "to_api_rule",
]

_HERE = Path(__file__).resolve().parent
ALERTS_FILE = _HERE / "prometheus" / "rules" / "alerts.yml"
GRAFANA_ALERTS_FILE = _HERE / "grafana" / "provisioning" / "alerting" / "iotcast.yml"
DATASOURCE_UID = "prometheus"  # the provisioned datasource's uid (grafana/provisioning/datasources)
FOLDER_UID = "iotcast"
FOLDER_TITLE = "iotcast"
GROUP_INTERVAL = "10s"

_VALUE = re.compile(r"\$value\b")
_UID_CHARS = re.compile(r"[^a-z0-9-]+")


def load_prometheus_alerts(path: Path = ALERTS_FILE) -> dict[str, Any]:
    """The Prometheus alert rules file, parsed."""
    return yaml.safe_load(Path(path).read_text())


def _uid(alert: str) -> str:
    name = alert.lower().removeprefix("iotcast")
    return ("iotcast-" + _UID_CHARS.sub("-", name).strip("-"))[:40]


def _grafana_rule(rule: dict[str, Any], datasource_uid: str) -> dict[str, Any]:
    return {
        "uid": _uid(rule["alert"]),
        "title": rule["alert"],
        "condition": "C",
        "data": [
            {
                "refId": "A",
                "relativeTimeRange": {"from": 600, "to": 0},
                "datasourceUid": datasource_uid,
                "model": {
                    "refId": "A",
                    "expr": rule["expr"].strip(),
                    "instant": True,
                    "range": False,
                    "intervalMs": 1000,
                    "maxDataPoints": 43200,
                },
            },
            {
                "refId": "B",
                "relativeTimeRange": {"from": 0, "to": 0},
                "datasourceUid": "__expr__",
                "model": {"refId": "B", "type": "reduce", "expression": "A", "reducer": "last"},
            },
            {
                "refId": "C",
                "relativeTimeRange": {"from": 0, "to": 0},
                "datasourceUid": "__expr__",
                "model": {"refId": "C", "type": "math", "expression": "is_number($B)"},
            },
        ],
        # No series from A means the Prometheus condition does not hold.
        "noDataState": "OK",
        "execErrState": "Error",
        "for": rule.get("for", "0s"),
        "labels": dict(rule.get("labels", {})),
        "annotations": {
            k: _VALUE.sub("$values.B.Value", v) for k, v in rule.get("annotations", {}).items()
        },
        "isPaused": False,
    }


def grafana_alert_rules(
    prometheus_rules: dict[str, Any], datasource_uid: str = DATASOURCE_UID
) -> dict[str, Any]:
    """Grafana alerting provisioning (``apiVersion: 1``) equivalent to ``prometheus_rules``."""
    groups = []
    for group in prometheus_rules["groups"]:
        rules = [_grafana_rule(r, datasource_uid) for r in group["rules"] if "alert" in r]
        if rules:
            groups.append(
                {
                    "orgId": 1,
                    "name": group["name"],
                    "folder": FOLDER_TITLE,
                    "interval": GROUP_INTERVAL,
                    "rules": rules,
                }
            )
    return {"apiVersion": 1, "groups": groups}


def to_api_rule(rule: dict[str, Any], group: str, folder_uid: str = FOLDER_UID) -> dict[str, Any]:
    """A provisioning-file rule in the shape of Grafana's HTTP provisioning API.

    >>> to_api_rule({"uid": "u", "title": "T"}, "g")
    {'uid': 'u', 'title': 'T', 'folderUID': 'iotcast', 'ruleGroup': 'g', 'orgID': 1}
    """
    return {**rule, "folderUID": folder_uid, "ruleGroup": group, "orgID": 1}


_HEADER = """\
# Grafana unified-alerting rules: GENERATED from monitoring/prometheus/rules/alerts.yml
# by `python -m monitoring.alerting` (do not edit by hand; a test checks they match).
# Each rule runs the Prometheus rule's expression (A), takes its last value (B)
# and fires for every series A returns (C = is_number($B)).
"""


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (PromQL) as ``|`` blocks, as people write them."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render_grafana_alerts(prometheus_rules: dict[str, Any] | None = None) -> str:
    """The text of the Grafana alerting provisioning file."""
    rules = grafana_alert_rules(prometheus_rules or load_prometheus_alerts())
    return _HEADER + yaml.dump(
        rules, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000
    )


if __name__ == "__main__":
    GRAFANA_ALERTS_FILE.write_text(render_grafana_alerts())
    print(f"wrote {GRAFANA_ALERTS_FILE}", file=sys.stderr)

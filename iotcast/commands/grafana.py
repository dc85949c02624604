"""Upload the iotcast dashboards and alert rules to a running Grafana.

Dashboards keep their uid and are overwritten; alert rules are created, or
replaced when a rule with the same uid exists; everything lands in the
``iotcast`` folder (created if missing).  The upload itself is
:func:`monitoring.grafana.push`.

Example::

    iotcast grafana push --url http://127.0.0.1:3000 --token glsa_xxx
    iotcast grafana push --url http://admin:admin@127.0.0.1:3000 --datasource-uid my-prom

>>> import argparse
>>> p = argparse.ArgumentParser(); add_arguments(p)
>>> a = p.parse_args(["push", "--url", "http://127.0.0.1:3000", "--no-alerts"])
>>> a.action, a.no_alerts, a.datasource_uid
('push', True, 'prometheus')
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from iotcast.settings import Settings
from monitoring.alerting import (
    DATASOURCE_UID,
    FOLDER_UID,
    grafana_alert_rules,
    load_prometheus_alerts,
)
from monitoring.grafana import GrafanaPushError, connect, load_dashboards, push

__all__ = ["HELP", "add_arguments", "run"]

HELP = "upload the dashboards and alert rules to Grafana (idempotent: same uid, overwrite)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["push"], help="push: upload dashboards and alert rules")
    parser.add_argument(
        "--url", help="Grafana base URL, e.g. http://127.0.0.1:3000 (env GRAFANA_URL)"
    )
    parser.add_argument(
        "--token", help="service-account token (env GRAFANA_TOKEN); or user:pass in --url"
    )
    parser.add_argument(
        "--datasource-uid",
        default=DATASOURCE_UID,
        help=f"uid of the Prometheus datasource in that Grafana (default {DATASOURCE_UID!r})",
    )
    parser.add_argument(
        "--folder-uid", default=FOLDER_UID, help=f"folder to put everything in ({FOLDER_UID!r})"
    )
    parser.add_argument("--no-alerts", action="store_true", help="push the dashboards only")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per HTTP call")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(settings: Settings, args: argparse.Namespace) -> int:
    url = args.url or os.environ.get("GRAFANA_URL")
    token = args.token or os.environ.get("GRAFANA_TOKEN")
    if not url:
        print("iotcast grafana push: give --url (or set GRAFANA_URL)", file=sys.stderr)
        return 2
    try:
        api, version = connect(url, token, args.timeout)
        report = push(
            api,
            url=url,
            version=version,
            dashboards=load_dashboards(),
            alert_rules=None
            if args.no_alerts
            else grafana_alert_rules(load_prometheus_alerts(), args.datasource_uid),
            folder_uid=args.folder_uid,
            datasource_uid=args.datasource_uid,
        )
    except GrafanaPushError as exc:
        print(f"iotcast grafana push: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(
            json.dumps(
                {
                    "grafana_version": report.grafana_version,
                    "dashboards": dict(report.dashboards),
                    "alert_rules": dict(report.alert_rules),
                }
            )
        )
    else:
        print(f"Grafana {report.grafana_version} at {url}: folder {args.folder_uid!r}")
        for uid, action in report.dashboards:
            print(f"  dashboard  {uid}: {action}")
        for uid, action in report.alert_rules:
            print(f"  alert rule {uid}: {action}")
    return 0

"""Upload the iotcast dashboards and alert rules to a running Grafana.

Dashboards keep their uid and are overwritten; alert rules are created, or
replaced when a rule with the same uid exists; everything lands in the
``iotcast`` folder (created if missing). Running it twice changes nothing but
the dashboards' version numbers. Needs Grafana 9.1 or newer (the unified
alerting provisioning API) and a service-account token with the Editor role.

The command line is ``iotcast grafana push`` (:mod:`iotcast.commands.grafana`).
The files pushed are the ones Grafana provisions in the docker stack:

>>> sorted(d["uid"] for d in load_dashboards())
['iotcast-bridge', 'iotcast-device', 'iotcast-overview']
>>> dash = with_datasource(load_dashboards()[0], "my-prom")
>>> {t["datasource"]["uid"] for p in dash["panels"] for t in p.get("targets", [])}
{'my-prom'}
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import niquests
from grafana_client import GrafanaApi
from grafana_client.client import (
    GrafanaClientError,
    GrafanaException,
    GrafanaServerError,
    GrafanaUnauthorizedError,
)

from monitoring.alerting import (
    DATASOURCE_UID,
    FOLDER_TITLE,
    FOLDER_UID,
    GROUP_INTERVAL,
    to_api_rule,
)

__all__ = [
    "DASHBOARDS_DIR",
    "MIN_VERSION",
    "GrafanaPushError",
    "PushReport",
    "connect",
    "load_dashboards",
    "push",
    "with_datasource",
]

DASHBOARDS_DIR = Path(__file__).resolve().parent / "grafana" / "dashboards"
MIN_VERSION = (9, 1)


class GrafanaPushError(RuntimeError):
    """Grafana refused or could not take the upload; the message says what to do."""


@dataclass
class PushReport:
    """What a push did: ``(uid, action)`` pairs, action ``created``/``updated``/``overwritten``."""

    grafana_version: str
    dashboards: list[tuple[str, str]] = field(default_factory=list)
    alert_rules: list[tuple[str, str]] = field(default_factory=list)


def load_dashboards(directory: Path = DASHBOARDS_DIR) -> list[dict[str, Any]]:
    """Every dashboard JSON of ``directory``, sorted by file name."""
    return [json.loads(p.read_text()) for p in sorted(Path(directory).glob("*.json"))]


def with_datasource(obj: Any, uid: str) -> Any:
    """A deep copy of ``obj`` with every Prometheus datasource reference pointing at ``uid``."""
    obj = copy.deepcopy(obj)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ds = node.get("datasource")
            if isinstance(ds, dict) and ds.get("type") == "prometheus":
                ds["uid"] = uid
            if node.get("datasourceUid") == DATASOURCE_UID:
                node["datasourceUid"] = uid
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(obj)
    return obj


def _normalise_url(url: str) -> str:
    # grafana-client appends "api" to the URL's path: "/grafana" must end in "/".
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise GrafanaPushError(f"--url {url!r}: expected http(s)://host[:port][/path]")
    path = parts.path if parts.path.endswith("/") or not parts.path else parts.path + "/"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _explain(exc: GrafanaException, url: str, doing: str) -> GrafanaPushError:
    status = getattr(exc, "status_code", 0)
    if isinstance(exc, GrafanaUnauthorizedError) or status == 401:
        return GrafanaPushError(
            f"Grafana at {url} rejected the credentials (401 Unauthorized) while {doing}: pass a "
            "valid service-account token with --token (Grafana: Administration > Users and access "
            "> Service accounts; role Editor) or user:password in the URL"
        )
    if status == 403:
        return GrafanaPushError(
            f"Grafana at {url} refused {doing} (403 Forbidden): the token's service account needs "
            "the Editor role (Admin to create the folder)"
        )
    if status == 404 and "alert" in doing:
        return GrafanaPushError(
            f"Grafana at {url} has no alerting provisioning API (404 while {doing}): it needs "
            f"Grafana {MIN_VERSION[0]}.{MIN_VERSION[1]} or newer with unified alerting enabled"
        )
    if status == 0:
        return GrafanaPushError(f"cannot reach Grafana at {url} while {doing}: {exc}")
    kind = "server error" if isinstance(exc, GrafanaServerError) else "error"
    return GrafanaPushError(f"Grafana at {url} answered {status} ({kind}) while {doing}: {exc}")


def connect(url: str, token: str | None, timeout: float = 10.0) -> tuple[GrafanaApi, str]:
    """A client for ``url`` and the Grafana version, after checking auth and version."""
    api = GrafanaApi.from_url(_normalise_url(url), credential=token or None, timeout=timeout)
    info = _call(url, "reading its version", api.health.check) or {}
    version = str(info.get("version") or "")
    try:
        major, minor = (int(x) for x in version.split("-")[0].split(".")[:2])
    except ValueError as exc:
        raise GrafanaPushError(
            f"Grafana at {url} did not report a version (got {version!r}); is it Grafana?"
        ) from exc
    if (major, minor) < MIN_VERSION:
        raise GrafanaPushError(
            f"Grafana at {url} is version {version}; iotcast needs "
            f"{MIN_VERSION[0]}.{MIN_VERSION[1]} or newer (unified alerting provisioning API)"
        )
    return api, version


_MISSING = object()


def _call(url: str, doing: str, fn: Any, *args: Any, missing_ok: bool = False, **kw: Any) -> Any:
    """``fn(*args, **kw)``, with every failure turned into a :class:`GrafanaPushError`.

    With ``missing_ok``, a 404 answer returns ``_MISSING`` instead.
    """
    try:
        return fn(*args, **kw)
    except GrafanaClientError as exc:
        if missing_ok and exc.status_code == 404:
            return _MISSING
        raise _explain(exc, url, doing) from exc
    except GrafanaException as exc:
        raise _explain(exc, url, doing) from exc
    except niquests.exceptions.RequestException as exc:
        raise GrafanaPushError(f"cannot reach Grafana at {url} while {doing}: {exc}") from exc


def _ensure_folder(api: GrafanaApi, url: str, folder_uid: str) -> None:
    doing = f"reading folder {folder_uid!r}"
    if _call(url, doing, api.folder.get_folder, folder_uid, missing_ok=True) is _MISSING:
        _call(
            url,
            f"creating folder {folder_uid!r}",
            api.folder.create_folder,
            FOLDER_TITLE,
            uid=folder_uid,
        )


def _interval_seconds(interval: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    return int(interval[:-1]) * units[interval[-1]]


def push(
    api: GrafanaApi,
    *,
    url: str,
    version: str,
    dashboards: list[dict[str, Any]],
    alert_rules: dict[str, Any] | None,
    folder_uid: str = FOLDER_UID,
    datasource_uid: str = DATASOURCE_UID,
) -> PushReport:
    """Upload ``dashboards`` and the Grafana ``alert_rules`` provisioning; see the module doc."""
    report = PushReport(grafana_version=version)
    _ensure_folder(api, url, folder_uid)
    for dash in dashboards:
        body = {
            "dashboard": {**with_datasource(dash, datasource_uid), "id": None},
            "folderUid": folder_uid,
            "overwrite": True,
            "message": "iotcast grafana push",
        }
        answer = _call(
            url, f"uploading dashboard {dash['uid']!r}", api.dashboard.update_dashboard, body
        )
        if answer.get("uid") not in (None, dash["uid"]):
            raise GrafanaPushError(
                f"Grafana stored dashboard {dash['uid']!r} under uid {answer.get('uid')!r}"
            )
        action = "created" if answer.get("version") == 1 else "overwritten"
        report.dashboards.append((dash["uid"], action))
    for group in (alert_rules or {}).get("groups", []):
        for rule in group["rules"]:
            body = to_api_rule(with_datasource(rule, datasource_uid), group["name"], folder_uid)
            uid = rule["uid"]
            prov = api.alertingprovisioning
            doing = f"uploading alert rule {uid!r}"
            exists = _call(url, doing, prov.get_alertrule, uid, missing_ok=True) is not _MISSING
            if exists:
                _call(url, doing, prov.update_alertrule, uid, body, disable_provenance=True)
            else:
                _call(url, doing, prov.create_alertrule, body, disable_provenance=True)
            report.alert_rules.append((uid, "updated" if exists else "created"))
        doing = f"setting the interval of alert group {group['name']!r}"
        current = _call(
            url, doing, api.alertingprovisioning.get_rule_group, folder_uid, group["name"]
        )
        wanted = _interval_seconds(group.get("interval", GROUP_INTERVAL))
        if current.get("interval") != wanted:
            current["interval"] = wanted
            _call(
                url,
                doing,
                api.alertingprovisioning.update_rule_group,
                folder_uid,
                group["name"],
                current,
                disable_provenance=True,
            )
    return report

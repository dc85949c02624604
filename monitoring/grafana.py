"""Upload the iotcast dashboards and alert rules to a running Grafana.

Dashboards keep their uid and are overwritten; alert rules are created, or
replaced when a rule with the same uid exists; everything lands in the
``iotcast`` folder (created if missing). Running it twice changes nothing but
the dashboards' version numbers. Needs Grafana 9.1 or newer (the unified
alerting provisioning API) and a service-account token with the Editor role.

The command line is ``iotcast grafana push`` (:mod:`iotcast.commands.grafana`).
The six calls it needs go through :mod:`urllib.request` (:class:`GrafanaClient`), not
``grafana-client``: since 4.0 that library depends on niquests and urllib3-future, whose
``.pth`` file rewrites ``site-packages/urllib3`` at every interpreter start, so boto3 in the
bridge and the processor would run on that fork instead of urllib3.
The files pushed are the ones Grafana provisions in the docker stack:

>>> sorted(d["uid"] for d in load_dashboards())
['iotcast-bridge', 'iotcast-device', 'iotcast-models', 'iotcast-overview']
>>> dash = with_datasource(load_dashboards()[0], "my-prom")
>>> {t["datasource"]["uid"] for p in dash["panels"] for t in p.get("targets", [])}
{'my-prom'}
"""

from __future__ import annotations

import base64
import copy
import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

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
    "GrafanaClient",
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


class _Answer(Exception):
    """Grafana answered with an HTTP error ``status``; ``message`` from its JSON body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status} {message}")
        self.status_code = status


class GrafanaClient:
    """Grafana's HTTP API through the standard library: JSON in, JSON out, one auth header.

    The credentials are a service-account token (Bearer) or the URL's user:password (Basic).
    """

    def __init__(self, url: str, token: str | None, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise GrafanaPushError(f"--url {url!r}: expected http(s)://host[:port][/path]")
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        self.base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self.headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        elif parts.username:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self.headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None, provenance: bool = True) -> Any:
        """``method`` on ``/api`` + ``path``; the decoded JSON answer, or :class:`_Answer`."""
        headers = dict(self.headers)
        if not provenance:  # rules stay editable in Grafana's UI
            headers["X-Disable-Provenance"] = "true"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.base}/api{path}", data, headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read() or b"{}").get("message") or exc.reason
            except (ValueError, AttributeError):
                message = exc.reason
            raise _Answer(exc.code, str(message)) from exc
        return json.loads(raw) if raw else {}


def _explain(exc: _Answer, url: str, doing: str) -> GrafanaPushError:
    status = exc.status_code
    if status == 401:
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
    kind = "server error" if status >= 500 else "error"
    return GrafanaPushError(f"Grafana at {url} answered {status} ({kind}) while {doing}: {exc}")


def connect(url: str, token: str | None, timeout: float = 10.0) -> tuple[GrafanaClient, str]:
    """A client for ``url`` and the Grafana version, after checking auth and version."""
    api = GrafanaClient(url, token, timeout)
    info = _call(url, "reading its version", api.call, "GET", "/frontend/settings") or {}
    version = str((info.get("buildInfo") or {}).get("version") or "")
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
    except _Answer as exc:
        if missing_ok and exc.status_code == 404:
            return _MISSING
        raise _explain(exc, url, doing) from exc
    except (OSError, ValueError) as exc:  # refused, timed out, DNS, TLS; not JSON
        raise GrafanaPushError(f"cannot reach Grafana at {url} while {doing}: {exc}") from exc


def _ensure_folder(api: GrafanaClient, url: str, folder_uid: str) -> None:
    doing = f"reading folder {folder_uid!r}"
    if _call(url, doing, api.call, "GET", f"/folders/{folder_uid}", missing_ok=True) is _MISSING:
        body = {"uid": folder_uid, "title": FOLDER_TITLE}
        _call(url, f"creating folder {folder_uid!r}", api.call, "POST", "/folders", body)


def _interval_seconds(interval: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    return int(interval[:-1]) * units[interval[-1]]


def push(
    api: GrafanaClient,
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
        doing = f"uploading dashboard {dash['uid']!r}"
        answer = _call(url, doing, api.call, "POST", "/dashboards/db", body)
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
            path = f"/v1/provisioning/alert-rules/{uid}"
            doing = f"uploading alert rule {uid!r}"
            exists = _call(url, doing, api.call, "GET", path, missing_ok=True) is not _MISSING
            if exists:
                _call(url, doing, api.call, "PUT", path, body, provenance=False)
            else:
                _call(
                    url, doing, api.call, "POST", "/v1/provisioning/alert-rules", body,
                    provenance=False,
                )  # fmt: skip
            report.alert_rules.append((uid, "updated" if exists else "created"))
        doing = f"setting the interval of alert group {group['name']!r}"
        path = f"/v1/provisioning/folder/{folder_uid}/rule-groups/{group['name']}"
        current = _call(url, doing, api.call, "GET", path)
        wanted = _interval_seconds(group.get("interval", GROUP_INTERVAL))
        if current.get("interval") != wanted:
            current["interval"] = wanted
            _call(url, doing, api.call, "PUT", path, current, provenance=False)
    return report

"""`iotcast grafana push` against a small fake Grafana HTTP API on 127.0.0.1.

Grafana itself cannot be installed on these machines (no Debian package, no
registry for its binaries), so this fake stands in for it ONLY to check what
the command sends (request paths, bodies, auth header), that a second push
overwrites instead of duplicating, and the messages on a bad token or an old
Grafana. Whether Grafana accepts the dashboards and rules is not tested here.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from iotcast.cli import main
from monitoring.alerting import load_prometheus_alerts
from monitoring.grafana import load_dashboards

TOKEN = "glsa_test_token"


class FakeGrafana:
    """Just enough of Grafana's HTTP API, with state, to observe a push."""

    def __init__(self, version: str = "10.4.2", prefix: str = "") -> None:
        self.version = version
        self.prefix = prefix
        self.folders: dict[str, dict] = {}
        self.dashboards: dict[str, dict] = {}
        self.rules: dict[str, dict] = {}
        self.groups: dict[tuple[str, str], int] = {}
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{prefix}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeGrafana:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, Any]:
        self.requests.append((method, path, headers, body))
        if not path.startswith(self.prefix + "/api/"):
            return 404, {"message": "not found"}
        path = path[len(self.prefix) + len("/api") :]
        if headers.get("authorization") != f"Bearer {TOKEN}":
            return 401, {"message": "invalid API key"}
        if method == "GET" and path == "/frontend/settings":
            return 200, {"buildInfo": {"version": self.version}}
        if m := re.fullmatch(r"/folders/([\w-]+)", path):
            if m[1] in self.folders:
                return 200, self.folders[m[1]]
            return 404, {"message": "folder not found"}
        if method == "POST" and path == "/folders":
            self.folders[body["uid"]] = body
            return 200, body
        if method == "POST" and path == "/dashboards/db":
            dash = body["dashboard"]
            old = self.dashboards.get(dash["uid"])
            if old and not body.get("overwrite"):
                return 412, {"message": "version-mismatch"}
            version = (old["version"] + 1) if old else 1
            self.dashboards[dash["uid"]] = {"body": body, "version": version}
            return 200, {"status": "success", "uid": dash["uid"], "version": version}
        if m := re.fullmatch(r"/v1/provisioning/alert-rules/([\w-]+)", path):
            if method == "GET":
                return (200, self.rules[m[1]]) if m[1] in self.rules else (404, {"message": "nf"})
            if method == "PUT":
                if m[1] not in self.rules:
                    return 404, {"message": "rule not found"}
                self.rules[m[1]] = body
                return 200, body
        if method == "POST" and path == "/v1/provisioning/alert-rules":
            if body["uid"] in self.rules:
                return 409, {"message": "rule exists"}
            self.rules[body["uid"]] = body
            self.groups.setdefault((body["folderUID"], body["ruleGroup"]), 60)
            return 201, body
        if m := re.fullmatch(r"/v1/provisioning/folder/([\w-]+)/rule-groups/([\w-]+)", path):
            key = (m[1], m[2])
            if key not in self.groups:
                return 404, {"message": "group not found"}
            if method == "PUT":
                self.groups[key] = body["interval"]
            rules = [r for r in self.rules.values() if (r["folderUID"], r["ruleGroup"]) == key]
            return 200, {
                "title": m[2],
                "folderUid": m[1],
                "interval": self.groups[key],
                "rules": rules,
            }
        return 404, {"message": f"fake grafana: no route {method} {path}"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, answer = fake.handle(self.command, self.path, headers, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, *args: object) -> None:
                pass

        return Handler


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    with FakeGrafana() as fake:
        yield fake


def _alerts() -> list[dict]:
    return [r for g in load_prometheus_alerts()["groups"] for r in g["rules"] if "alert" in r]


def test_grafana_push_uploads_every_dashboard_and_alert_rule(grafana: FakeGrafana, capsys) -> None:
    assert main(["grafana", "push", "--url", grafana.url, "--token", TOKEN]) == 0
    assert set(grafana.folders) == {"iotcast"}
    assert set(grafana.dashboards) == {d["uid"] for d in load_dashboards()}
    for uid, stored in grafana.dashboards.items():
        body = stored["body"]
        assert body["overwrite"] is True and body["folderUid"] == "iotcast"
        assert body["dashboard"]["uid"] == uid and body["dashboard"]["id"] is None
    alerts = {a["alert"]: a for a in _alerts()}
    assert {r["title"] for r in grafana.rules.values()} == set(alerts)
    for rule in grafana.rules.values():
        source = alerts[rule["title"]]
        assert rule["data"][0]["model"]["expr"] == source["expr"].strip()
        assert rule["for"] == source.get("for", "0s")
        assert rule["labels"] == source["labels"]
        assert rule["folderUID"] == "iotcast" and rule["condition"] == "C"
    assert set(grafana.groups.values()) == {10}, "rule groups evaluate every 10 s"
    rule_posts = [r for r in grafana.requests if r[0] == "POST" and "alert-rules" in r[1]]
    assert all(r[2].get("x-disable-provenance") == "true" for r in rule_posts)
    out = capsys.readouterr().out
    assert "dashboard  iotcast-device: created" in out


def test_grafana_push_twice_overwrites_without_duplicates(grafana: FakeGrafana, capsys) -> None:
    assert main(["grafana", "push", "--url", grafana.url, "--token", TOKEN]) == 0
    rules_before = json.loads(json.dumps(grafana.rules))
    n_posts = sum(1 for r in grafana.requests if r[0] == "POST" and "alert-rules" in r[1])
    assert n_posts == len(_alerts())
    grafana.requests.clear()
    capsys.readouterr()
    assert main(["grafana", "push", "--url", grafana.url, "--token", TOKEN, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["dashboards"].values()) == {"overwritten"}
    assert set(report["alert_rules"].values()) == {"updated"}
    assert {s["version"] for s in grafana.dashboards.values()} == {2}
    assert grafana.rules == rules_before
    assert not [r for r in grafana.requests if r[0] == "POST" and "alert-rules" in r[1]]
    assert not [r for r in grafana.requests if r[0] == "POST" and r[1].endswith("/folders")]


def test_grafana_push_points_everything_at_the_given_datasource(grafana: FakeGrafana) -> None:
    argv = ["grafana", "push", "--url", grafana.url, "--token", TOKEN, "--datasource-uid", "prom-2"]
    assert main(argv) == 0
    text = json.dumps([grafana.dashboards, grafana.rules])
    uids = set(re.findall(r'"datasourceUid": "([^"]+)"', text))
    uids |= set(re.findall(r'"type": "prometheus", "uid": "([^"]+)"', text))
    assert uids == {"prom-2", "__expr__"}


def test_grafana_push_under_a_url_path_prefix() -> None:
    with FakeGrafana(prefix="/grafana") as fake:
        assert main(["grafana", "push", "--url", fake.url, "--token", TOKEN, "--no-alerts"]) == 0
        assert len(fake.dashboards) == len(load_dashboards()) and not fake.rules
        assert all(path.startswith("/grafana/api/") for _, path, _, _ in fake.requests)


def test_grafana_push_explains_a_rejected_token(grafana: FakeGrafana, capsys) -> None:
    assert main(["grafana", "push", "--url", grafana.url, "--token", "wrong"]) == 1
    err = capsys.readouterr().err
    assert "401 Unauthorized" in err and "--token" in err and "Service accounts" in err
    assert not grafana.dashboards


def test_grafana_push_refuses_a_grafana_too_old_for_alert_provisioning(capsys) -> None:
    with FakeGrafana(version="8.5.27") as fake:
        assert main(["grafana", "push", "--url", fake.url, "--token", TOKEN]) == 1
        assert not fake.dashboards
    err = capsys.readouterr().err
    assert "8.5.27" in err and "9.1 or newer" in err


def test_grafana_push_explains_an_unreachable_grafana(capsys) -> None:
    from iotcast.stack import free_port

    url = f"http://127.0.0.1:{free_port()}"
    assert main(["grafana", "push", "--url", url, "--token", TOKEN, "--timeout", "2"]) == 1
    assert f"cannot reach Grafana at {url}" in capsys.readouterr().err


def test_the_url_credentials_become_basic_auth_and_leave_the_url() -> None:
    from monitoring.grafana import GrafanaClient

    api = GrafanaClient("http://admin:s%40cret@127.0.0.1:3000/grafana/", token=None)
    assert api.base == "http://127.0.0.1:3000/grafana"
    assert api.headers["Authorization"] == "Basic YWRtaW46c0BjcmV0"  # admin:s@cret
    assert GrafanaClient("http://a:b@h:1", token="t").headers["Authorization"] == "Bearer t"


def test_botocore_runs_on_urllib3_itself() -> None:
    """urllib3-future (pulled in by niquests, e.g. by grafana-client 4+) installs a .pth that
    rewrites site-packages/urllib3 at every interpreter start: boto3 in the bridge and the
    processor would then run on a fork chosen by an unrelated dependency."""
    import importlib.metadata

    import urllib3

    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("urllib3-future")
    assert int(urllib3.__version__.split(".")[2]) < 900, urllib3.__version__  # forks: x.y.9PP

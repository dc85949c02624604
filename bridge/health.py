"""``/metrics`` (Prometheus) and ``/healthz`` (readiness) on one port.

``/healthz`` answers 200 with a JSON body when the check says ``ok``, 503
otherwise, so a load balancer or Kubernetes probe can use it as is.

>>> import json, urllib.request
>>> server = HealthServer(0, lambda: {"ok": True, "mqtt": True, "kinesis": True})
>>> with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz") as r:
...     r.status, json.loads(r.read())["mqtt"]
(200, True)
>>> server.close()
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

__all__ = ["HealthServer"]


class HealthServer:
    """Serves ``/metrics`` and ``/healthz`` from a daemon thread on ``host:port`` (0 = any free)."""

    def __init__(
        self, port: int, check: Callable[[], dict[str, Any]], host: str = "127.0.0.1"
    ) -> None:
        self.check = check
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/readyz"):
                    state = outer.check()
                    self._send(
                        200 if state.get("ok") else 503, orjson.dumps(state), "application/json"
                    )
                else:
                    self._send(404, b"try /metrics or /healthz\n", "text/plain")

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes every few seconds would flood the log

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="bridge-health", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

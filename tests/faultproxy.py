"""A fault-injecting HTTP proxy between the parts and the local AWS stack (127.0.0.1 only).

It forwards Kinesis requests to their upstream (``kinesis``: kinesalite; by
default the same as the others) and the rest (S3, DynamoDB) to the moto
server; :meth:`FaultProxy.before` builds one in front of a test's settings and
:meth:`FaultProxy.route` sends every service of those settings through it.
Neither moto nor kinesalite throttles or refuses part of a PutRecords call, so this
proxy forwards every request unchanged except Kinesis ``PutRecords``,
where it refuses records the way Kinesis does:

* ``throttle_share``: per partition key and call, the probability that the
  key's records are refused with ``ProvisionedThroughputExceededException``
  from a random point to the end of the call (a shard over its limit refuses
  everything after the point where the limit was hit: a suffix per shard);
* ``internal_share``: per record, the probability of ``InternalFailure``
  (anywhere, also in the middle of a device's run);
* ``call_error_share``: per call, the probability that the whole call fails
  with HTTP 500 ``InternalFailure`` or 400 ``ProvisionedThroughputExceededException``;
* ``down``: every Kinesis call fails (HTTP 503), as during an outage;
* ``slow_puts``/``slow_seconds``: the first calls reach moto only after a pause
  (a loaded server answering late, then applying the call all the same);
* :meth:`FaultProxy.refuse` ``("s3" | "dynamodb" | "kinesis" | "all", seconds)``:
  every request to that service is answered HTTP 503 ``ServiceUnavailable``
  (in the service's own error format) for a time window, as during an outage
  of one service; :meth:`FaultProxy.restore` ends it early.  A request is
  DynamoDB when its ``X-Amz-Target`` starts with ``DynamoDB_20120810``,
  Kinesis with ``Kinesis_``, S3 when it has no target (REST); moto's own
  ``/moto-api`` is never refused.  An upstream that does not answer (moto
  restarting) is answered 503 as well;
* ``keep_accepted``: the data of every record moto accepted through
  PutRecords is kept in ``accepted`` (what the stream held, even if the
  server is restarted afterwards).

The accepted records are forwarded to moto in one call and the answer is
merged back in the original order with ``FailedRecordCount`` and per-record
``ErrorCode``/``ErrorMessage``. Counters say what was injected.

>>> proxy = FaultProxy("http://127.0.0.1:9", throttle_share=0.1)
>>> proxy.url.startswith("http://127.0.0.1:")
True
>>> proxy.refuse("s3", 30.0); proxy.refusing("s3"), proxy.refusing("dynamodb")
(True, False)
>>> proxy.restore(); proxy.refusing("s3")
False
>>> proxy.close()
"""

from __future__ import annotations

import base64
import http.client
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import orjson

from iotcast.settings import Settings

__all__ = ["FaultProxy"]

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}
SERVICES = ("s3", "dynamodb", "kinesis")


class FaultProxy:
    """Serves on a free port of 127.0.0.1 and forwards to ``upstream`` (the moto server),
    Kinesis requests to ``kinesis`` when given."""

    def __init__(
        self,
        upstream: str,
        *,
        kinesis: str | None = None,
        throttle_share: float = 0.0,
        internal_share: float = 0.0,
        call_error_share: float = 0.0,
        slow_puts: int = 0,
        slow_seconds: float = 0.0,
        seed: int = 7,
        keep_accepted: bool = False,
    ) -> None:
        self.upstream = _address(upstream)
        self.kinesis_upstream = _address(kinesis) if kinesis else self.upstream
        self.throttle_share = throttle_share
        self.internal_share = internal_share
        self.call_error_share = call_error_share
        self.slow_puts = slow_puts  # the first N PutRecords calls ...
        self.slow_seconds = slow_seconds  # ... wait this long before moto applies them
        self.down = False
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.put_calls = 0
        self.records_in = 0
        self.refused: dict[str, int] = {}
        self.call_errors = 0
        self.keep_accepted = keep_accepted
        self.accepted: list[bytes] = []
        self._refuse_until: dict[str, float] = {}  # service -> monotonic end of its outage
        self.refused_requests: dict[str, int] = dict.fromkeys(SERVICES, 0)
        self.upstream_errors = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                proxy._handle(self)

            do_POST = do_PUT = do_HEAD = do_DELETE = do_GET  # noqa: N815

            def log_message(self, format, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @classmethod
    def before(cls, settings: Settings, **faults: Any) -> FaultProxy:
        """A proxy in front of the stack ``settings`` name (S3 and DynamoDB on one
        endpoint, Kinesis on its own)."""
        return cls(str(settings.endpoint("s3")), kinesis=settings.endpoint("kinesis"), **faults)

    def route(self, settings: Settings) -> Settings:
        """``settings`` with every service reached through this proxy."""
        return settings.replace(endpoint_url=self.url, endpoints={})

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # ------------------------------------------------------------- outages
    def refuse(self, service: str, seconds: float = float("inf")) -> None:
        """Answer every request to ``service`` (or ``"all"``) with 503 for ``seconds``."""
        names = SERVICES if service == "all" else (service,)
        if not set(names) <= set(SERVICES):
            raise ValueError(f"unknown service {service!r}; one of {SERVICES} or 'all'")
        until = time.monotonic() + seconds
        with self.lock:
            for name in names:
                self._refuse_until[name] = until

    def restore(self, service: str = "all") -> None:
        """End the outage of ``service`` (default: every service) now."""
        with self.lock:
            for name in SERVICES if service == "all" else (service,):
                self._refuse_until.pop(name, None)

    def refusing(self, service: str) -> bool:
        return time.monotonic() < self._refuse_until.get(service, 0.0)

    @property
    def refused_total(self) -> int:
        return sum(self.refused.values())

    # ----------------------------------------------------------------- proxy
    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes):
        target = next((v for k, v in headers.items() if k.lower() == "x-amz-target"), "")
        kinesis = target.startswith("Kinesis_")
        conn = http.client.HTTPConnection(
            *(self.kinesis_upstream if kinesis else self.upstream), timeout=60
        )
        try:
            headers = {k: v for k, v in headers.items() if k.lower() not in _HOP}
            headers["Content-Length"] = str(len(body))
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return (
                resp.status,
                [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP],
                resp.read(),
            )
        finally:
            conn.close()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        headers = dict(h.headers.items())
        target = h.headers.get("X-Amz-Target", "")
        service = _service(target, h.path)
        if (target.startswith("Kinesis_") and self.down) or (
            service is not None and self.refusing(service)
        ):
            with self.lock:
                self.refused_requests[service or "kinesis"] += 1
            return self._unavailable(h, service)
        try:
            if target.endswith(".PutRecords"):
                return self._put_records(h, headers, body)
            status, rheaders, rbody = self._forward(h.command, h.path, headers, body)
        except OSError:  # moto down or restarting: what a client meets at an outage
            with self.lock:
                self.upstream_errors += 1
            return self._unavailable(h, service)
        self._reply(h, status, rheaders, rbody)

    def _unavailable(self, h: BaseHTTPRequestHandler, service: str | None) -> None:
        if service == "s3":
            body = (
                b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code>'
                b"<Message>injected outage</Message></Error>"
            )
            return self._reply(h, 503, [("Content-Type", "application/xml")], body)
        if service == "dynamodb":
            body = _error(
                "com.amazonaws.dynamodb.v20120810#ServiceUnavailableException", "injected outage"
            )
            return self._reply(h, 503, [("Content-Type", "application/x-amz-json-1.0")], body)
        return self._reply(h, 503, [], _error("ServiceUnavailable", "injected outage"))

    def _reply(self, h, status: int, headers, body: bytes) -> None:
        h.send_response(status)
        for k, v in headers:
            h.send_header(k, v)
        if not any(k.lower() == "content-type" for k, _ in headers):
            h.send_header("Content-Type", "application/x-amz-json-1.1")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def _put_records(self, h, headers: dict[str, str], body: bytes) -> None:
        request = orjson.loads(body)
        records = request["Records"]
        with self.lock:
            self.put_calls += 1
            self.records_in += len(records)
            slow = self.put_calls <= self.slow_puts
            if self.rng.random() < self.call_error_share:
                self.call_errors += 1
                if self.rng.random() < 0.5:
                    reply = (500, _error("InternalFailure", "injected whole-call failure"))
                else:
                    reply = (
                        400,
                        _error("ProvisionedThroughputExceededException", "injected throttle"),
                    )
            else:
                reply = None
                verdicts = self._verdicts(records)
        if reply:
            return self._reply(h, reply[0], [], reply[1])
        if slow:  # a loaded server: the call is applied late, whether the client waits or not
            time.sleep(self.slow_seconds)
        passed = [r for r, v in zip(records, verdicts, strict=True) if v is None]
        results = []
        if passed:
            status, rheaders, rbody = self._forward(
                h.command, h.path, headers, orjson.dumps({**request, "Records": passed})
            )
            if status != 200:
                return self._reply(h, status, rheaders, rbody)
            results = orjson.loads(rbody)["Records"]
            if self.keep_accepted:
                with self.lock:
                    self.accepted.extend(
                        base64.b64decode(r["Data"])
                        for r, res in zip(passed, results, strict=True)
                        if "ErrorCode" not in res
                    )
        it = iter(results)
        merged = []
        for v in verdicts:
            if v is None:
                merged.append(next(it))
            else:
                merged.append({"ErrorCode": v, "ErrorMessage": f"injected {v}"})
        failed = sum(v is not None for v in verdicts)
        self._reply(h, 200, [], orjson.dumps({"FailedRecordCount": failed, "Records": merged}))

    def _verdicts(self, records: list[dict]) -> list[str | None]:
        verdicts: list[str | None] = [None] * len(records)
        by_key: dict[str, list[int]] = {}
        for i, r in enumerate(records):
            by_key.setdefault(r["PartitionKey"], []).append(i)
        for positions in by_key.values():
            if self.rng.random() < self.throttle_share:
                cut = self.rng.randrange(len(positions))
                for i in positions[cut:]:
                    verdicts[i] = "ProvisionedThroughputExceededException"
        for i in range(len(records)):
            if verdicts[i] is None and self.rng.random() < self.internal_share:
                verdicts[i] = "InternalFailure"
        for v in verdicts:
            if v:
                self.refused[v] = self.refused.get(v, 0) + 1
        return verdicts


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def _service(target: str, path: str) -> str | None:
    """Which service a request to moto's single endpoint is for (None: moto's own API)."""
    if target.startswith("DynamoDB_20120810"):
        return "dynamodb"
    if target.startswith("Kinesis_"):
        return "kinesis"
    if path.startswith("/moto-api"):
        return None
    return "s3"


def _error(code: str, message: str) -> bytes:
    return orjson.dumps({"__type": code, "message": message})

"""Forward telemetry from MQTT into Kinesis, losslessly (at least once).

Subscribes to ``iot/+/telemetry`` at QoS 1 with a persistent session (the
broker keeps messages while the bridge is down), validates each payload,
and sends valid readings to the Kinesis stream with PutRecords (partition
key = device id). Payloads that are not readings go to the dead letter in
S3 (``dead-letter/<date>/...jsonl``) with the reason. A message is
acknowledged only after Kinesis or S3 holds it.

Exit status: 0 after a clean stop (SIGTERM/SIGINT: stop taking messages,
flush, acknowledge); 1 when the flush did not finish within --stop-timeout
(the rest stays queued in the broker); 2 when the stream or bucket is
missing or a component is unreachable at start; 3 when Kinesis or S3 kept
failing past --retry-seconds (nothing acknowledged that was not delivered).

Example (local stack)::

    iotcast bridge --create-stream --shards 2 --metrics-port 9101

>>> import argparse
>>> p = argparse.ArgumentParser(); add_arguments(p)
>>> a = p.parse_args(["--linger-ms", "10", "--buffer", "5000"])
>>> options_from_args(a, app="iotcast").client_id, options_from_args(a, app="x").linger
('iotcast-bridge-iotcast', 0.01)
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from bridge.health import HealthServer
from bridge.retry import RetryPolicy
from bridge.service import Bridge, BridgeOptions
from iotcast.settings import Settings

__all__ = ["HELP", "add_arguments", "options_from_args", "run"]

HELP = "forward MQTT telemetry into the Kinesis stream (dead letters to S3)"
log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("bridge")
    g.add_argument(
        "--create-stream",
        action="store_true",
        help="create the stream (and the dead-letter bucket) if missing: local convenience",
    )
    g.add_argument(
        "--shards",
        type=int,
        default=1,
        help="shards of a stream created by --create-stream (default 1)",
    )
    g.add_argument(
        "--client-id",
        help="MQTT client id; fixed, so the broker keeps the session "
        "(default iotcast-bridge-<app>)",
    )
    g.add_argument(
        "--linger-ms",
        type=float,
        default=25.0,
        help="wait up to this long for a batch to fill (default 25)",
    )
    g.add_argument(
        "--buffer",
        type=int,
        default=20_000,
        help="messages held unacknowledged at most; backpressure to the broker above (default 20000)",
    )
    g.add_argument(
        "--lanes",
        type=int,
        default=4,
        help="PutRecords calls in flight at once (default 4); each shard's records go through "
        "one lane, in order, so at most one call per shard is in flight",
    )
    g.add_argument(
        "--retry-seconds",
        type=float,
        default=120.0,
        help="stop with exit status 3 when a call kept failing this long; what was not "
        "delivered stays unacknowledged in the broker (default 120)",
    )
    g.add_argument(
        "--stop-timeout",
        type=float,
        default=20.0,
        help="seconds to flush on SIGTERM before leaving the rest to the broker (default 20)",
    )
    g.add_argument(
        "--session-expiry",
        type=int,
        default=86_400,
        help="seconds the broker keeps the session while the bridge is down (default 86400)",
    )


def options_from_args(args: argparse.Namespace, app: str) -> BridgeOptions:
    """The :class:`BridgeOptions` the flags describe."""
    return BridgeOptions(
        client_id=args.client_id or f"iotcast-bridge-{app}",
        linger=args.linger_ms / 1000.0,
        buffer=args.buffer,
        lanes=args.lanes,
        retry=RetryPolicy(give_up_after=args.retry_seconds),
        create_stream=args.create_stream,
        shards=args.shards,
        session_expiry=args.session_expiry,
        stop_timeout=args.stop_timeout,
    )


def run(settings: Settings, args: argparse.Namespace) -> int:
    log.info("bridge: AWS endpoints: %s", settings.describe_endpoints())
    bridge = Bridge(settings.bridge_target(), options_from_args(args, settings.app))
    server = None
    if settings.metrics_port is not None:
        try:
            server = HealthServer(settings.metrics_port, bridge.health)
        except OSError as exc:
            print(
                f"iotcast bridge: cannot serve /metrics on 127.0.0.1:{settings.metrics_port}: "
                f"{exc.strerror}; choose another --metrics-port",
                file=sys.stderr,
            )
            return 2
        log.info("bridge: /metrics and /healthz on 127.0.0.1:%d", server.port)
    signal.signal(signal.SIGTERM, bridge.request_stop)
    signal.signal(signal.SIGINT, bridge.request_stop)
    try:
        status = bridge.run()
    finally:
        if server is not None:
            server.close()
    if status and bridge.failure is not None:
        print(f"iotcast bridge: {bridge.failure}", file=sys.stderr)
    return status

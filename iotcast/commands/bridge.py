"""Forward telemetry from MQTT into Kinesis, losslessly (at least once).

Subscribes to ``iot/+/telemetry`` at QoS 1 through the MQTT 5 shared
subscription ``$share/<group>/iot/+/telemetry`` (N bridges split the messages),
each bridge with its own client id and a persistent session (the broker keeps
its share while it is down, and redelivers it when it comes back under the same
id). A message is one reading or a batch (a JSON array); each reading is judged
on its own: good ones are packed, per shard, into Kinesis records of at most
--record-bytes, sent at the latest --linger-ms after the oldest arrived
(docs/records.md); bad ones go to the dead letter in S3
(``dead-letter/<date>/...jsonl``) with their reason. A message is acknowledged
only after Kinesis holds all its good readings and S3 its bad ones.

Client id: --client-id, else ``iotcast-bridge-<app>`` for the first bridge and
``iotcast-bridge-<app>-<bridge-id>`` with --bridge-id (IOTCAST_BRIDGE_ID). It
must be stable across restarts (a restarted bridge reclaims its session and
what was queued for it) and distinct per bridge: two processes with one id take
the session from each other (the one taken over exits with status 3 when the
broker says so, MQTT 5 reason 0x8E; mosquitto 2.0 only closes the connection).

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
>>> o = options_from_args(p.parse_args(["--bridge-id", "2"]), app="iotcast")
>>> o.client_id, o.share_group, o.record_format, o.record_bytes
('iotcast-bridge-iotcast-2', 'iotcast', 'packed', 25000)
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from bridge.health import HealthServer
from bridge.retry import RetryPolicy
from bridge.service import RECORD_FORMATS, Bridge, BridgeOptions
from iotcast.settings import Settings
from telemetry.reading import MAX_PAYLOAD_BYTES

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
        "--bridge-id",
        default=os.environ.get("IOTCAST_BRIDGE_ID") or None,
        help="this bridge's name among several (IOTCAST_BRIDGE_ID): its client id is "
        "iotcast-bridge-<app>-<bridge-id>; keep it across restarts (e.g. a StatefulSet "
        "ordinal, never a random pod name) so a restarted bridge reclaims its session "
        "(default: none, client id iotcast-bridge-<app>)",
    )
    g.add_argument(
        "--client-id",
        help="MQTT client id, overriding --bridge-id; stable and distinct per bridge",
    )
    g.add_argument(
        "--share-group",
        help="MQTT 5 shared-subscription group the bridges split the devices' messages "
        "in ($share/<group>/iot/+/telemetry); '' subscribes without sharing (default: <app> "
        "with --bridge-id, one of several bridges; '' without, the one bridge: mosquitto 2.0 "
        "does not restore a shared subscription from its persistence, so after a broker "
        "restart the messages published before the bridges subscribe again match nobody and "
        "are dropped (MQTT 5 publishers get PUBACK 0x10, no matching subscribers); what was "
        "queued or in flight before the restart is redelivered)",
    )
    g.add_argument(
        "--record-format",
        choices=RECORD_FORMATS,
        default="packed",
        help="packed: many readings per Kinesis record, one record per shard per linger "
        "(docs/records.md); single: one record per reading, as bridges before 2026-12 "
        "wrote, for processors not upgraded yet (default packed)",
    )
    g.add_argument(
        "--record-bytes",
        type=int,
        default=25_000,
        help="size bound of a packed record, before compression (default 25000: one "
        "Kinesis PUT payload unit of 25 KB; at most 1048576, Kinesis' largest record)",
    )
    g.add_argument(
        "--compress",
        action="store_true",
        help="deflate packed records (zlib level 1): fewer bytes per shard, some CPU",
    )
    g.add_argument(
        "--linger-ms",
        type=float,
        default=250.0,
        help="time bound: a reading waits at most this long for its record to fill "
        "(default 250; packed, each shard gets about 1000/linger records/s at low rates)",
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
    if not 2 * MAX_PAYLOAD_BYTES <= args.record_bytes <= 1024 * 1024:
        raise SystemExit(
            f"iotcast bridge: --record-bytes {args.record_bytes} is outside "
            f"[{2 * MAX_PAYLOAD_BYTES}, 1048576]"
        )
    client_id = args.client_id or (
        f"iotcast-bridge-{app}-{args.bridge_id}" if args.bridge_id else f"iotcast-bridge-{app}"
    )
    return BridgeOptions(
        client_id=client_id,
        # one of several bridges (an id): they share the devices' topics; the one bridge of
        # a default set-up subscribes plainly: mosquitto 2.0(.11) restores a shared
        # subscription's queued and in-flight QoS 1 messages after a broker restart but not
        # the subscription itself, so what devices publish before the bridges subscribe
        # again is dropped (the fault suite's mosquitto restart lost readings); a plain
        # persistent subscription is restored and queues them
        share_group=(app if args.bridge_id else "")
        if args.share_group is None
        else args.share_group,
        record_format=args.record_format,
        record_bytes=args.record_bytes,
        compress=args.compress,
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

"""The MQTT side of the bridge: a persistent QoS 1 session with manual acknowledgement.

Several bridges share the devices' messages through an MQTT 5 shared
subscription (``$share/<group>/iot/+/telemetry``, :func:`subscription`): the
broker hands each message to one member.  Each bridge has its own client id and
its own persistent session, so a message sent to a bridge that dies stays in
that bridge's session and is redelivered when it comes back under the same id
(mosquitto issue #2662: with a non-persistent session it would be lost).  Two
processes with one client id take the session from each other: when the broker
says so (DISCONNECT reason 0x8E), the one taken over stops with a
:class:`~bridge.retry.BridgeFailure` saying so (``on_fatal``); mosquitto 2.0.11
only closes the connection, and the two keep taking it back.

The session survives the bridge: a fixed client id, ``clean_start=False`` and
a ``SessionExpiryInterval`` (both are needed with MQTT 5), so the broker keeps
queuing messages while the bridge is down and redelivers every message that
was received but not acknowledged.  ``ReceiveMaximum`` caps the messages the
broker sends before they are acknowledged: that cap is the bridge's
backpressure (stop acknowledging and the broker stops sending).

A message is acknowledged only through :meth:`MqttSource.ack`, and only on the
connection it arrived on: after a reconnect the broker redelivers what was not
acknowledged, so an old packet id is never acknowledged on a new connection.

Security: ``mqtts://user:pass@host:port`` connects over TLS (the broker's
certificate checked against the target's ``ca_file``, or the system's CAs, host name
included) with the user and password.  :meth:`MqttSource.start` fails at once,
with a message saying what to fix, when the TLS handshake fails or the broker
refuses the user or password; it never logs the password.

>>> from telemetry.broker import parse_mqtt_url
>>> src = MqttSource(parse_mqtt_url("mqtt://127.0.0.1:1883"), "iotcast-bridge-demo",
...                  on_message=print, receive_maximum=1000)
>>> src.connected, src.generation
(False, 0)
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from bridge.retry import BridgeFailure
from monitoring.metrics import BRIDGE_MQTT_CONNECTED
from telemetry.broker import MqttTarget

__all__ = ["Message", "MqttSource", "TELEMETRY_TOPIC", "subscription"]

TELEMETRY_TOPIC = "iot/+/telemetry"
FLUSH_BARRIER_TOPIC = "iotcast/bridge/flush-barrier"
log = logging.getLogger(__name__)
# CONNACK reason codes that retrying cannot fix: bad user name or password (MQTT 5 0x86,
# 3.1.1 4), not authorized (0x87, 3.1.1 5), banned (0x8A), bad authentication method (0x8C).
_AUTH_REFUSALS = frozenset({0x86, 0x87, 0x8A, 0x8C, 4, 5})
_SESSION_TAKEN_OVER = 0x8E


def subscription(topic: str, group: str = "") -> str:
    """The filter to subscribe to: ``topic`` shared in ``group`` (``$share/...``), or as is.

    >>> subscription("iot/+/telemetry", "iotcast"), subscription("iot/+/telemetry")
    ('$share/iotcast/iot/+/telemetry', 'iot/+/telemetry')
    """
    if not group:
        return topic
    if any(c in group for c in "/+#"):
        raise ValueError(f"share group {group!r} must not hold '/', '+' or '#'")
    return f"$share/{group}/{topic}"


def _plain(topic: str) -> str | None:
    """The unshared filter of a ``$share/<group>/<filter>`` subscription, else None."""
    if topic.startswith("$share/"):
        return topic.split("/", 2)[2]
    return None


@dataclass(slots=True, eq=False)
class Message:
    """One received MQTT message and what is needed to acknowledge it."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    received_at: float = field(default_factory=time.time)
    received_mono: float = field(default_factory=time.monotonic)


class MqttSource:
    """Subscribes to ``topic`` at QoS 1 and hands each message to ``on_message``.

    ``on_message`` runs on paho's network thread; it may block briefly (the
    broker waits), and it must arrange for :meth:`ack` to be called later.
    """

    def __init__(
        self,
        target: MqttTarget,
        client_id: str,
        on_message: Callable[[Message], None],
        *,
        receive_maximum: int,
        topic: str = TELEMETRY_TOPIC,
        session_expiry: int = 86_400,
        keepalive: int = 30,
        on_fatal: Callable[[BridgeFailure], None] | None = None,
    ) -> None:
        self.target = target
        self.client_id = client_id
        self.topic = topic
        self.on_message = on_message
        self.on_fatal = on_fatal
        self.receive_maximum = max(1, min(receive_maximum, 65_535))
        self.session_expiry = session_expiry
        self.keepalive = keepalive
        self.connected = False
        self.generation = 0
        self.session_present = False
        self.last_error = ""
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._refused = threading.Event()
        self.refusal = ""  # the broker's answer to a refused CONNECT (kept past the disconnect)
        self.ca_file = target.ca_file
        self._barrier = threading.Event()
        self._barrier_mid: int | None = None
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if target.username:
            client.username_pw_set(target.username, target.password)
        if target.tls:
            client.tls_set(ca_certs=target.ca_file, cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        self.client = client

    # ------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 30.0) -> None:
        """Connect and subscribe (retrying until ``timeout``); paho's network thread runs on.

        Returns once the broker confirmed the subscription, so from then on the
        broker queues every message for this session, also while disconnected.
        """
        if self.target.tls:
            self._check_tls(min(timeout, 10.0))
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry
        props.ReceiveMaximum = self.receive_maximum
        self.client.connect_async(
            self.target.host,
            self.target.port,
            keepalive=self.keepalive,
            clean_start=False,
            properties=props,
        )
        self.client.loop_start()
        deadline = time.monotonic() + timeout
        while not self._subscribed.wait(0.1) and time.monotonic() < deadline:
            if self._refused.is_set():
                self.client.loop_stop()
                self.client.disconnect()
                raise BridgeFailure(
                    f"the MQTT broker at {self.target.host}:{self.target.port} "
                    f"{self.refusal}; check the user and password in --mqtt-url "
                    "(IOTCAST_MQTT_URL, mqtts://user:password@host:port, special characters "
                    "percent-encoded) and the broker's password file and ACL",
                    "mqtt_refused",
                )
        if not self._subscribed.is_set():
            self.client.loop_stop()
            raise BridgeFailure(
                f"cannot reach the MQTT broker at {self.target.host}:{self.target.port} within "
                f"{timeout:.0f}s ({self.last_error or 'no answer'}); check --mqtt-url and that the "
                "broker runs",
                "mqtt_unreachable",
            )

    def _check_tls(self, timeout: float) -> None:
        """Handshake once with the broker's TLS listener, so a certificate problem is named.

        (paho retries a failed handshake in its thread without saying why.)  A broker
        that does not answer yet is not an error here: :meth:`start` keeps trying.
        """
        where = f"{self.target.host}:{self.target.port}"
        context = ssl.create_default_context(cafile=self.ca_file)
        try:
            with (
                socket.create_connection((self.target.host, self.target.port), timeout) as sock,
                context.wrap_socket(sock, server_hostname=self.target.host),
            ):
                pass
        except ssl.SSLError as exc:
            raise BridgeFailure(
                f"TLS with the MQTT broker at {where} failed: {exc}; is the broker's CA in "
                "--mqtt-ca-file (IOTCAST_MQTT_CA_FILE), and does its certificate name the host "
                "of --mqtt-url?",
                "mqtt_tls",
            ) from exc
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise BridgeFailure(
                f"cannot read the CA file {self.ca_file!r} (--mqtt-ca-file): {exc.strerror}",
                "mqtt_tls",
            ) from exc
        except OSError as exc:
            log.warning("MQTT: %s not reachable yet (%s); retrying", where, exc)

    def stop(self, barrier_timeout: float = 5.0) -> None:
        """Disconnect once the broker has processed the acknowledgements already queued.

        The broker may still be sending when we close, and a close with unread
        data resets the connection, which can discard acknowledgements the
        broker has received but not yet read (they would be redelivered).  So
        first a round trip: an UNSUBSCRIBE of a filter we never subscribed to
        (no effect on the session) is answered only after everything sent before
        it was processed.  The session and its subscription stay on the broker.
        """
        if self.connected:
            self._barrier.clear()
            result, mid = self.client.unsubscribe(FLUSH_BARRIER_TOPIC)
            self._barrier_mid = mid
            if result == mqtt.MQTT_ERR_SUCCESS and not self._barrier.wait(barrier_timeout):
                log.warning(
                    "MQTT: no UNSUBACK within %.0fs; acknowledgements may be resent",
                    barrier_timeout,
                )
        with self._lock:
            self.client.disconnect()
        self.client.loop_stop()
        self._set_connected(False)

    # ---------------------------------------------------------------- acks
    def ack(self, message: Message) -> bool:
        """Acknowledge ``message`` if its connection is still the current one."""
        with self._lock:
            if not self.connected or message.generation != self.generation:
                return False
            self.client.ack(message.mid, message.qos)
            return True

    # ----------------------------------------------------------- callbacks
    def _set_connected(self, up: bool) -> None:
        self.connected = up
        BRIDGE_MQTT_CONNECTED.set(1 if up else 0)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.last_error = f"refused the connection: {reason_code}"
            log.warning("MQTT: broker %s", self.last_error)
            if reason_code.value in _AUTH_REFUSALS:
                self.refusal = self.last_error
                self._refused.set()
            return
        with self._lock:
            self.generation += 1
            self.session_present = bool(flags.session_present)
            self._set_connected(True)
        client.subscribe(self.topic, options=SubscribeOptions(qos=1))
        plain = _plain(self.topic)
        if plain is not None and self.session_present:
            # A session of a bridge before shared subscriptions also holds the plain filter,
            # which would hand this bridge every message besides its share: drop it.
            client.unsubscribe(plain)
        if self.session_present:
            # The broker kept the session, subscription included: ready now. (Its SUBACK may
            # wait behind a backlog of queued messages, up to ReceiveMaximum of them.)
            log.info(
                "MQTT: resumed session %s on %s:%d (subscribed to %s)",
                self.client_id,
                self.target.host,
                self.target.port,
                self.topic,
            )
            self._subscribed.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        failed = [rc for rc in reason_codes if rc.is_failure]
        if failed:
            self.last_error = f"broker refused the subscription to {self.topic}: {failed[0]}"
            log.error("MQTT: %s", self.last_error)
            return
        log.info(
            "MQTT: subscribed to %s on %s:%d as %s (session present: %s)",
            self.topic,
            self.target.host,
            self.target.port,
            self.client_id,
            self.session_present,
        )
        self._subscribed.set()

    def _on_unsubscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if mid == self._barrier_mid:
            self._barrier.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            self._set_connected(False)
        self.last_error = f"disconnected: {reason_code}"
        log.info("MQTT: %s", self.last_error)
        if getattr(reason_code, "value", None) == _SESSION_TAKEN_OVER:
            failure = BridgeFailure(
                f"another MQTT client connected as {self.client_id!r} and took this bridge's "
                "session: give each bridge its own --bridge-id (or --client-id)",
                "session_taken_over",
            )
            log.error("MQTT: %s", failure)
            client.disconnect()  # do not take it back: two bridges would flap
            if self.on_fatal is not None:
                self.on_fatal(failure)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        # a received payload is bytes (paho's bytearray is for messages it publishes)
        payload: bytes = msg.payload  # type: ignore[assignment]
        self.on_message(Message(msg.topic, payload, msg.mid, msg.qos, self.generation))

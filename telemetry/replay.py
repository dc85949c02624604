"""Replay readings over MQTT, as the devices would publish them.

Each reading goes to ``iot/<device>/telemetry`` with the devices' JSON
payload (:func:`telemetry.reading.encode`), in file order, paced by event
time at ``--speed`` times real time (``0``: as fast as possible; a reading
whose ``ts`` is earlier than one already sent goes at once).  With QoS 1
(the default) the count at the end is of messages the broker acknowledged
(PUBACK): "published" means accepted by the broker.  A bounded window of
unacknowledged messages keeps the pipe full without unbounded memory; if
the connection drops, paho re-sends the unacknowledged messages after a
reconnect (bounded retries), or the replay fails with a message.

A reading goes out as it is, whatever its sensors: the payload carries the
sensors the reading has and its extra numeric fields (``pressure``), and
omits the absent ones (a temperature-only file replays as temperature-only
payloads).  ``Reading.notes`` are not sent: a field dropped when the file was
read is not in the payload, a clipped one goes as its limit.

The command line is ``iotcast replay`` (:mod:`iotcast.commands.replay`).

>>> from telemetry.broker import parse_mqtt_url
>>> replay(parse_mqtt_url("mqtt://127.0.0.1:1883"), [], speed=-1)
Traceback (most recent call last):
...
ValueError: speed must be >= 0, got -1
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
import uuid
from collections.abc import Collection, Iterable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import ConnectFlags, DisconnectFlags
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from telemetry.broker import MqttTarget
from telemetry.reading import Reading, encode, topic_for

__all__ = ["DEFAULT_WINDOW", "BackgroundReplay", "ReplayError", "connect", "replay"]

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 500
_SUCCESS = MQTTErrorCode.MQTT_ERR_SUCCESS


class ReplayError(RuntimeError):
    """The replay could not get its messages to the broker; the message says how far it got.

    >>> str(ReplayError("broker at 127.0.0.1:1 refused the connection"))
    'broker at 127.0.0.1:1 refused the connection'
    """


class _Acks:
    """Counts acknowledgements (PUBACK for QoS 1, written for QoS 0) and the connection state."""

    def __init__(self) -> None:
        self.acked = 0
        self.connected = False
        self.connect_failure: str | None = None

    def on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        self.acked += 1

    def on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self.connect_failure = str(reason_code)
        else:
            self.connected = True

    def on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connected = False


def connect(
    target: MqttTarget,
    *,
    client_id: str | None = None,
    timeout: float = 10.0,
    window: int = DEFAULT_WINDOW,
) -> tuple[mqtt.Client, _Acks]:
    """A connected paho client (no background thread) and its acknowledgement counter.

    ``target`` gives host, port, TLS, credentials and the CA file.  Raises
    :class:`ReplayError` with what to check.
    """
    acks = _Acks()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or f"iotcast-replay-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv311,
    )
    client.on_publish = acks.on_publish
    client.on_connect = acks.on_connect
    client.on_disconnect = acks.on_disconnect
    client.max_inflight_messages_set(
        0
    )  # no limit in paho: our window bounds it (paho rescans per ack)
    client.max_queued_messages_set(0)
    if target.username:
        client.username_pw_set(target.username, target.password)
    if target.tls:
        client.tls_set(ca_certs=target.ca_file)
    where = target.where
    try:
        client.connect(target.host, target.port, keepalive=30)
    except ssl.SSLError as exc:
        raise ReplayError(
            f"TLS with the MQTT broker at {where} failed: {exc} "
            "(is the broker's CA in --mqtt-ca-file / IOTCAST_MQTT_CA_FILE?)"
        ) from exc
    except OSError as exc:
        raise ReplayError(
            f"cannot reach the MQTT broker at {where}: {exc} "
            "(is it running? check --mqtt-url / IOTCAST_MQTT_URL)"
        ) from exc
    deadline = time.monotonic() + timeout
    while not acks.connected:
        if acks.connect_failure:
            client.disconnect()
            raise ReplayError(
                f"the MQTT broker at {where} refused the connection: {acks.connect_failure} "
                "(check the user and password in --mqtt-url)"
            )
        if time.monotonic() > deadline:
            client.disconnect()
            raise ReplayError(f"no CONNACK from the MQTT broker at {where} within {timeout:g} s")
        rc = client.loop(0.1)
        if rc != _SUCCESS and not acks.connect_failure:
            raise ReplayError(f"connection to the MQTT broker at {where} failed: {rc.name}")
    return client, acks


def _service(
    client: mqtt.Client, acks: _Acks, timeout: float, where: str, retry_for: float
) -> None:
    """Run paho's network loop once; on a lost connection, reconnect with bounded retries."""
    rc = client.loop(timeout)
    if rc == _SUCCESS:
        return
    deadline = time.monotonic() + retry_for
    delay = 0.1
    log.warning("MQTT connection to %s lost (%s); reconnecting", where, rc.name)
    while True:
        try:
            reconnected = client.reconnect() == _SUCCESS
        except OSError as exc:
            reconnected = False
            log.warning("reconnect to %s failed: %s; retrying", where, exc)
        if reconnected:
            start = time.monotonic()
            while not acks.connected and time.monotonic() - start < 10.0:
                if client.loop(0.1) != _SUCCESS:
                    break
            if acks.connected:
                return
        if time.monotonic() + delay > deadline:
            raise ReplayError(
                f"lost the MQTT broker at {where} and could not reconnect within {retry_for:g} s"
            )
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


def replay(
    broker: MqttTarget,
    readings: Iterable[Reading],
    *,
    speed: float = 0.0,
    qos: int = 1,
    limit: int | None = None,
    progress: bool | Progress = False,
    devices: Collection[str] | None = None,
    window: int = DEFAULT_WINDOW,
    stall_timeout: float = 30.0,
    total: int | None = None,
) -> int:
    """Publish ``readings`` to ``broker``; return how many the broker accepted.

    ``speed``: times real time by event time (0 = as fast as possible).
    ``limit``: stop after that many readings; ``devices``: only these devices.
    ``window``: at most that many messages await their PUBACK at once.
    ``progress``: show a rich progress bar (``total`` sizes it).
    Raises :class:`ReplayError` if the broker cannot be reached or stops
    acknowledging for ``stall_timeout`` seconds.
    """
    if qos not in (0, 1, 2):
        raise ValueError(f"qos must be 0, 1 or 2, got {qos}")
    if speed < 0:
        raise ValueError(f"speed must be >= 0, got {speed}")
    window = max(1, window)
    where = broker.where
    client, acks = connect(broker, window=window)
    wanted = set(devices) if devices else None
    if limit is not None:
        total = limit if total is None else min(total, limit)
    bar: Progress | None = None
    own_bar = False
    if isinstance(progress, Progress):
        bar = progress
    elif progress:
        bar = Progress(
            TextColumn("replay"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            transient=True,
        )
        own_bar = True
    task = bar.add_task("replay", total=total) if bar else None
    sent = 0
    t0 = w0 = None
    publish = client.publish
    try:
        if own_bar:
            bar.start()  # type: ignore[union-attr]
        for reading in readings:
            if limit is not None and sent >= limit:
                break
            if wanted is not None and reading.device not in wanted:
                continue
            if speed > 0:
                if t0 is None:
                    t0, w0 = reading.ts, time.monotonic()
                due = w0 + (reading.ts - t0) / speed  # type: ignore[operator]
                wait = due - time.monotonic()
                while wait > 0:
                    _service(client, acks, min(wait, 0.25), where, stall_timeout)
                    wait = due - time.monotonic()
            if sent - acks.acked >= window:
                _wait_acks(client, acks, sent - window + 1, where, stall_timeout)
            info = publish(topic_for(reading.device), encode(reading), qos)
            if info.rc != _SUCCESS:
                if qos == 0 or info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
                    raise ReplayError(
                        f"publish to {where} failed ({info.rc.name}) after {acks.acked} acknowledged"
                    )
                # QoS >= 1 and the connection is gone: paho keeps the message and sends it
                # again after the reconnect, which _service does (bounded)
                _service(client, acks, 0.0, where, stall_timeout)
            sent += 1
            if sent & 63 == 0:
                _service(client, acks, 0.0, where, stall_timeout)
                if bar is not None and sent & 1023 == 0:
                    bar.update(task, completed=acks.acked)  # type: ignore[arg-type]
        _wait_acks(client, acks, sent, where, stall_timeout)
        if bar is not None:
            bar.update(task, completed=acks.acked)  # type: ignore[arg-type]
    finally:
        if own_bar:
            bar.stop()  # type: ignore[union-attr]
        client.disconnect()
        client.loop(0.1)
    return acks.acked


def _wait_acks(
    client: mqtt.Client, acks: _Acks, until: int, where: str, stall_timeout: float
) -> None:
    """Run the network loop until ``until`` messages are acknowledged (no progress for long: fail)."""
    last, last_change = acks.acked, time.monotonic()
    while acks.acked < until:
        _service(client, acks, 0.05, where, stall_timeout)
        if acks.acked != last:
            last, last_change = acks.acked, time.monotonic()
        elif time.monotonic() - last_change > stall_timeout:
            raise ReplayError(
                f"the MQTT broker at {where} acknowledged nothing for {stall_timeout:g} s; "
                f"{acks.acked} of {until} messages acknowledged"
            )


class BackgroundReplay:
    """:func:`replay` on a thread: how far it got, then what the broker accepted or the error.

    ``taken`` counts the readings the replay has taken from ``readings`` so far;
    :meth:`cancel` ends it after the current one.  Keyword arguments go to :func:`replay`.

    >>> from telemetry.broker import parse_mqtt_url
    >>> job = BackgroundReplay(parse_mqtt_url("mqtt://127.0.0.1:1883"), [], speed=-1).start()
    >>> job.join(5)
    Traceback (most recent call last):
    ...
    ValueError: speed must be >= 0, got -1
    """

    def __init__(self, target: MqttTarget, readings: Iterable[Reading], **kwargs: Any) -> None:
        self.target = target
        self.readings = readings
        self.kwargs = kwargs
        self.taken = 0
        self.result: int | None = None
        self.error: BaseException | None = None
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replay", daemon=True)

    def start(self) -> BackgroundReplay:
        self._thread.start()
        return self

    def _feed(self) -> Iterator[Reading]:
        for reading in self.readings:
            if self._cancel.is_set():
                return
            yield reading
            self.taken += 1

    def _run(self) -> None:
        try:
            self.result = replay(self.target, self._feed(), **self.kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by join() or .error
            self.error = exc

    def running(self) -> bool:
        return self._thread.is_alive()

    def finished(self) -> bool:
        return self._thread.ident is not None and not self._thread.is_alive()

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the end; True once it ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def join(self, timeout: float | None = None) -> int:
        """Wait for the end; return what the broker accepted, or raise the replay's error."""
        if not self.wait(timeout):
            raise TimeoutError(f"the replay did not finish within {timeout:.0f}s")
        if self.error is not None:
            raise self.error
        return self.result or 0

"""Where the MQTT broker is: its URL, parsed, and the URL with the password masked.

Devices publish to a broker named by a URL (``--mqtt-url``): ``mqtt://host:port``,
or ``mqtts://user:pass@host:port`` for TLS with a password.  The replay and the
bridge connect to the :class:`MqttTarget` that :func:`parse_mqtt_url` makes of it;
messages and logs show the URL through :func:`redact_url`, never the password.

>>> parse_mqtt_url("mqtt://127.0.0.1:1883")
MqttTarget(host='127.0.0.1', port=1883, tls=False, username=None, ca_file=None)
>>> redact_url("mqtts://bob:s3cret@broker:8883")
'mqtts://bob:***@broker:8883'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

__all__ = ["BadMqttUrl", "MqttTarget", "parse_mqtt_url", "redact_url"]


class BadMqttUrl(ValueError):
    """An MQTT URL that names no broker; the message shows it with the password masked."""


@dataclass(frozen=True)
class MqttTarget:
    """Where and how to reach the MQTT broker: parsed from ``--mqtt-url``, with the CA file
    that vouches for a TLS broker (``None``: the system's CAs)."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None

    @property
    def where(self) -> str:
        """``host:port``, for messages."""
        return f"{self.host}:{self.port}"


def redact_url(url: str) -> str:
    """``url`` with the password of its user part masked, for messages and logs.

    The last ``@`` ends the user part, so an unencoded ``@``, ``/`` or ``#`` in
    the password is masked too.

    >>> redact_url("mqtts://bob:p@ss/w#rd@broker:8883"), redact_url("mqtt://127.0.0.1:1883")
    ('mqtts://bob:***@broker:8883', 'mqtt://127.0.0.1:1883')
    """
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}{sep}{user}{':***' if colon else ''}@{host}"


def parse_mqtt_url(url: str, ca_file: str | None = None) -> MqttTarget:
    """Parse ``mqtt://host:port`` or ``mqtts://user:pass@host:port``.

    Special characters in the user or password are percent-encoded (``@`` is
    ``%40``, ``/`` is ``%2F``, ``:`` is ``%3A``).  Messages show the URL with
    the password masked.

    >>> parse_mqtt_url("mqtts://bob:s%40cret@broker:8883").password
    's@cret'
    >>> parse_mqtt_url("mqtts://bob:a/b@broker:8883")
    Traceback (most recent call last):
    ...
    telemetry.broker.BadMqttUrl: --mqtt-url 'mqtts://bob:***@broker:8883' is not host[:port] after the user part; percent-encode special characters of the user and password (@ as %40, / as %2F, : as %3A, # as %23)
    """
    shown = redact_url(url)
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise BadMqttUrl(f"--mqtt-url {shown!r}: scheme must be mqtt:// or mqtts://")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port == -1 or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise BadMqttUrl(
            f"--mqtt-url {shown!r} is not host[:port] after the user part; percent-encode "
            "special characters of the user and password (@ as %40, / as %2F, : as %3A, # as %23)"
        )
    if not parts.hostname:
        raise BadMqttUrl(f"--mqtt-url {shown!r}: no host")
    tls = parts.scheme == "mqtts"
    return MqttTarget(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        ca_file=ca_file,
    )

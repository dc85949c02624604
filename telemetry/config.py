"""One settings object, read once at the CLI edge.

Precedence: command-line flags > environment (``IOTCAST_*`` and the standard
AWS variables) > an optional TOML file (``--config`` or ``IOTCAST_CONFIG``)
> defaults.  Every default points at the local stack: MQTT on
127.0.0.1:1883 and, when no AWS endpoint and no real credentials are
configured, the moto server on 127.0.0.1:5000 with dummy credentials.

>>> s = Settings.resolve(env={}, toml={}, flags={})
>>> s.mqtt_url, s.stream, s.bucket, s.app
('mqtt://127.0.0.1:1883', 'iot-telemetry', 'iotcast', 'iotcast')
>>> s.endpoint_url
'http://127.0.0.1:5000'
>>> Settings.resolve(env={"AWS_ACCESS_KEY_ID": "AKIA..."}, toml={}, flags={}).endpoint_url is None
True
>>> Settings.resolve(env={"IOTCAST_STREAM": "a"}, toml={"stream": "b"}, flags={"stream": "c"}).stream
'c'

Secrets (the MQTT password inside ``mqtt_url``, the HMAC key, the AWS
secret key) never appear in ``repr(settings)`` or in a :class:`ConfigError`
message: :func:`redact_url` masks the password wherever a URL is shown.

>>> s = Settings(mqtt_url="mqtts://bob:s3cret@broker:8883", hmac_key="k3y")
>>> "s3cret" in repr(s) or "k3y" in repr(s), redact_url(s.mqtt_url)
(False, 'mqtts://bob:***@broker:8883')
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = [
    "Settings",
    "MqttTarget",
    "parse_mqtt_url",
    "redact_url",
    "LOCAL_AWS_ENDPOINT",
    "ConfigError",
]

LOCAL_AWS_ENDPOINT = "http://127.0.0.1:5000"
LOCAL_REGION = "us-east-1"


class ConfigError(ValueError):
    """A configuration value a person must fix (the message says which and how)."""


@dataclass(frozen=True)
class MqttTarget:
    """Where and how to reach the MQTT broker, parsed from ``--mqtt-url``."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)


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


def parse_mqtt_url(url: str) -> MqttTarget:
    """Parse ``mqtt://host:port`` or ``mqtts://user:pass@host:port``.

    Special characters in the user or password are percent-encoded (``@`` is
    ``%40``, ``/`` is ``%2F``, ``:`` is ``%3A``).  Messages show the URL with
    the password masked.

    >>> parse_mqtt_url("mqtt://127.0.0.1:1883")
    MqttTarget(host='127.0.0.1', port=1883, tls=False, username=None)
    >>> parse_mqtt_url("mqtts://bob:s%40cret@broker:8883").password
    's@cret'
    >>> parse_mqtt_url("mqtts://bob:a/b@broker:8883")
    Traceback (most recent call last):
    ...
    telemetry.config.ConfigError: --mqtt-url 'mqtts://bob:***@broker:8883' is not host[:port] after the user part; percent-encode special characters of the user and password (@ as %40, / as %2F, : as %3A, # as %23)
    """
    shown = redact_url(url)
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ConfigError(f"--mqtt-url {shown!r}: scheme must be mqtt:// or mqtts://")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port == -1 or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(
            f"--mqtt-url {shown!r} is not host[:port] after the user part; percent-encode "
            "special characters of the user and password (@ as %40, / as %2F, : as %3A, # as %23)"
        )
    if not parts.hostname:
        raise ConfigError(f"--mqtt-url {shown!r}: no host")
    tls = parts.scheme == "mqtts"
    return MqttTarget(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


# field name -> (environment variables in order of preference, default)
_ENV: dict[str, tuple[tuple[str, ...], Any]] = {
    "mqtt_url": (("IOTCAST_MQTT_URL",), "mqtt://127.0.0.1:1883"),
    "mqtt_ca_file": (("IOTCAST_MQTT_CA_FILE",), None),
    "endpoint_url": (("AWS_ENDPOINT_URL",), None),
    "kinesis_endpoint_url": (("IOTCAST_KINESIS_ENDPOINT_URL",), None),
    "region": (("AWS_REGION", "AWS_DEFAULT_REGION"), None),
    "stream": (("IOTCAST_STREAM",), "iot-telemetry"),
    "predictions_stream": (("IOTCAST_PREDICTIONS_STREAM",), "iot-predictions"),
    "bucket": (("IOTCAST_BUCKET",), "iotcast"),
    "app": (("IOTCAST_APP",), "iotcast"),
    "metrics_port": (("IOTCAST_METRICS_PORT",), None),
    "models_file": (("IOTCAST_MODELS_FILE",), None),
    "hmac_key": (("IOTCAST_HMAC_KEY",), None),
    "log_level": (("IOTCAST_LOG_LEVEL",), "INFO"),
}


@dataclass(frozen=True)
class Settings:
    """Everything a command needs to reach the components; plain values only."""

    mqtt_url: str = "mqtt://127.0.0.1:1883"
    mqtt_ca_file: str | None = None
    endpoint_url: str | None = LOCAL_AWS_ENDPOINT
    # Kinesis only, when it lives elsewhere (kinesalite beside moto); None = endpoint_url.
    kinesis_endpoint_url: str | None = None
    region: str = LOCAL_REGION
    stream: str = "iot-telemetry"
    predictions_stream: str = "iot-predictions"
    bucket: str = "iotcast"
    app: str = "iotcast"
    metrics_port: int | None = None
    models_file: str | None = None
    hmac_key: str | None = field(default=None, repr=False)
    log_level: str = "INFO"
    aws_access_key_id: str | None = field(default=None, repr=False)
    aws_secret_access_key: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        """The fields, with the MQTT password masked and the keys left out (safe to log)."""
        shown = []
        for f in dataclasses.fields(self):
            if not f.repr:
                continue
            value = getattr(self, f.name)
            if f.name == "mqtt_url" and isinstance(value, str):
                value = redact_url(value)
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    @property
    def mqtt(self) -> MqttTarget:
        return parse_mqtt_url(self.mqtt_url)

    @property
    def local_aws(self) -> bool:
        """True when talking to a local endpoint (moto, kinesalite) rather than AWS."""
        return self.endpoint_url is not None

    def boto_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``boto3.client(...)`` / ``aioboto3`` clients."""
        kw: dict[str, Any] = {"region_name": self.region}
        if self.endpoint_url:
            kw["endpoint_url"] = self.endpoint_url
        if self.aws_access_key_id:
            kw["aws_access_key_id"] = self.aws_access_key_id
            kw["aws_secret_access_key"] = self.aws_secret_access_key
        return kw

    def kinesis_kwargs(self) -> dict[str, Any]:
        """Like :meth:`boto_kwargs`, for Kinesis clients (``kinesis_endpoint_url`` wins)."""
        kw = self.boto_kwargs()
        if self.kinesis_endpoint_url:
            kw["endpoint_url"] = self.kinesis_endpoint_url
        return kw

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def resolve(
        cls,
        *,
        flags: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        toml: Mapping[str, Any] | None = None,
    ) -> Settings:
        """Merge flags > environment > TOML > defaults into one object.

        ``flags`` holds only what the user gave (``None`` values are ignored).
        With no endpoint and no credentials anywhere, the local moto endpoint
        and dummy credentials are used, so nothing reaches real AWS by accident.
        """
        env = os.environ if env is None else env
        flags = {k: v for k, v in (flags or {}).items() if v is not None}
        if toml is None:
            path = flags.get("config") or env.get("IOTCAST_CONFIG")
            toml = load_toml(path) if path else {}
        unknown = set(toml) - set(_ENV)
        if unknown:
            raise ConfigError(
                f"unknown key(s) in config file: {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(_ENV))}"
            )
        values: dict[str, Any] = {}
        for name, (env_names, default) in _ENV.items():
            value = flags.get(name)
            if value is None:
                value = next((env[e] for e in env_names if env.get(e)), None)
            if value is None:
                value = toml.get(name, default)
            values[name] = value
        if values["metrics_port"] is not None:
            try:
                values["metrics_port"] = int(values["metrics_port"])
            except ValueError as exc:
                raise ConfigError(
                    f"metrics port must be an integer: {values['metrics_port']!r}"
                ) from exc
        has_real_credentials = bool(
            env.get("AWS_ACCESS_KEY_ID")
            or env.get("AWS_PROFILE")
            or env.get("AWS_SESSION_TOKEN")
            or env.get("AWS_WEB_IDENTITY_TOKEN_FILE")
            or env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
            or Path(
                env.get("AWS_SHARED_CREDENTIALS_FILE", Path.home() / ".aws" / "credentials")
            ).exists()
        )
        if values["endpoint_url"] is None and not has_real_credentials:
            values["endpoint_url"] = LOCAL_AWS_ENDPOINT
        if values["region"] is None:
            values["region"] = LOCAL_REGION
        if values["endpoint_url"] and not env.get("AWS_ACCESS_KEY_ID"):
            # Local endpoints accept any key; never let a stray profile leak to them.
            values["aws_access_key_id"] = "testing"
            values["aws_secret_access_key"] = "testing"
        parse_mqtt_url(values["mqtt_url"])  # fail early, with the message
        return cls(**values)


def load_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read an ``iotcast`` TOML settings file (keys are the settings' names).

    Keys may sit at the top level or under an ``[iotcast]`` table.
    """
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {p}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {p} is not valid TOML: {exc}") from exc
    return dict(data.get("iotcast", data))

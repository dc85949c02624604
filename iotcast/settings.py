"""One settings object, read once at the CLI edge.

Precedence: command-line flags > environment (``IOTCAST_*`` and the standard
AWS variables) > an optional TOML file (``--config`` or ``IOTCAST_CONFIG``)
> defaults.  Every default points at the local stack: MQTT on
127.0.0.1:1883 and, when no AWS endpoint and no real credentials are
configured, the moto server on 127.0.0.1:5000 with dummy credentials.
The floors below the shell never see this object: they get plain values,
such as :meth:`Settings.bridge_target` and :meth:`Settings.processor_target`.

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

from bridge.service import BridgeTarget
from stream.runner import ProcessorTarget
from telemetry.broker import BadMqttUrl, MqttTarget, parse_mqtt_url, redact_url

__all__ = ["Settings", "LOCAL_AWS_ENDPOINT", "ConfigError", "load_toml"]

LOCAL_AWS_ENDPOINT = "http://127.0.0.1:5000"
LOCAL_REGION = "us-east-1"


class ConfigError(ValueError):
    """A configuration value a person must fix (the message says which and how)."""


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
        """The broker (and the CA file that vouches for it) the URL names."""
        try:
            return parse_mqtt_url(self.mqtt_url, self.mqtt_ca_file)
        except BadMqttUrl as exc:
            raise ConfigError(str(exc)) from exc

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

    def bridge_target(self) -> BridgeTarget:
        """What the bridge talks to: the broker, the stream, the dead-letter bucket, AWS."""
        return BridgeTarget(self.mqtt, self.stream, self.bucket, self.boto_kwargs())

    def processor_target(self) -> ProcessorTarget:
        """What a processor talks to: the streams, the bucket, the consumer group, AWS."""
        return ProcessorTarget(
            stream=self.stream,
            predictions_stream=self.predictions_stream,
            bucket=self.bucket,
            app=self.app,
            aws=self.boto_kwargs(),
            kinesis=self.kinesis_kwargs(),
            hmac_key=self.hmac_key,
        )

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def of(cls, **values: Any) -> Settings:
        """Settings from these values alone, resolved as flags are (no environment, no
        file): for the tests and benchmarks that start their own components.

        >>> Settings.of(stream="s", endpoint_url="http://127.0.0.1:5001").kinesis_kwargs()["endpoint_url"]
        'http://127.0.0.1:5001'
        """
        return cls.resolve(env={}, toml={}, flags=values)

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
        settings = cls(**values)
        settings.mqtt  # noqa: B018 - a bad URL fails here, early, with the message
        return settings


def load_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read an ``iotcast`` TOML settings file (keys are the settings' names).

    Keys may sit at the top level or under an ``[iotcast]`` table.
    """
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {p} is not valid TOML: {exc}") from exc
    return dict(data.get("iotcast", data))

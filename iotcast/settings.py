"""One settings object, read once at the CLI edge.

Precedence: command-line flags > environment (``IOTCAST_*`` and the standard
AWS variables) > an optional TOML file (``--config`` or ``IOTCAST_CONFIG``)
> defaults.  Every default points at the local stack: MQTT on
127.0.0.1:1883 and, when no AWS endpoint and no real credentials are
configured, kinesalite on 127.0.0.1:4567 for Kinesis and the moto server on
127.0.0.1:5000 for S3 and DynamoDB, with dummy credentials.
The floors below the shell never see this object: they get plain values,
such as :meth:`Settings.bridge_target` and :meth:`Settings.processor_target`.

>>> s = Settings.resolve(env={}, toml={}, flags={})
>>> s.mqtt_url, s.stream, s.bucket, s.app
('mqtt://127.0.0.1:1883', 'iot-telemetry', 'iotcast', 'iotcast')
>>> s.endpoint("kinesis"), s.endpoint("s3"), s.endpoint("dynamodb")
('http://127.0.0.1:4567', 'http://127.0.0.1:5000', 'http://127.0.0.1:5000')
>>> Settings.resolve(env={"AWS_ACCESS_KEY_ID": "AKIA..."}, toml={}, flags={}).endpoint("s3") is None
True

Endpoints, per service (``kinesis``, ``s3``, ``dynamodb``), are the AWS SDKs'
own settings: the service's setting (``AWS_ENDPOINT_URL_KINESIS``, ...; or
``endpoint_url`` under the service in the AWS config file's ``services``
section) wins for its service; the general one, ``--endpoint-url`` >
``AWS_ENDPOINT_URL`` > the TOML file's ``endpoint_url`` > the config file
profile's ``endpoint_url``, serves the others.  Nothing configured: the local
stack without credentials, AWS with them.  ``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true``
leaves out the environment's and the config file's, as the SDKs do.

>>> s = Settings.resolve(env={"AWS_ENDPOINT_URL_KINESIS": "http://127.0.0.1:4568"}, toml={},
...                      flags={"endpoint_url": "http://127.0.0.1:5001"})
>>> s.endpoint("kinesis"), s.endpoint("s3"), s.endpoint("dynamodb")
('http://127.0.0.1:4568', 'http://127.0.0.1:5001', 'http://127.0.0.1:5001')
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
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.configloader import load_config
from botocore.exceptions import BotoCoreError

from bridge.service import BridgeTarget
from stream.runner import ProcessorTarget
from telemetry.broker import BadMqttUrl, MqttTarget, parse_mqtt_url, redact_url
from telemetry.reading import MAX_EXTRA_FIELDS, SENSORS

__all__ = [
    "AWS_SERVICES",
    "LOCAL_AWS_ENDPOINT",
    "LOCAL_KINESIS_ENDPOINT",
    "ConfigError",
    "Settings",
    "load_toml",
    "parse_extra_features",
    "parse_watch_list",
]

LOCAL_AWS_ENDPOINT = "http://127.0.0.1:5000"  # moto: S3 and DynamoDB (Kinesis for moto alone)
LOCAL_KINESIS_ENDPOINT = "http://127.0.0.1:4567"  # kinesalite, at its own default port
LOCAL_REGION = "us-east-1"
# What Reading.extra accepts as a field name (telemetry/reading.py's table).
_EXTRA_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
# The AWS services iotcast talks to, by their SDK names (AWS_ENDPOINT_URL_<NAME upper>).
AWS_SERVICES = ("kinesis", "s3", "dynamodb")


class ConfigError(ValueError):
    """A configuration value a person must fix (the message says which and how)."""


# field name -> (environment variables in order of preference, default)
_ENV: dict[str, tuple[tuple[str, ...], Any]] = {
    "mqtt_url": (("IOTCAST_MQTT_URL",), "mqtt://127.0.0.1:1883"),
    "mqtt_ca_file": (("IOTCAST_MQTT_CA_FILE",), None),
    "endpoint_url": (("AWS_ENDPOINT_URL",), None),
    "region": (("AWS_REGION", "AWS_DEFAULT_REGION"), None),
    "stream": (("IOTCAST_STREAM",), "iot-telemetry"),
    "predictions_stream": (("IOTCAST_PREDICTIONS_STREAM",), "iot-predictions"),
    "bucket": (("IOTCAST_BUCKET",), "iotcast"),
    "app": (("IOTCAST_APP",), "iotcast"),
    "metrics_port": (("IOTCAST_METRICS_PORT",), None),
    "models_file": (("IOTCAST_MODELS_FILE",), None),
    "hmac_key": (("IOTCAST_HMAC_KEY",), None),
    "log_level": (("IOTCAST_LOG_LEVEL",), "INFO"),
    "extra_features": (("IOTCAST_EXTRA_FEATURES",), None),
    "watch": (("IOTCAST_WATCH",), None),
}


@dataclass(frozen=True)
class Settings:
    """Everything a command needs to reach the components; plain values only."""

    mqtt_url: str = "mqtt://127.0.0.1:1883"
    mqtt_ca_file: str | None = None
    # The general endpoint, for every service without its own in ``endpoints``; None = AWS.
    endpoint_url: str | None = LOCAL_AWS_ENDPOINT
    # Service -> its own endpoint (AWS_ENDPOINT_URL_<SERVICE>): wins over endpoint_url.
    endpoints: Mapping[str, str] = field(
        default_factory=lambda: {"kinesis": LOCAL_KINESIS_ENDPOINT}
    )
    region: str = LOCAL_REGION
    stream: str = "iot-telemetry"
    predictions_stream: str = "iot-predictions"
    bucket: str = "iotcast"
    app: str = "iotcast"
    metrics_port: int | None = None
    models_file: str | None = None
    hmac_key: str | None = field(default=None, repr=False)
    log_level: str = "INFO"
    # Extra numeric fields of the readings (e.g. ``pressure``) the processor's models use as
    # features (TaskConfig.extra_features); other extra fields are ignored.
    extra_features: tuple[str, ...] = ()
    # Devices the processor gives per-device series (iotcast process --watch); at most 50.
    watch: tuple[str, ...] = ()
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
        """True when talking to local endpoints (moto, kinesalite) rather than AWS."""
        return any(self.endpoint(service) for service in AWS_SERVICES)

    def endpoint(self, service: str) -> str | None:
        """Where ``service`` (``kinesis``, ``s3``, ``dynamodb``) answers; None = AWS.

        >>> Settings(endpoint_url="http://m:5000", endpoints={"kinesis": "http://k:4567"}).endpoint("s3")
        'http://m:5000'
        """
        return self.endpoints.get(service) or self.endpoint_url

    def with_endpoints(self, **endpoints: str | None) -> Settings:
        """These settings with ``service=url`` endpoints (None: the general one again).

        >>> Settings().with_endpoints(kinesis=None, s3="http://p:1").endpoints
        {'s3': 'http://p:1'}
        """
        merged = {**self.endpoints, **endpoints}
        return self.replace(endpoints={k: v for k, v in merged.items() if v})

    def boto_kwargs(self, service: str) -> dict[str, Any]:
        """Keyword arguments of ``boto3.client(service, ...)`` (and aioboto3's) for ``service``."""
        kw: dict[str, Any] = {"region_name": self.region}
        endpoint = self.endpoint(service)
        if endpoint:
            kw["endpoint_url"] = endpoint
        if self.aws_access_key_id:
            kw["aws_access_key_id"] = self.aws_access_key_id
            kw["aws_secret_access_key"] = self.aws_secret_access_key
        return kw

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client of ``service`` at its endpoint."""
        import boto3

        return boto3.client(service, **self.boto_kwargs(service), **kwargs)

    def aws(self) -> dict[str, dict[str, Any]]:
        """:meth:`boto_kwargs` of every service iotcast talks to, by service (for the floors below)."""
        return {service: self.boto_kwargs(service) for service in AWS_SERVICES}

    def describe_endpoints(self) -> str:
        """One line saying where each service answers (for logs and messages).

        >>> Settings().describe_endpoints()
        'kinesis http://127.0.0.1:4567, s3 http://127.0.0.1:5000, dynamodb http://127.0.0.1:5000'
        """
        return ", ".join(f"{s} {self.endpoint(s) or 'AWS'}" for s in AWS_SERVICES)

    def bridge_target(self) -> BridgeTarget:
        """What the bridge talks to: the broker, the stream, the dead-letter bucket, AWS."""
        return BridgeTarget(self.mqtt, self.stream, self.bucket, self.aws())

    def processor_target(self) -> ProcessorTarget:
        """What a processor talks to: the streams, the bucket, the consumer group, AWS."""
        return ProcessorTarget(
            stream=self.stream,
            predictions_stream=self.predictions_stream,
            bucket=self.bucket,
            app=self.app,
            aws=self.aws(),
            hmac_key=self.hmac_key,
        )

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def of(cls, **values: Any) -> Settings:
        """Settings from these values alone, resolved as flags are (no environment, no
        file; ``endpoints`` as the per-service environment would give them): for the
        tests and benchmarks that start their own components.

        >>> Settings.of(stream="s", endpoint_url="http://127.0.0.1:5001").boto_kwargs("kinesis")["endpoint_url"]
        'http://127.0.0.1:5001'
        >>> Settings.of(endpoint_url="http://m:1", endpoints={"kinesis": "http://k:2"}).endpoint("kinesis")
        'http://k:2'
        """
        endpoints = values.pop("endpoints", None) or {}
        env = {f"AWS_ENDPOINT_URL_{s.upper()}": url for s, url in endpoints.items()}
        env["AWS_CONFIG_FILE"] = os.devnull  # not the user's: these values alone
        return cls.resolve(env=env, toml={}, flags=values)

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
        With no endpoint and no credentials anywhere, the local stack's endpoints
        and dummy credentials are used, so nothing reaches real AWS by accident.
        """
        env = os.environ if env is None else env
        if _ignore_configured_endpoints(env):
            env = {k: v for k, v in env.items() if k != "AWS_ENDPOINT_URL"}
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
        values["extra_features"] = parse_extra_features(values["extra_features"])
        values["watch"] = parse_watch_list(values["watch"])
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
        aws_config = _aws_config(env)
        values["endpoints"] = _service_endpoints(env, aws_config)
        if values["endpoint_url"] is None:
            values["endpoint_url"] = aws_config.get("endpoint_url")
        if values["endpoint_url"] is None and not has_real_credentials:
            # Nothing reaches real AWS by accident: the local stack serves what is not configured.
            values["endpoint_url"] = LOCAL_AWS_ENDPOINT
            values["endpoints"].setdefault("kinesis", LOCAL_KINESIS_ENDPOINT)
        if values["region"] is None:
            values["region"] = aws_config.get("region") or LOCAL_REGION
        every_service_elsewhere = values["endpoint_url"] or all(
            s in values["endpoints"] for s in AWS_SERVICES
        )
        if every_service_elsewhere and not env.get("AWS_ACCESS_KEY_ID"):
            # No service is real AWS: local endpoints accept any key; never let a stray
            # profile leak to them.
            values["aws_access_key_id"] = "testing"
            values["aws_secret_access_key"] = "testing"
        settings = cls(**values)
        settings.mqtt  # noqa: B018 - a bad URL fails here, early, with the message
        return settings


def parse_watch_list(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """Watched devices from a flag or the environment (``d1,d2``) or a TOML list, sorted.

    >>> parse_watch_list(" d2,d1,,d2"), parse_watch_list(None)
    (('d1', 'd2'), ())
    """
    if not value:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(sorted({str(d).strip() for d in items if str(d).strip()}))


def parse_extra_features(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """Declared extra fields from a flag or the environment (``pressure,wind``) or a TOML list.

    >>> parse_extra_features("pressure, wind,pressure"), parse_extra_features(None)
    (('pressure', 'wind'), ())
    >>> parse_extra_features(["temp"])
    Traceback (most recent call last):
    ...
    iotcast.settings.ConfigError: extra feature 'temp' is a sensor of the data contract (always a feature); declare other numeric fields, e.g. pressure
    """
    if value is None:
        return ()
    names = value.split(",") if isinstance(value, str) else list(value)
    out: list[str] = []
    for raw in names:
        name = str(raw).strip()
        if not name:
            continue
        if name in SENSORS:
            raise ConfigError(
                f"extra feature {name!r} is a sensor of the data contract (always a feature); "
                "declare other numeric fields, e.g. pressure"
            )
        if not _EXTRA_NAME.fullmatch(name):
            raise ConfigError(
                f"extra feature {name!r}: a field name is a lower-case letter, then up to 31 "
                "lower-case letters, digits or _ (as the readings' extra fields are)"
            )
        if name not in out:
            out.append(name)
    if len(out) > MAX_EXTRA_FIELDS:
        raise ConfigError(
            f"{len(out)} extra features declared; a reading carries at most {MAX_EXTRA_FIELDS}"
        )
    return tuple(out)


def _ignore_configured_endpoints(env: Mapping[str, str]) -> bool:
    return env.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true"


def _aws_config(env: Mapping[str, str]) -> dict[str, Any]:
    """The AWS config file's profile (``AWS_PROFILE``, else ``default``), with its
    ``services`` section resolved under ``_services``; {} when there is no file."""
    path = Path(env.get("AWS_CONFIG_FILE", Path.home() / ".aws" / "config")).expanduser()
    if not path.is_file():
        return {}
    try:
        config = load_config(str(path))
    except (BotoCoreError, OSError) as exc:
        raise ConfigError(f"AWS config file {path} cannot be read: {exc}") from exc
    name = env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE") or "default"
    profile = dict(config.get("profiles", {}).get(name, {}))
    if _ignore_configured_endpoints(env):
        profile.pop("endpoint_url", None)
        return profile
    services = config.get("services", {}).get(profile.get("services", ""), {})
    profile["_services"] = services
    return profile


def _service_endpoints(env: Mapping[str, str], aws_config: Mapping[str, Any]) -> dict[str, str]:
    """Each service's own endpoint: ``AWS_ENDPOINT_URL_<SERVICE>``, else the config file's.

    >>> _service_endpoints({"AWS_ENDPOINT_URL_S3": "http://s:1"},
    ...                    {"_services": {"s3": {"endpoint_url": "http://f:2"},
    ...                                   "dynamodb": {"endpoint_url": "http://d:3"}}})
    {'s3': 'http://s:1', 'dynamodb': 'http://d:3'}
    """
    if _ignore_configured_endpoints(env):
        return {}
    found: dict[str, str] = {}
    for service in AWS_SERVICES:
        url = env.get(f"AWS_ENDPOINT_URL_{service.upper()}") or (
            aws_config.get("_services", {}).get(service, {}).get("endpoint_url")
        )
        if url:
            found[service] = url
    return found


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

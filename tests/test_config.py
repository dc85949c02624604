"""Settings: flags > environment > TOML file > defaults, read once at the CLI edge."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from iotcast import cli
from iotcast.settings import (
    AWS_SERVICES,
    LOCAL_AWS_ENDPOINT,
    LOCAL_KINESIS_ENDPOINT,
    ConfigError,
    Settings,
    load_toml,
)
from telemetry.broker import parse_mqtt_url

NO_CREDENTIALS = {
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
    "AWS_CONFIG_FILE": "/nonexistent/config",
}


def resolve(flags=None, env=None, toml=None) -> Settings:
    return Settings.resolve(
        flags=flags or {}, env={**NO_CREDENTIALS, **(env or {})}, toml=toml or {}
    )


def test_defaults_point_at_the_local_stack() -> None:
    s = resolve()
    assert s.mqtt_url == "mqtt://127.0.0.1:1883"
    assert s.endpoint("kinesis") == LOCAL_KINESIS_ENDPOINT  # kinesalite
    assert s.endpoint("s3") == s.endpoint("dynamodb") == LOCAL_AWS_ENDPOINT  # moto
    assert (s.region, s.stream, s.bucket, s.app) == (
        "us-east-1",
        "iot-telemetry",
        "iotcast",
        "iotcast",
    )
    assert s.predictions_stream == "iot-predictions"
    assert s.aws_access_key_id == "testing"  # dummy keys for the local endpoint


@pytest.mark.parametrize(
    ("name", "env_name", "a", "b", "c"),
    [
        ("stream", "IOTCAST_STREAM", "from-toml", "from-env", "from-flag"),
        ("bucket", "IOTCAST_BUCKET", "t", "e", "f"),
        ("app", "IOTCAST_APP", "t", "e", "f"),
        ("mqtt_url", "IOTCAST_MQTT_URL", "mqtt://t:1", "mqtt://e:2", "mqtt://f:3"),
        ("endpoint_url", "AWS_ENDPOINT_URL", "http://t:1", "http://e:2", "http://f:3"),
        ("region", "AWS_REGION", "eu-west-1", "eu-west-2", "eu-west-3"),
        ("metrics_port", "IOTCAST_METRICS_PORT", 9001, "9002", 9003),
        ("hmac_key", "IOTCAST_HMAC_KEY", "t", "e", "f"),
    ],
)
def test_flags_beat_environment_beat_toml(name, env_name, a, b, c) -> None:
    assert getattr(resolve(toml={name: a}), name) == a
    expected_env = int(b) if name == "metrics_port" else b
    assert getattr(resolve(toml={name: a}, env={env_name: b}), name) == expected_env
    assert getattr(resolve(toml={name: a}, env={env_name: b}, flags={name: c}), name) == c


def test_none_flags_are_not_given() -> None:
    assert resolve(env={"IOTCAST_STREAM": "e"}, flags={"stream": None}).stream == "e"


def test_aws_region_falls_back_to_default_region() -> None:
    assert resolve(env={"AWS_DEFAULT_REGION": "ap-south-1"}).region == "ap-south-1"
    assert resolve(env={"AWS_DEFAULT_REGION": "x", "AWS_REGION": "y"}).region == "y"


def test_real_credentials_mean_real_aws_unless_an_endpoint_is_set() -> None:
    s = resolve(env={"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s"})
    assert not s.local_aws
    assert all("endpoint_url" not in s.boto_kwargs(service) for service in AWS_SERVICES)
    s = resolve(env={"AWS_ACCESS_KEY_ID": "AKIA"}, flags={"endpoint_url": "http://127.0.0.1:9"})
    assert {s.boto_kwargs(x)["endpoint_url"] for x in AWS_SERVICES} == {"http://127.0.0.1:9"}


def test_a_service_endpoint_wins_over_the_general_one_for_its_service() -> None:
    env = {"AWS_ENDPOINT_URL_KINESIS": "http://k:4567", "AWS_ENDPOINT_URL": "http://e:5000"}
    s = resolve(env=env)
    assert (s.endpoint("kinesis"), s.endpoint("s3"), s.endpoint("dynamodb")) == (
        "http://k:4567", "http://e:5000", "http://e:5000",
    )  # fmt: skip
    s = resolve(env=env, flags={"endpoint_url": "http://f:5001"})  # the flag is general too
    assert (s.endpoint("kinesis"), s.endpoint("s3")) == ("http://k:4567", "http://f:5001")
    # One service configured, no credentials: the others stay on the local stack.
    s = resolve(env={"AWS_ENDPOINT_URL_DYNAMODB": "http://d:8000"})
    assert (s.endpoint("kinesis"), s.endpoint("s3"), s.endpoint("dynamodb")) == (
        LOCAL_KINESIS_ENDPOINT, LOCAL_AWS_ENDPOINT, "http://d:8000",
    )  # fmt: skip
    # With credentials, only the configured service leaves AWS, and the credentials are kept.
    s = resolve(env={"AWS_PROFILE": "prod", "AWS_ENDPOINT_URL_KINESIS": "http://k:1"})
    assert (s.endpoint("kinesis"), s.endpoint("s3")) == ("http://k:1", None)
    assert s.aws_access_key_id is None


def test_the_aws_config_file_names_endpoints_per_service(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(
        "[default]\nregion = eu-west-1\nendpoint_url = http://g:1\nservices = here\n\n"
        "[services here]\nkinesis =\n  endpoint_url = http://k:2\n"
    )
    s = resolve(env={"AWS_CONFIG_FILE": str(config)})
    assert (s.endpoint("kinesis"), s.endpoint("s3"), s.region) == (
        "http://k:2", "http://g:1", "eu-west-1",
    )  # fmt: skip
    s = resolve(env={"AWS_CONFIG_FILE": str(config), "AWS_ENDPOINT_URL_KINESIS": "http://e:3"})
    assert s.endpoint("kinesis") == "http://e:3"  # the environment beats the file
    s = resolve(env={"AWS_CONFIG_FILE": str(config), "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"})
    assert s.endpoint("kinesis") == LOCAL_KINESIS_ENDPOINT  # ignored, as the SDKs do


def test_children_reach_each_service_where_the_parent_does() -> None:
    parent = resolve(
        env={"AWS_ENDPOINT_URL_KINESIS": "http://k:4567"}, flags={"endpoint_url": "http://m:5000"}
    )
    argv = cli.connection_flags(parent)
    env = cli.local_env(parent)
    assert env["AWS_ENDPOINT_URL_KINESIS"] == "http://k:4567"
    flags = {"endpoint_url": argv[argv.index("--endpoint-url") + 1]}
    child = Settings.resolve(flags=flags, env=env, toml={})
    assert all(child.endpoint(x) == parent.endpoint(x) for x in AWS_SERVICES)


def test_toml_file_top_level_or_iotcast_table(tmp_path: Path) -> None:
    flat = tmp_path / "flat.toml"
    flat.write_text('stream = "s1"\nmetrics_port = 9100\n')
    table = tmp_path / "table.toml"
    table.write_text('[iotcast]\nbucket = "b2"\n')
    assert load_toml(flat) == {"stream": "s1", "metrics_port": 9100}
    assert Settings.resolve(flags={"config": str(flat)}, env=NO_CREDENTIALS).stream == "s1"
    s = Settings.resolve(flags={}, env={**NO_CREDENTIALS, "IOTCAST_CONFIG": str(table)})
    assert s.bucket == "b2"
    # the environment still beats the file
    s = Settings.resolve(
        flags={"config": str(flat)}, env={**NO_CREDENTIALS, "IOTCAST_STREAM": "env"}
    )
    assert s.stream == "env" and s.metrics_port == 9100


def test_config_errors_say_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key.*colour"):
        resolve(toml={"colour": "blue"})
    with pytest.raises(ConfigError, match="config file not found"):
        Settings.resolve(flags={"config": str(tmp_path / "missing.toml")}, env=NO_CREDENTIALS)
    bad = tmp_path / "bad.toml"
    bad.write_text("stream = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Settings.resolve(flags={"config": str(bad)}, env=NO_CREDENTIALS)
    with pytest.raises(ConfigError, match="metrics port must be an integer"):
        resolve(env={"IOTCAST_METRICS_PORT": "ninety"})
    with pytest.raises(ConfigError, match="scheme must be mqtt:// or mqtts://"):
        resolve(flags={"mqtt_url": "http://broker:1883"})


def test_mqtt_urls_with_tls_and_credentials() -> None:
    t = parse_mqtt_url("mqtts://bob:s%40cret@broker.example:8883")
    assert (t.host, t.port, t.tls, t.username, t.password) == (
        "broker.example", 8883, True, "bob", "s@cret",
    )  # fmt: skip
    assert parse_mqtt_url("mqtts://broker").port == 8883
    assert parse_mqtt_url("mqtt://broker").port == 1883
    assert "s@cret" not in repr(t)  # the password stays out of logs
    s = resolve(flags={"mqtt_url": "mqtts://u:p@h:8883", "mqtt_ca_file": "/ca.pem"})
    assert s.mqtt.tls and s.mqtt_ca_file == s.mqtt.ca_file == "/ca.pem"


def test_cli_reads_flags_once_at_the_edge(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[Settings] = []

    class Probe:
        HELP = "probe"
        __doc__ = "probe command"

        @staticmethod
        def add_arguments(parser: argparse.ArgumentParser) -> None:
            pass

        @staticmethod
        def run(settings: Settings, args: argparse.Namespace) -> int:
            seen.append(settings)
            return 0

    conf = tmp_path / "c.toml"
    conf.write_text('stream = "from-file"\nbucket = "file-bucket"\napp = "file-app"\n')
    monkeypatch.setitem(cli.COMMANDS, "probe", "probe_module")
    monkeypatch.setitem(__import__("sys").modules, "probe_module", Probe)
    monkeypatch.setenv("IOTCAST_BUCKET", "env-bucket")
    monkeypatch.setenv("IOTCAST_APP", "env-app")
    code = cli.main(["probe", "--config", str(conf), "--app", "flag-app"])
    assert code == 0
    s = seen[0]
    assert (s.stream, s.bucket, s.app) == ("from-file", "env-bucket", "flag-app")

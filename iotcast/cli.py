"""The ``iotcast`` command line: one entry point, a subcommand per job.

Each subcommand is a module of :mod:`iotcast.commands` (the demo: :mod:`iotcast.demo.command`)
with three names: ``HELP`` (one line), ``add_arguments(parser)`` and
``run(settings, args) -> int``.  Settings are resolved here, once, from flags >
environment > TOML file; the commands hand the floors below plain values.

>>> parser = build_parser()
>>> args = parser.parse_args(["data", "generate", "--out", "week.csv", "--days", "1"])
>>> args.command, args.out
('data', 'week.csv')
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from iotcast.settings import ConfigError, Settings

__all__ = [
    "COMMANDS",
    "build_parser",
    "command_line",
    "common_flags",
    "connection_flags",
    "local_env",
    "main",
]

# subcommand -> module holding HELP, add_arguments(parser), run(settings, args)
COMMANDS: dict[str, str] = {
    "demo": "iotcast.demo.command",
    "data": "iotcast.commands.data",
    "replay": "iotcast.commands.replay",
    "bridge": "iotcast.commands.bridge",
    "process": "iotcast.commands.process",
    "evaluate": "iotcast.commands.evaluate",
    "retrain": "iotcast.commands.retrain",
    "archive": "iotcast.commands.archive",
    "status": "iotcast.commands.status",
    "models": "iotcast.commands.models",
    "grafana": "iotcast.commands.grafana",
    "reshard": "iotcast.commands.reshard",
    "ui": "iotcast.commands.ui",
}

_SETTING_FLAGS = (
    "config",
    "mqtt_url",
    "mqtt_ca_file",
    "endpoint_url",
    "region",
    "stream",
    "bucket",
    "app",
    "metrics_port",
    "models_file",
    "hmac_key",
    "log_level",
    "extra_features",  # iotcast process only
    "watch",  # iotcast process only
)


def common_flags() -> argparse.ArgumentParser:
    """Flags shared by every command that talks to a component (see DESIGN.md, Names)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group(
        "connection and settings (flags > IOTCAST_*/AWS_* environment > --config file)"
    )
    g.add_argument("--config", metavar="FILE", help="TOML settings file (env IOTCAST_CONFIG)")
    g.add_argument(
        "--mqtt-url",
        help="broker, mqtt://host:port or mqtts://user:pass@host:8883 "
        "(env IOTCAST_MQTT_URL; default mqtt://127.0.0.1:1883)",
    )
    g.add_argument(
        "--mqtt-ca-file",
        metavar="PEM",
        help="CA certificate for mqtts:// (env IOTCAST_MQTT_CA_FILE)",
    )
    g.add_argument(
        "--endpoint-url",
        help="AWS endpoint of every service without its own (env AWS_ENDPOINT_URL; a "
        "service's own, AWS_ENDPOINT_URL_KINESIS/_S3/_DYNAMODB or the AWS config file's, "
        "wins for it); default without AWS credentials: the local stack, kinesalite "
        "http://127.0.0.1:4567 for Kinesis and moto http://127.0.0.1:5000 for the rest; "
        "with credentials: real AWS",
    )
    g.add_argument(
        "--region", help="AWS region (env AWS_REGION / AWS_DEFAULT_REGION; default us-east-1)"
    )
    g.add_argument(
        "--stream", help="Kinesis telemetry stream (env IOTCAST_STREAM; default iot-telemetry)"
    )
    g.add_argument(
        "--bucket",
        help="S3 bucket for checkpoints and dead letters (env IOTCAST_BUCKET; default iotcast)",
    )
    g.add_argument(
        "--app", help="consumer group / application name (env IOTCAST_APP; default iotcast)"
    )
    g.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus /metrics on this port (env IOTCAST_METRICS_PORT)",
    )
    g.add_argument(
        "--models-file",
        metavar="TOML",
        help="model catalog (env IOTCAST_MODELS_FILE; default: the built-in catalog)",
    )
    g.add_argument("--hmac-key", help="key that signs model manifests (env IOTCAST_HMAC_KEY)")
    g.add_argument(
        "--log-level", help="DEBUG, INFO, WARNING, ERROR (env IOTCAST_LOG_LEVEL; default INFO)"
    )
    return p


def command_line(
    settings: Settings,
    command: str,
    *extra: str,
    program: Sequence[str] = (sys.executable, "-m", "iotcast.cli"),
) -> list[str]:
    """The command line of ``iotcast <command>`` pointed at the components ``settings`` name
    (the child processes of the demo, the soak and the tests).

    >>> command_line(Settings(), "bridge", "--shards", "2", program=["iotcast"])[:4]
    ['iotcast', 'bridge', '--endpoint-url', 'http://127.0.0.1:5000']

    (Kinesis on its own endpoint, kinesalite here, is in :func:`local_env`.)
    """
    return [*program, command, *connection_flags(settings), *extra]


def connection_flags(settings: Settings) -> list[str]:
    """The shared flags (:func:`common_flags`) that say what ``settings`` say: where the
    components are, the names, the log level, the model catalog."""
    s = settings
    flags = [
        "--region", s.region,
        "--mqtt-url", s.mqtt_url, "--stream", s.stream, "--bucket", s.bucket,
        "--app", s.app, "--log-level", s.log_level,
    ]  # fmt: skip
    if s.endpoint_url:
        flags = ["--endpoint-url", s.endpoint_url, *flags]
    if s.models_file:
        flags += ["--models-file", s.models_file]
    return flags


def local_env(settings: Settings) -> dict[str, str]:
    """The environment of such a child on the local stack: this one's, without the user's
    ``IOTCAST_*``/``AWS_*`` and AWS config file (the flags say where), with local
    credentials and what only the environment carries: the predictions stream, the HMAC
    key, and each service's own endpoint (``AWS_ENDPOINT_URL_KINESIS``, ...: the SDKs'
    standard setting, which wins over ``--endpoint-url`` for its service).

    >>> env = local_env(Settings(predictions_stream="p"))
    >>> env["AWS_ACCESS_KEY_ID"], env["IOTCAST_PREDICTIONS_STREAM"], env["AWS_ENDPOINT_URL_KINESIS"]
    ('testing', 'p', 'http://127.0.0.1:4567')
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IOTCAST_"))}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=settings.region,
        AWS_CONFIG_FILE=os.devnull,
        IOTCAST_PREDICTIONS_STREAM=settings.predictions_stream,
        PYTHONUNBUFFERED="1",
    )
    for service, url in settings.endpoints.items():
        env[f"AWS_ENDPOINT_URL_{service.upper()}"] = url
    if settings.hmac_key:
        env["IOTCAST_HMAC_KEY"] = settings.hmac_key
    return env


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iotcast",
        description="Real-time streaming temperature forecaster for IoT sensors: "
        "MQTT -> bridge -> Kinesis -> online models (River) -> Prometheus, checkpoints in S3.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    parent = common_flags()
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # not built yet
        sub = subparsers.add_parser(
            name,
            help=module.HELP,
            description=module.__doc__,
            parents=[parent],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.resolve(flags={k: getattr(args, k, None) for k in _SETTING_FLAGS})
    except ConfigError as exc:
        parser.error(str(exc))
    logging.basicConfig(
        level=getattr(logging, str(settings.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args._argv = list(sys.argv[1:] if argv is None else argv)  # what a worker re-runs
    try:
        return int(args._module.run(settings, args) or 0)
    except ConfigError as exc:
        print(f"iotcast {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

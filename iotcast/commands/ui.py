"""The analysis page: a local web app to look at sensor data and forecasts, in a browser.

Open a telemetry CSV (upload, a path, or a generated sample), see what it holds per
device, ask a question (devices, what to predict, how far ahead, which models) and
get the same prequential evaluation as ``iotcast evaluate``, as interactive charts
with a sentence each, a leaderboard, and the report to download. With a stack or
AWS configured, the live fleet's champions, and promote or roll back a model after
a confirmation (through ``iotcast models promote|rollback``). English and Spanish;
°C or °F. Everything is served by this process: no network needed.

Example:

    iotcast ui                  # then open http://127.0.0.1:8050
    iotcast ui --port 8060 --bucket iotcast --endpoint-url http://127.0.0.1:5000

>>> import argparse
>>> p = argparse.ArgumentParser(); add_arguments(p)
>>> a = p.parse_args([])
>>> a.host, a.port
('127.0.0.1', 8050)
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from iotcast.settings import ConfigError, Settings

__all__ = ["HELP", "add_arguments", "run"]

HELP = "the analysis page: data, forecasts and the live fleet in a browser (local web app)"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8050, help="port to serve on (default 8050)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to serve on (default 127.0.0.1: this computer only)",
    )
    parser.add_argument(
        "--workdir",
        metavar="DIR",
        help="where uploads, the generated sample and reports go (default: a temporary folder)",
    )


def run(settings: Settings, args: argparse.Namespace) -> int:
    from iotcast.stack import port_in_use
    from iotcast.ui import create_app
    from iotcast.ui.workspace import Workspace
    from online_models.catalog import CatalogError

    if port_in_use(args.port):
        raise ConfigError(f"port {args.port} is taken; choose another with --port")
    folder = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="iotcast-ui-"))
    try:
        ws = Workspace(settings, folder=folder)
    except CatalogError as exc:
        raise ConfigError(str(exc)) from exc
    app = create_app(ws)
    print(f"iotcast ui: open http://{args.host}:{args.port}  (files in {folder}; Ctrl-C stops)")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app.run(host=args.host, port=args.port, debug=False)
    return 0

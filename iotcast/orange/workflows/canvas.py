"""Load, run and picture an example workflow in Orange's own canvas, with no person there.

:func:`registry` discovers the widgets as Orange's canvas does (every ``orange.widgets``
entry point; this add-on's category too when it is not installed, e.g. from a checkout);
:func:`open_workflow` opens a ``.ows`` file in Orange's main window (its own loading
code: the widgets are created and their signals flow); :func:`wait_until_idle` pumps
Qt's event loop until no widget is busy; :func:`screenshot` saves the canvas with the
last widget's window beside it as one PNG.

    python -m iotcast.orange.workflows.canvas which-model-wins-where.ows out.png

runs one (under a display: ``Xvfb``, or ``QT_QPA_PLATFORM=offscreen``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from AnyQt.QtCore import QCoreApplication, QEventLoop, QPoint
from AnyQt.QtGui import QPainter, QPixmap
from AnyQt.QtWidgets import QApplication, QWidget

__all__ = ["FOLDER", "open_workflow", "registry", "screenshot", "wait_until_idle", "workflows"]

FOLDER = Path(__file__).parent
ADDON_ENTRY = EntryPoint("iotcast", "iotcast.orange.widgets", "orange.widgets")


def workflows() -> list[Path]:
    """The example workflows shipped with the add-on."""
    return sorted(FOLDER.glob("*.ows"))


def registry():  # -> orangecanvas.registry.WidgetRegistry
    """Orange's widget registry, as the canvas discovers it (plus this add-on)."""
    from Orange.canvas import config
    from orangecanvas import config as canvas_config
    from orangecanvas.registry import WidgetRegistry
    from orangewidget.workflow.discovery import WidgetDiscovery

    canvas_config.set_default(
        config.Config()
    )  # Orange's workflows (WidgetsScheme), as Orange's main()
    reg = WidgetRegistry()
    eps = list(config.widgets_entry_points())
    if not any(ep.value == ADDON_ENTRY.value for ep in entry_points(group="orange.widgets")):
        eps.append(ADDON_ENTRY)
    WidgetDiscovery(reg).run(eps)
    return reg


def open_workflow(path: Path, reg=None):  # -> Orange's main window
    from Orange.canvas.mainwindow import MainWindow

    window = MainWindow()
    window.set_widget_registry(reg or registry())
    window.resize(1100, 700)
    window.show()
    window.load_scheme(str(path))
    return window


def _busy(window) -> bool:
    scheme = window.current_document().scheme()
    signals = scheme.signal_manager
    if signals.has_pending():
        return True
    for node in scheme.nodes:
        w = scheme.widget_manager.widget_for_node(node)
        if w is None or signals.is_blocking(node) or getattr(w, "task", None) is not None:
            return True
    return False


def wait_until_idle(window, timeout: float = 600.0, settle: float = 1.0) -> float:
    """Pump events until every widget has its input and is done (seconds taken)."""
    start = time.monotonic()
    idle_since = None
    while time.monotonic() - start < timeout:
        QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 100)
        if _busy(window):
            idle_since = None
        elif idle_since is None:
            idle_since = time.monotonic()
        elif time.monotonic() - idle_since >= settle:
            return time.monotonic() - start
        time.sleep(0.02)
    raise TimeoutError(f"the workflow was still busy after {timeout:.0f} s")


def first_view(window) -> QWidget:
    """The first widget with no output link: the workflow's main view."""
    scheme = window.current_document().scheme()
    sinks = [n for n in scheme.nodes if not scheme.find_links(source_node=n)]
    return scheme.widget_manager.widget_for_node(sinks[0])


def screenshot(window, out: Path, widget: QWidget | None = None) -> Path:
    """The canvas and ``widget``'s window (default: the first view) side by side."""
    widget = widget or first_view(window)
    widget.resize(1000, 700)
    widget.show()
    widget.raise_()
    for _ in range(20):
        QCoreApplication.processEvents()
        time.sleep(0.05)
    left, right = window.grab(), widget.grab()
    image = QPixmap(left.width() + right.width(), max(left.height(), right.height()))
    image.fill()
    painter = QPainter(image)
    painter.drawPixmap(QPoint(0, 0), left)
    painter.drawPixmap(QPoint(left.width(), 0), right)
    painter.end()
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(str(out), "PNG")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workflow", help="a .ows file (a name here: one of the examples)")
    parser.add_argument("png", help="where to save the screenshot")
    parser.add_argument(
        "--days", type=float, help="the Telemetry sample's days (default: as saved)"
    )
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    path = Path(args.workflow)
    if not path.exists():
        path = FOLDER / args.workflow
    app = QApplication.instance() or QApplication(sys.argv[:1])
    copy = None if args.days is None else with_days(path, args.days)
    try:
        window = open_workflow(copy or path)
        took = wait_until_idle(window, args.timeout)
        errors = [
            f"{node.title}: {m.formatted}"
            for node in window.current_document().scheme().nodes
            for w in [window.current_document().scheme().widget_manager.widget_for_node(node)]
            for m in w.Error.active
        ]
        screenshot(window, Path(args.png))
        print(f"{path.name}: ran in {took:.1f} s; errors: {errors or 'none'}")
        window.current_document().setModified(False)
        window.close()
        app.processEvents()
    finally:
        if copy is not None:  # the shortened copy's folder (with_days)
            shutil.rmtree(copy.parent, ignore_errors=True)
    return 1 if errors else 0


def with_days(path: Path, days: float) -> Path:
    """A copy of the workflow whose Telemetry widget generates ``days`` days, in a folder of
    its own (the caller removes it)."""
    import re
    import tempfile

    text = path.read_text()
    text, n = re.subn(r"'days': [0-9.]+", f"'days': {days!r}", text)
    if not n:
        raise ValueError(f"{path.name}: no Telemetry sample to shorten")
    out = Path(tempfile.mkdtemp(prefix="iotcast-ows-")) / path.name
    out.write_text(text)
    return out


if __name__ == "__main__":
    sys.exit(main())

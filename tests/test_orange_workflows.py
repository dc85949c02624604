"""The add-on's example workflows load and run in Orange's own canvas under a real X
server (Debian's ``Xvfb``), each leaving a screenshot of the canvas and its last widget
(``docs/orange/`` keeps two).  The Telemetry sample is shortened to keep the suite quick;
the figures flow through the same widgets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("Orange")
pytest.importorskip("orangecontrib.timeseries")

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / "iotcast" / "orange" / "workflows"
DAYS = {"which-model-wins-where": 0.1, "error-by-hour": 0.1, "look-at-a-week": 2.0}


@pytest.fixture(scope="module")
def display(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.fail("Xvfb is missing: apt-get install xvfb (./dev setup installs it)")
    number = next(n for n in range(90, 190) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    log = open(tmp_path_factory.mktemp("xvfb") / "xvfb.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [xvfb, f":{number}", "-screen", "0", "1920x1080x24", "-nolisten", "tcp"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while not Path(f"/tmp/.X11-unix/X{number}").exists():
            assert proc.poll() is None, "Xvfb exited at start"
            assert time.monotonic() < deadline, "Xvfb did not open its socket in 20 s"
            time.sleep(0.1)
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(DAYS))
def test_the_example_workflow_runs_in_orange_and_is_pictured(
    name: str, display: str, tmp_path: Path
) -> None:
    png = tmp_path / f"{name}.png"
    env = {
        **os.environ,
        "DISPLAY": display,
        "QT_QPA_PLATFORM": "xcb",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),  # Orange's settings: fresh, English
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    argv = [sys.executable, "-m", "iotcast.orange.workflows.canvas", str(WORKFLOWS / f"{name}.ows")]
    argv += [str(png), "--days", str(DAYS[name]), "--timeout", "600"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    tail = (done.stdout + done.stderr)[-3000:]
    assert done.returncode == 0, tail
    assert f"{name}.ows: ran in" in done.stdout and "errors: none" in done.stdout, tail
    from PIL import Image

    with Image.open(png) as image:
        assert image.size[0] >= 1500 and image.size[1] >= 600
        colours = len(set(image.convert("RGB").resize((200, 100)).get_flattened_data()))
        assert colours > 50, "the screenshot is blank"
    keep = os.environ.get("IOTCAST_ORANGE_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, Path(keep) / png.name)

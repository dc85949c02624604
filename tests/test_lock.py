"""The virtual environment the suite runs in is exactly the lock (``./dev`` installs it).

``requirements.lock`` holds one resolved set of every Python dependency, transitive ones
and the build tools included, with hashes; ``./dev setup`` remakes ``.venv`` from it
whenever it changes.  A ``.venv`` that drifted from it (a package upgraded by hand, a
lock edited without a set-up) is reported here, package by package, so that a green run
always names the versions it was green with.  ``./dev newest`` runs the same check
against the newest allowed set it resolved (``IOTCAST_LOCK_FILE``).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)\s*(?:;(?P<marker>[^\\]+))?"
)


def locked(path: Path) -> dict[str, str]:
    """Each package the lock installs on this interpreter, by canonical name, with its version."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        m = PIN.match(line)
        if m and (m["marker"] is None or Marker(m["marker"].strip()).evaluate()):
            pins[canonicalize_name(m["name"])] = m["version"]
    return pins


def installed() -> dict[str, str]:
    return {
        canonicalize_name(d.metadata["Name"]): d.version
        for d in importlib.metadata.distributions()
        if d.metadata["Name"]
    }


def drift(pins: dict[str, str], have: dict[str, str]) -> list[str]:
    """What differs between a lock and an environment, one line a package."""
    out = []
    for name in sorted(pins.keys() | have.keys()):
        want, got = pins.get(name), have.get(name)
        if name == "iotcast" or want == got:
            continue
        out.append(f"{name}: locked {want or '(not in the lock)'}, installed {got or '(missing)'}")
    return out


def test_lock_parser_reads_pins_markers_and_hash_continuations(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text(
        "# header\n"
        "moto==5.2.5 \\\n    --hash=sha256:ab\n    # via iotcast\n"
        "colorama==0.4.6 ; sys_platform == 'nonesuch' \\\n    --hash=sha256:cd\n"
        "numpy==2.4.6 ; python_full_version >= '3.0' \\\n    --hash=sha256:ef\n"
    )
    assert locked(lock) == {"moto": "5.2.5", "numpy": "2.4.6"}
    assert drift({"moto": "5.2.5"}, {"moto": "5.2.6", "iotcast": "0.1.0", "six": "1"}) == [
        "moto: locked 5.2.5, installed 5.2.6",
        "six: locked (not in the lock), installed 1",
    ]


def test_installed_packages_are_exactly_the_lock() -> None:
    lock = ROOT / os.environ.get("IOTCAST_LOCK_FILE", "requirements.lock")
    pins = locked(lock)
    assert len(pins) > 50, f"{lock} holds only {len(pins)} pins for this interpreter"
    differences = drift(pins, installed())
    assert not differences, (
        f"the environment drifted from {lock.name} (./dev setup remakes it from the lock):\n  "
        + "\n  ".join(differences)
    )


def test_the_image_installs_the_locked_versions_without_the_test_tools() -> None:
    project, image = (
        locked(ROOT / "requirements.lock"),
        locked(ROOT / "docker" / "requirements.lock"),
    )
    assert {name: project.get(name) for name in image} == image
    assert "moto" in image and "pytest" not in image and "playwright" not in image
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert "pip install --require-hashes --no-deps -r requirements.lock" in dockerfile

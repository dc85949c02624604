"""The floors of shared/DESIGN.md hold: a package imports only from the floors below it.

=================  =====  ==========================================================
package            floor  may import
=================  =====  ==========================================================
``telemetry``      1      nothing of ours (the data contract and its sources)
``online_models``  2      ``telemetry``
``monitoring``     2      ``telemetry``
``bridge``         3      the floors below; never ``stream`` (nor the shell)
``stream``         3      the floors below; never ``bridge`` (nor the shell)
``iotcast``        4      everything: the shell is the only package that may
=================  =====  ==========================================================

Every ``import`` counts, wherever it stands (module top, inside a function, under
``TYPE_CHECKING``), and so does every import in a docstring's example (``>>>``):
the doctests run as part of the suite.  Read with :mod:`ast`, nothing is imported.

>>> sorted(imported_packages(ast.parse("from stream.core import StreamCore\\nimport os")))
[('stream', 1)]
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FLOORS: dict[str, int] = {
    "telemetry": 1,
    "online_models": 2,
    "monitoring": 2,
    "bridge": 3,
    "stream": 3,
    "iotcast": 4,
}


def may_import(importer: str, imported: str) -> bool:
    """A package imports itself and the floors strictly below its own.

    >>> may_import("bridge", "telemetry"), may_import("bridge", "stream"), may_import("telemetry", "iotcast")
    (True, False, False)
    """
    return importer == imported or FLOORS[imported] < FLOORS[importer]


def _docstring_examples(tree: ast.AST) -> list[tuple[str, int]]:
    """The ``>>>`` lines of every docstring in ``tree``, with their line numbers."""
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        doc = ast.get_docstring(node, clean=False)
        if not doc or not node.body:
            continue
        first = node.body[0].lineno
        for i, line in enumerate(doc.splitlines()):
            text = line.strip()
            if text.startswith(">>> "):
                out.append((text[4:], first + i))
    return out


def imported_packages(tree: ast.AST, package: str | None = None) -> set[tuple[str, int]]:
    """(top-level package, line) of every import of one of :data:`FLOORS` in ``tree``
    (``package``: the importer's own, to resolve relative imports)."""
    names: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level and package:
                names.append((package, node.lineno))
            elif node.module:
                names.append((node.module, node.lineno))
    for source, line in _docstring_examples(tree):
        try:
            example = ast.parse(source)
        except SyntaxError:
            continue  # a continued statement; its first line holds the import
        names += [(name, line) for name, _ in imported_packages(example)]
    return {(name.split(".")[0], line) for name, line in names if name.split(".")[0] in FLOORS}


def violations(root: Path) -> list[str]:
    """``path:line: a imports b`` for every import across the floors, in the packages under ``root``."""
    found = []
    for package in FLOORS:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for imported, line in sorted(imported_packages(tree, package)):
                if not may_import(package, imported):
                    where = path.relative_to(root)
                    found.append(
                        f"{where}:{line}: {package} (floor {FLOORS[package]}) imports "
                        f"{imported} (floor {FLOORS[imported]})"
                    )
    return found


def test_every_package_imports_only_from_the_floors_below_it() -> None:
    assert violations(ROOT) == []


def test_every_package_of_the_project_stands_on_a_floor() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages == set(FLOORS), "place a new package on a floor in FLOORS and DESIGN.md"


def test_only_the_shell_imports_everything() -> None:
    top = max(FLOORS.values())
    assert [p for p, floor in FLOORS.items() if floor == top] == ["iotcast"]
    assert all(may_import("iotcast", p) for p in FLOORS)
    assert not any(may_import(p, "iotcast") for p in FLOORS if p != "iotcast")


@pytest.mark.parametrize(
    ("path", "source", "expected"),
    [
        (
            "telemetry/x.py",
            "from iotcast.settings import Settings\n",
            "telemetry (floor 1) imports iotcast",
        ),
        (
            "telemetry/x.py",
            "import online_models.features\n",
            "telemetry (floor 1) imports online_models",
        ),
        (
            "online_models/x.py",
            "def f():\n    from monitoring import metrics\n",
            "imports monitoring",
        ),
        (
            "monitoring/x.py",
            "from bridge.retry import RetryPolicy\n",
            "monitoring (floor 2) imports bridge",
        ),
        ("bridge/x.py", "from stream.core import StreamCore\n", "bridge (floor 3) imports stream"),
        ("stream/x.py", "import bridge\n", "stream (floor 3) imports bridge"),
        ("stream/x.py", "from iotcast import cli\n", "stream (floor 3) imports iotcast"),
        (
            "bridge/x.py",
            '"""Doc.\n\n>>> from iotcast.settings import Settings\n"""\n',
            "imports iotcast",
        ),
    ],
)
def test_the_check_fails_when_a_lower_floor_imports_a_higher_one(
    tmp_path: Path, path: str, source: str, expected: str
) -> None:
    (tmp_path / path).parent.mkdir(parents=True)
    (tmp_path / path).write_text(source)
    (found,) = violations(tmp_path)
    assert found.startswith(f"{path}:") and expected in found


def test_the_check_lets_a_floor_import_itself_and_the_floors_below(tmp_path: Path) -> None:
    (tmp_path / "stream").mkdir()
    (tmp_path / "stream" / "x.py").write_text(
        "from . import loop\nfrom stream.state import ShardState\n"
        "from online_models.device import DeviceModels\nimport telemetry.reading\n"
        "from monitoring import metrics\nimport os\n"
    )
    assert violations(tmp_path) == []

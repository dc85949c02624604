"""Only the adapter touches the private parts of the libraries we bend.

async-kinesis is bent in one module, ``stream/consumer.py`` (its consumer
subclassed, its checkpointer wrapped: the lease protocol, the heartbeat, the
shared DynamoDB resource, the closed-shard bookkeeping); prometheus_client is
used through its public collector API only (``Metric.add_sample``,
``describe()``, ``REGISTRY.register``).

How the test finds a private access, with :mod:`ast` and no import of our
code: the private names of a library are the ``_name`` (not dunder)
attributes its own source assigns on ``self``/``cls`` and the ``_name``
functions, classes and module globals it defines. An access ``x._name`` in
our code (packages, bench/, tests/) is the library's when ``_name`` is one of
those **and** no module of ours defines that name itself (as a method,
``self._name = ...``, a class or a global): ``self._lock`` of our own classes is
ours, ``histogram._labelnames`` is prometheus_client's. A name both define
(``_lock``) is not caught: the blind spot, kept small by the second rule.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIP_DIRS = {".venv", "node_modules", "demo-output", "build", "dist", "__pycache__"}
# library -> the one module allowed to touch its private parts (None: no module)
ADAPTERS = {"kinesis": "stream/consumer.py", "prometheus_client": None}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def defined_private_names(tree: ast.AST) -> set[str]:
    """Private names a module defines: ``self._x =``, ``def _x``, ``class _X``, ``_X =``.

    >>> sorted(defined_private_names(ast.parse(
    ...     "class _A:\\n    def _f(self):\\n        self._x = 1\\n_G = 2\\nother._y = 3")))
    ['_A', '_G', '_f', '_x']
    """
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                names.add(node.attr)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return {n for n in names if _is_private(n)}


def library_private_names(library: str) -> set[str]:
    spec = importlib.util.find_spec(library)
    assert spec is not None and spec.origin, f"{library} is not installed"
    names: set[str] = set()
    for path in Path(spec.origin).parent.rglob("*.py"):
        names |= defined_private_names(ast.parse(path.read_text(), filename=str(path)))
    return names


def our_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if not any(p in SKIP_DIRS or p.startswith(".") or p.endswith(".egg-info") for p in parts):
            yield path


def private_accesses(root: Path, library_names: set[str], allowed: str | None) -> list[str]:
    """``file:line x._name`` for every access of a library-private name outside ``allowed``."""
    trees = {p: ast.parse(p.read_text(), filename=str(p)) for p in our_files(root)}
    ours: set[str] = set()
    for tree in trees.values():
        ours |= defined_private_names(tree)
    suspect = library_names - ours
    found = []
    for path, tree in trees.items():
        where = path.relative_to(root).as_posix()
        if where == allowed:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in suspect:
                found.append(f"{where}:{node.lineno} {ast.unparse(node)}")
    return sorted(found)


@pytest.mark.parametrize("library", sorted(ADAPTERS))
def test_only_the_adapter_touches_the_librarys_private_names(library: str) -> None:
    found = private_accesses(ROOT, library_private_names(library), ADAPTERS[library])
    assert found == [], f"{library}'s private parts, outside {ADAPTERS[library]}"


def test_the_check_catches_a_private_access_and_spares_our_own(tmp_path: Path) -> None:
    (tmp_path / "stream").mkdir()
    (tmp_path / "stream" / "x.py").write_text(
        "class Mine:\n"
        "    def __init__(self):\n"
        "        self._lock = None\n"
        "def f(hist, mine):\n"
        "    return hist._labelnames, mine._lock\n"
    )
    names = library_private_names("prometheus_client")
    assert "_labelnames" in names and "_lock" in names
    assert private_accesses(tmp_path, names, None) == ["stream/x.py:5 hist._labelnames"]

"""No ``Any`` in a public signature of ``stream/`` or ``online_models/``.

A signature is public when the function is: at module level or a method of a class
at module level (or nested in one), and neither it, its class nor its module's name
starts with ``_``.  Dunder methods (``__init__``, ``__call__``) of a public class count:
``StreamCore(catalog, task, writer)`` is the class's public signature.  Functions
nested in a function do not.

``Any`` is found in the parameter and return annotations, read with :mod:`ast`
(nothing is imported): the name ``Any`` or ``typing.Any``, inside a subscript
(``dict[str, Any]``) or a string annotation too, and any type alias of the checked
packages whose definition holds ``Any`` (``JSON = dict[str, Any]`` would otherwise
hide one).  mypy (``./dev test``) checks that the annotations are right; this test
checks that they say something.

>>> offenders(ast.parse("from typing import Any\\ndef f(x: Any) -> None: ..."), "m.py")
['m.py:2 f(x)']
>>> offenders(ast.parse("class C:\\n    def g(self, *a: int) -> list[Any]: ..."), "m.py")
['m.py:2 C.g(return)']
>>> offenders(ast.parse("def _private(x: Any) -> None: ...\\ndef f(x: 'Any') -> None: ..."), "m.py")
['m.py:2 f(x)']
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("stream", "online_models")

Function = ast.FunctionDef | ast.AsyncFunctionDef


def _is_public(name: str) -> bool:
    return not name.startswith("_") or (name.startswith("__") and name.endswith("__"))


def public_functions(tree: ast.Module) -> Iterator[tuple[str, Function]]:
    """(qualified name, node) of every public function and method of a module."""

    def walk(body: list[ast.stmt], prefix: str) -> Iterator[tuple[str, Function]]:
        for node in body:
            if isinstance(node, Function) and _is_public(node.name):
                yield prefix + node.name, node
            elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                yield from walk(node.body, f"{prefix}{node.name}.")

    yield from walk(tree.body, "")


def type_aliases(tree: ast.Module) -> dict[str, ast.expr]:
    """Module-level type aliases: ``X: TypeAlias = ...`` and
    ``X = <a type expression>`` (a name, attribute, subscript or ``|``; no call)."""
    out: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
            if "TypeAlias" in ast.dump(node.annotation):
                out[node.target.id] = node.value
        elif (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.Subscript | ast.BinOp | ast.Name | ast.Attribute)
        ):
            out[node.targets[0].id] = node.value
    return out


def _names(annotation: ast.expr) -> Iterator[str]:
    """Every name an annotation mentions, string annotations parsed."""
    for node in ast.walk(annotation):
        if isinstance(node, ast.Name):
            yield node.id
        elif isinstance(node, ast.Attribute):
            yield node.attr
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                yield from _names(ast.parse(node.value, mode="eval").body)
            except SyntaxError:
                pass


def has_any(annotation: ast.expr | None, any_aliases: frozenset[str] = frozenset()) -> bool:
    """True when ``annotation`` holds ``Any`` or one of ``any_aliases``."""
    if annotation is None:
        return False
    return any(name == "Any" or name in any_aliases for name in _names(annotation))


def offenders(tree: ast.Module, path: str, any_aliases: frozenset[str] = frozenset()) -> list[str]:
    """``file:line function(param)`` for each public parameter or return typed with Any."""
    out = []
    for qualname, fn in public_functions(tree):
        args = fn.args
        params = [*args.posonlyargs, *args.args, *args.kwonlyargs]
        params += [a for a in (args.vararg, args.kwarg) if a is not None]
        for arg in sorted(params, key=lambda a: (a.lineno, a.col_offset)):
            if has_any(arg.annotation, any_aliases):
                out.append(f"{path}:{arg.lineno} {qualname}({arg.arg})")
        if has_any(fn.returns, any_aliases):
            out.append(f"{path}:{fn.lineno} {qualname}(return)")
    return out


def _modules() -> dict[str, ast.Module]:
    """The public modules of :data:`PACKAGES`, by path relative to the repository."""
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if any(part.startswith("_") for part in rel.with_suffix("").parts[:-1]):
                continue
            if rel.stem.startswith("_") and rel.stem != "__init__":
                continue
            out[rel.as_posix()] = ast.parse(path.read_text(), str(rel))
    return out


def _any_aliases(modules: dict[str, ast.Module]) -> frozenset[str]:
    names: set[str] = set()
    for tree in modules.values():
        names |= {name for name, value in type_aliases(tree).items() if has_any(value)}
    return frozenset(names)


MODULES = _modules()
ANY_ALIASES = _any_aliases(MODULES)


def test_no_any_in_public_signatures() -> None:
    found = [line for path, tree in MODULES.items() for line in offenders(tree, path, ANY_ALIASES)]
    assert not found, "Any in a public signature:\n" + "\n".join(found)


def test_a_planted_any_is_caught(tmp_path: Path) -> None:
    source = "from typing import Any\n\n\ndef f(x: Any) -> None:\n    pass\n"
    assert offenders(ast.parse(source), "planted.py") == ["planted.py:4 f(x)"]


def test_an_alias_that_hides_any_is_caught() -> None:
    tree = ast.parse("from typing import Any\nJSON = dict[str, Any]\ndef f() -> JSON: ...\n")
    aliases = frozenset(n for n, v in type_aliases(tree).items() if has_any(v))
    assert offenders(tree, "m.py", aliases) == ["m.py:3 f(return)"]


def test_private_and_nested_functions_are_not_public() -> None:
    source = (
        "from typing import Any\n"
        "def _helper(x: Any) -> Any: ...\n"
        "class _Hidden:\n    def run(self, x: Any) -> None: ...\n"
        "def outer() -> None:\n    def inner(x: Any) -> None: ...\n"
    )
    assert offenders(ast.parse(source), "m.py") == []

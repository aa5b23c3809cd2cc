"""The package's shape, checked from its source: dialects stay inside ``engines/``, imports
point down the layers, and no modules import each other in a loop.

Imports under ``if TYPE_CHECKING:`` count too: a type-only import is still a dependency a
reader must follow, and an upward one is how cycles crept in before. The one exception: inside
one package, a part may name the type of the whole that owns it (the node's producer names
the node, a graph names the step definitions it is built from), which never runs an import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import networkx as nx
import pytest

import jobsaga

PACKAGE = Path(jobsaga.__file__).parent

LAYERS: dict[str, int] = {
    # 1: foundation, importing nothing above it
    "errors": 1,
    "_context": 1,
    "redaction": 1,
    "job": 1,
    "serialization": 1,
    "results": 1,
    "backoff": 1,
    "waiting": 1,
    "telemetry": 1,
    "unique": 1,
    "worker": 1,
    "suggest": 1,
    # 2: storage
    "engines": 2,
    # 3: what every part of a running app shares (engine, registry, wake-ups, insert)
    "core": 3,
    "telemetry_logging": 3,
    "telemetry_otel": 3,
    # 4: background duties, then the node that runs them
    "plugins": 4,
    "runtime": 5,
    # 6: what users call on a database and run inside jobs
    "operations": 6,
    "workflow": 6,
    # 7: the facade a user builds, and its configuration
    "app": 7,
    "config": 7,
    # 8: tools over the app
    "testing": 8,
    "demo": 8,
    # 9: the front ends over an app: the command line and the dashboard (which words what it
    # shows as the CLI does, from the CLI's own helpers, so both say the same)
    "cli": 9,
    "web": 9,
    "__init__": 10,
    "__main__": 10,
}
"""Each top-level module or package of jobsaga and its layer: a module may import its own
layer's modules (no cycles) and lower layers, never a higher one."""

DIALECT_WORDS = ("sqlite", "postgres")


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(p for p in parts if p != "__init__") or "__init__"
        yield name, path


def _type_only(tree: ast.Module) -> set[int]:
    """The ids of import statements under ``if TYPE_CHECKING:``."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            found.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return found


def imported(name: str, path: Path) -> Iterator[tuple[str, bool]]:
    """Every jobsaga module ``path`` imports, as a dotted name under the package, and
    whether the import is for type checking only."""
    tree = ast.parse(path.read_text("utf-8"))
    type_only = _type_only(tree)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(tree):
        typing = id(node) in type_only
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("jobsaga."):
                    yield alias.name.removeprefix("jobsaga."), typing
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if not (node.module or "").startswith("jobsaga"):
                    continue
                base = (node.module or "").split(".")[1:]
            else:
                base = package[: len(package) - node.level + 1] + (
                    node.module.split(".") if node.module else []
                )
            target = ".".join(base)
            for alias in node.names:
                yield (f"{target}.{alias.name}" if target else alias.name), typing


def resolve(target: str, known: set[str]) -> str | None:
    """The module ``target`` names (``a.b.Name`` -> ``a.b``), or None if it is not ours."""
    parts = target.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def import_graph(*, runtime_only_within_packages: bool = False) -> nx.DiGraph:
    """Who imports whom. With ``runtime_only_within_packages``, a type-only import between
    two modules of one package is left out (see the module docstring)."""
    found = dict(modules())
    known = set(found)
    graph = nx.DiGraph()
    graph.add_nodes_from(known)
    for name, path in found.items():
        for target, typing in imported(name, path):
            module = resolve(target, known)
            if module is None or module == name or module == "__init__":
                continue
            same_package = name.split(".")[0] == module.split(".")[0]
            if runtime_only_within_packages and typing and same_package:
                continue
            graph.add_edge(name, module)
    return graph


def layer_of(module: str) -> int:
    return LAYERS[module.split(".")[0]]


def test_every_module_has_a_layer() -> None:
    unknown = sorted({name.split(".")[0] for name, _ in modules()} - set(LAYERS))
    assert unknown == [], f"give these a layer in LAYERS: {unknown}"


def test_no_import_cycles() -> None:
    graph = import_graph(runtime_only_within_packages=True)
    tangles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert tangles == []


def test_imports_point_down_the_layers() -> None:
    upward = [
        f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)})"
        for a, b in import_graph().edges
        if layer_of(b) > layer_of(a)
    ]
    assert upward == []


def _code_strings(path: Path) -> Iterator[tuple[int, str]]:
    """String constants that are not docstrings, with their lines."""
    tree = ast.parse(path.read_text("utf-8"))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    for node in ast.walk(tree):
        is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
        if is_text and id(node) not in docstrings:
            yield node.lineno, node.value


def test_no_module_outside_engines_names_a_dialect() -> None:
    """Adding an engine touches ``engines/`` and its SQL only: nothing else branches on a
    dialect, names one, or picks SQL by one. Prose (a help text or a message, which has
    spaces) may mention a database; a word or URL that names one may not."""
    found = []
    for name, path in modules():
        if name.split(".")[0] == "engines":
            continue
        for line, text in _code_strings(path):
            if " " not in text and any(word in text.lower() for word in DIALECT_WORDS):
                found.append(f"{name}:{line}: {text[:60]!r}")
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "dialect":
                found.append(f"{name}:{node.lineno}: .dialect")
    assert found == []


@pytest.mark.parametrize("word", DIALECT_WORDS)
def test_the_dialect_check_sees_a_dialect(word: str, tmp_path: Path) -> None:
    """The scan above would catch a new branch (it is not vacuous)."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        f'"""{word} in a docstring is fine."""\nif engine.dialect == "{word}":\n    pass\n'
    )
    strings = [text for _, text in _code_strings(probe)]
    assert strings == [word]

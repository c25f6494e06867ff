"""The package's import graph: no cycles, and the lower layers never reach up.

The graph is read from the source with ``ast``: every ``import raftkit...`` and ``from raftkit... import``
statement, at module scope or inside a function (a deferred import is still a dependency; deferring it
only hides a cycle). ``from raftkit.pkg import name`` depends on ``raftkit.pkg.name`` where that is a
module, else on ``raftkit.pkg``. Imports under ``if TYPE_CHECKING:`` never run and are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "raftkit"

# Layers that the loop, the Python API and the commands are built on: none of them may import those.
LOWER = ("raftkit.rewards", "raftkit.sampling", "raftkit.runs", "raftkit.algorithms")
UPPER = ("raftkit.loop", "raftkit.api", "raftkit.cli")
# The reward layer is what plugins and `raftkit score` import: it stands on the shared core alone.
REWARDS_MAY_NOT_IMPORT = ("raftkit.algorithms", "raftkit.sampling", "raftkit.runs", "raftkit.evaluation",
                          "raftkit.config", "raftkit.pipelines", "raftkit.policy", *UPPER)


def module_names(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (a package is its ``__init__``)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports_of(path: Path, known: set[str], top_level_only: bool) -> set[str]:
    """The raftkit modules ``path`` imports (only at module scope with ``top_level_only``)."""
    found: set[str] = set()

    def visit(node: ast.AST, at_top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                if child.module.split(".")[0] == "raftkit" and (at_top or not top_level_only):
                    for alias in child.names:
                        sub = f"{child.module}.{alias.name}"
                        found.add(sub if sub in known else child.module)
            elif isinstance(child, ast.Import) and (at_top or not top_level_only):
                found.update(a.name for a in child.names if a.name.split(".")[0] == "raftkit")
            nested = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            visit(child, at_top and not nested)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), True)
    return found


def import_graph(top_level_only: bool) -> dict[str, set[str]]:
    modules = module_names()
    graph = {name: imports_of(path, set(modules), top_level_only) for name, path in modules.items()}
    return {name: {m for m in deps if m in modules and m != name} for name, deps in graph.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path that returns to its start) per strongly connected component of two or more."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan; the package has ~130 modules, far below the recursion limit
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_cycle_in(graph, set(c)) for c in components]


def _cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, for the failure message."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    return [*paths[v], start]
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    return sorted(component)


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


# --------------------------------------------------------------------------- the checks themselves


def test_the_graph_is_read_from_every_module():
    graph = import_graph(top_level_only=False)
    assert {"raftkit", "raftkit.loop", "raftkit.api", "raftkit.sampling.hf_generate"} <= set(graph)
    assert "raftkit.runs.rundir" in graph["raftkit.loop"]  # `from raftkit.runs import rundir`: the module
    assert "raftkit.algorithms" in graph["raftkit.loop"]  # a deferred `from raftkit import algorithms`


def test_no_import_cycles_at_module_scope():
    found = cycles(import_graph(top_level_only=True))
    assert not found, "import cycles at module scope: " + "; ".join(" -> ".join(c) for c in found)


def test_no_import_cycles_even_through_deferred_imports():
    # A cycle hidden by an import inside a function still ties the two modules together: neither can be
    # understood, tested or moved without the other.
    found = cycles(import_graph(top_level_only=False))
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


@pytest.mark.parametrize("layer", LOWER)
def test_lower_layers_do_not_import_the_loop_the_api_or_the_commands(layer):
    graph = import_graph(top_level_only=False)
    assert any(_within(m, (layer,)) for m in graph), f"{layer} is gone: update LOWER"
    upward = sorted(f"{m} imports {d}" for m, deps in graph.items() if _within(m, (layer,))
                    for d in deps if _within(d, UPPER))
    assert not upward, upward


def test_the_reward_layer_stands_on_the_core_alone():
    graph = import_graph(top_level_only=False)
    outward = sorted(f"{m} imports {d}" for m, deps in graph.items() if _within(m, ("raftkit.rewards",))
                     for d in deps if _within(d, REWARDS_MAY_NOT_IMPORT))
    assert not outward, outward


def test_the_checks_catch_what_they_look_for():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []

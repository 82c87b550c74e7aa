"""Each module in its layer: the package's imports (top-level and inside functions, read with
`ast`, so lazy imports count) form no cycle, and no module imports from a layer above its own.

The layers, lowest first, follow the flow of a run: a cell is planned, its data loaded, an
encoder (and text tower, and adaptation) built, a head put on top, trained, run by an executor,
its results ranked, and all of it driven by the command line. A module may import from its own
layer or any layer below. A new module must be given a layer here."""

from __future__ import annotations

import ast
from pathlib import Path

import fer_bench

PKG = Path(fer_bench.__file__).parent

# (layer, module prefixes), lowest first; a module belongs to the longest prefix naming it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundations", ("fer_bench", "fer_bench.errors", "fer_bench.registry",
                     "fer_bench.resources", "fer_bench.classes", "fer_bench.atomic",
                     "fer_bench.locks",
                     # the device and precision rules: the plan resolves a cell's precision
                     # with them, the engine applies them
                     "fer_bench.levers",
                     # strict TOML types and the one error format of every checked file
                     "fer_bench.schema")),
    # BackboneConfig is the preprocessing contract data.transforms reads: it imports nothing
    # of fer-bench, so it sits with the data although its file is under backbones/.
    ("data", ("fer_bench.data", "fer_bench.tensor_cache", "fer_bench.backbones.base")),
    ("models", ("fer_bench.backbones", "fer_bench.text", "fer_bench.adaptation")),
    ("heads", ("fer_bench.heads",)),
    # A cell names backbones, heads and regimes: planning checks and expands those names.
    ("plan", ("fer_bench.plan", "fer_bench.plan_schema")),
    # Metrics and statistics are computed by the engine as it evaluates (results/metrics.py
    # and results/stats.py import only foundations).
    ("train", ("fer_bench.train", "fer_bench.results.metrics", "fer_bench.results.stats")),
    # The result files are written by the runner and the executors.
    ("run", ("fer_bench.run", "fer_bench.executors", "fer_bench.results.store")),
    ("results", ("fer_bench.results",)),
    ("cli", ("fer_bench.cli", "fer_bench.__main__")),
]

# Known violations, each to be deleted when the change that removes it is merged (the test
# fails on an entry that no longer matches, so none outlives its fix).
KNOWN_UPWARD: dict[tuple[str, str], str] = {}
KNOWN_CYCLES: dict[frozenset[str], str] = {}


def _modules() -> dict[str, Path]:
    mods = {}
    for f in PKG.rglob("*.py"):
        parts = f.relative_to(PKG.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return mods


def _targets(mod: str, node: ast.Import | ast.ImportFrom, mods: dict[str, Path]) -> set[str]:
    """The fer_bench modules an import statement loads: `from P import name` is the submodule
    P.name when there is one (the package P is only its parent), else P itself."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in mods}
    base = node.module or ""
    if node.level:
        here = mod.split(".") if mods[mod].name == "__init__.py" else mod.split(".")[:-1]
        here = here[:len(here) - node.level + 1]
        base = ".".join(here + ([node.module] if node.module else []))
    out = set()
    for a in node.names:
        sub = f"{base}.{a.name}"
        out.add(sub if sub in mods else base)
    return out & set(mods)


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    graph = {}
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        deps = set().union(*(_targets(mod, n, mods) for n in ast.walk(tree)
                             if isinstance(n, (ast.Import, ast.ImportFrom))))
        graph[mod] = deps - {mod}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[frozenset[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(frozenset(comp))
    return out


def layer_of(mod: str) -> int | None:
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (mod == p or mod.startswith(p + ".")) and (best is None or len(p) > best[0]):
                best = (len(p), i)
    return None if best is None else best[1]


def test_every_module_has_a_layer() -> None:
    missing = sorted(m for m in import_graph() if layer_of(m) is None)
    assert not missing, f"give these modules a layer in tests/test_layers.py: {missing}"


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    new = [" <-> ".join(sorted(c)) for c in found if c not in KNOWN_CYCLES]
    assert not new, "import cycles (top-level or in-function imports):\n" + "\n".join(new)
    stale = [why for c, why in KNOWN_CYCLES.items() if c not in found]
    assert not stale, f"fixed: delete these KNOWN_CYCLES entries: {stale}"


def test_no_upward_imports() -> None:
    graph = import_graph()
    names = [name for name, _ in LAYERS]
    up = {(a, b) for a, deps in graph.items() for b in deps
          if layer_of(a) is not None and layer_of(b) is not None and layer_of(b) > layer_of(a)}
    new = [f"{a} ({names[layer_of(a)]}) imports {b} ({names[layer_of(b)]})"
           for a, b in sorted(up - set(KNOWN_UPWARD))]
    assert not new, "imports from a higher layer:\n" + "\n".join(new)
    stale = [why for edge, why in KNOWN_UPWARD.items() if edge not in up]
    assert not stale, f"fixed: delete these KNOWN_UPWARD entries: {stale}"


def test_the_checker_sees_lazy_imports_and_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [frozenset({"a", "b", "c"})]
    tree = ast.parse("def f():\n    from .cells import run_job\n")
    mods = {"fer_bench.executors": PKG / "executors" / "__init__.py",
            "fer_bench.executors.cells": PKG / "executors" / "cells.py"}
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom))
    assert _targets("fer_bench.executors", node, mods) == {"fer_bench.executors.cells"}

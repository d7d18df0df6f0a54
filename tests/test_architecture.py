"""The house drawn from the imports: no module of reasoner_ray or serve imports, directly or through others, a
module that imports it back (lazy imports inside functions included), no package does either, and the core imports
nothing outside it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules() -> dict[str, Path]:
    out = {}
    for package in ("reasoner_ray", "serve"):
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the project modules it imports (a `from package import name` counts name's module if it is one)."""
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                if name and name != module:
                    edges[module].add(name)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle():
    assert _cycles(_imports(_modules())) == []


def _package(module: str) -> str:
    """A module's package: reasoner_ray.<package> (a top-level module is its own), or serve."""
    parts = module.split(".")
    return "serve" if parts[0] == "serve" else ".".join(parts[:2])


def test_no_import_circle_between_packages():
    # the house as docs/architecture.md draws it: packages, each importing only those listed beside it
    packages: dict[str, set[str]] = {}
    for module, imported in _imports(_modules()).items():
        own = _package(module)
        packages.setdefault(own, set()).update(_package(m) for m in imported if _package(m) != own)
    assert _cycles({p: {w for w in ws if w in packages} for p, ws in packages.items()}) == []


def test_the_detector_sees_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_core_imports_only_the_core():
    edges = _imports(_modules())
    outside = {m: sorted(t for t in targets if not t.startswith("reasoner_ray.core"))
               for m, targets in edges.items() if m.startswith("reasoner_ray.core")}
    assert {m: t for m, t in outside.items() if t} == {}

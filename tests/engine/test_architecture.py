"""The engine's architecture, as the README's "Architecture" section states it: layered
subpackages, imports only downward, no import cycles, no function-level imports of the engine's
own modules (but the few whose import time is measured, listed below with the reason), and no
subprocess call outside the one runner."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "tools" / "cleanroom" / "src"
PKG = SRC / "cleanroom"

# Bottom to top: a module may import its own layer and the ones before it, never a later one.
LAYERS = ("core", "dockerignore", "variants", "docker", "artifacts", "proto", "verify", "pipeline", "cli")

# (importing module, imported module): imported inside a function on purpose, because the
# importer's start-up is measured (benchmarks/) and the import is needed only on some paths.
LAZY = {
    # `cleanroom proto`'s first run and no-op run (bench_proto) import only what they use:
    # the command line imports each command's modules when that command runs
    **{("cleanroom.cli.app", m): "bench_proto: only the command run is imported" for m in (
        "cleanroom.core.settings", "cleanroom.core.actions", "cleanroom.variants.select",
        "cleanroom.core.git", "cleanroom.artifacts.policy", "cleanroom.core.report",
        "cleanroom.verify.run", "cleanroom.docker.builds",
        "cleanroom.cli.context", "cleanroom.proto.generate", "cleanroom.pipeline.stages",
        "cleanroom.pipeline.baseimage", "cleanroom.proto.migrate", "cleanroom.artifacts.clean",
        "cleanroom.cli.doctor", "cleanroom.cli.daily", "cleanroom.verify.rules")},
    # the proto no-op path never imports the action runner (subprocess, tempfile)
    ("cleanroom.proto.generate", "cleanroom.core.actions"): "bench_proto no-op: no runner import",
}


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def resolve(importer: str, is_pkg: bool, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The engine's modules an import statement loads (a name imported from a package that is a
    module of it counts as that module)."""
    found: list[str] = []
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] == "cleanroom":
                found.append(alias.name)
        return [m for m in found if m in MODULES]
    if node.level:
        base = importer.split(".") if is_pkg else importer.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        mod = ".".join([*base, *([node.module] if node.module else [])])
    else:
        mod = node.module or ""
    if mod.split(".")[0] != "cleanroom":
        return []
    for alias in node.names:
        sub = f"{mod}.{alias.name}"
        found.append(sub if sub in MODULES else mod)
    return [m for m in found if m in MODULES and m != "cleanroom"]


def imports() -> list[tuple[str, str, bool, int]]:
    """(importer, imported, at module level, line) for every import of an engine module."""
    edges = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        top = set()
        for node in tree.body:
            top.add(id(node))
            if isinstance(node, (ast.If, ast.Try)):  # TYPE_CHECKING blocks, fallbacks
                for sub in ast.walk(node):
                    top.add(id(sub))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in resolve(name, path.name == "__init__.py", node):
                    if target != name:
                        edges.append((name, target, id(node) in top, node.lineno))
    return edges


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) < 2 or parts[1] not in LAYERS:
        return len(LAYERS)  # cleanroom, cleanroom.__main__: above everything
    return LAYERS.index(parts[1])


def test_every_module_is_in_a_layer() -> None:
    loose = [m for m in MODULES if m not in ("cleanroom", "cleanroom.__main__") and layer(m) == len(LAYERS)]
    assert loose == [], f"modules outside the layered subpackages: {loose}"


def test_imports_only_go_down() -> None:
    up = [f"{a} (line {line}) imports {b}" for a, b, _, line in imports() if layer(b) > layer(a)]
    assert up == [], "upward imports:\n" + "\n".join(up)


def test_the_package_itself_imports_nothing_at_import_time() -> None:
    eager = [(b, line) for a, b, top, line in imports() if a == "cleanroom" and top]
    assert eager == [], f"cleanroom/__init__.py imports {eager} (its API is lazy: PEP 562)"


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for a, b, _, _ in imports():
        graph[a].add(b)
    # Tarjan's strongly connected components
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert cycles == [], f"import cycles: {cycles}"


def test_no_function_level_imports_of_the_engine_but_the_measured_ones() -> None:
    hidden = [f"{a}:{line} imports {b}" for a, b, top, line in imports()
              if not top and (a, b) not in LAZY and a != "cleanroom"]
    assert hidden == [], "imports inside functions (move them to the top, or list them in LAZY " \
                         "with the benchmark that measures them):\n" + "\n".join(hidden)


def test_the_lazy_list_has_no_stale_entries() -> None:
    lazy = {(a, b) for a, b, top, _ in imports() if not top}
    stale = sorted(set(LAZY) - lazy)
    assert stale == [], f"LAZY lists imports that are not function-level (or gone): {stale}"


def test_no_subprocess_outside_the_runner() -> None:
    """One seam for external commands: cleanroom.core.runner."""
    found = []
    for name, path in MODULES.items():
        if name == "cleanroom.core.runner":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import) and any(a.name == "subprocess" for a in node.names):
                found.append(f"{name}:{node.lineno}")
            elif isinstance(node, ast.ImportFrom) and node.module == "subprocess":
                found.append(f"{name}:{node.lineno}")
    assert found == [], f"subprocess imported outside cleanroom.core.runner: {found}"


@pytest.mark.parametrize("sub", LAYERS)
def test_each_layer_says_what_it_is(sub: str) -> None:
    doc = ast.get_docstring(ast.parse((PKG / sub / "__init__.py").read_text()))
    assert doc, f"cleanroom/{sub}/__init__.py has no docstring"


def test_the_public_api_resolves() -> None:
    """Every name cleanroom/__init__.py offers imports (lazily) and is callable."""
    import subprocess
    import sys

    code = ("import cleanroom, sys; mods = set(sys.modules); "
            "assert not [m for m in mods if m.startswith('cleanroom.')], mods; "
            "[getattr(cleanroom, n) for n in cleanroom.__all__]; "
            "assert all(callable(getattr(cleanroom, n)) for n in cleanroom.__all__ if n != '__version__')")
    p = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(SRC)}, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr

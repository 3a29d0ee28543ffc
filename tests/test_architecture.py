"""The package layering of docs/architecture.md, read from the source: every import
(top-level or inside a function) of every module of ``pysim``, ``hw`` and ``bench``."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import pysim

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pysim", "hw", "bench")

#: layer of each module prefix (longest prefix wins); a module may import only modules
#: of a lower layer, or of its own package
LAYERS = {
    "pysim.errors": 0, "pysim.validate": 0.5, "pysim.files": 0.5,
    "pysim.numerics": 1,
    "pysim.perf": 2,
    "hw": 3,
    "pysim.workload": 3,
    "pysim.accuracy": 4,
    "pysim.cli": 5,
    "pysim": 5,            # the package's __init__: the legacy aliases, resolved lazily
    "bench": 6,
}
#: what each layer may not import even where the rank would allow it (hw and the
#: workloads are siblings: hw uses numerics and perf only)
FORBIDDEN = {"hw": ("pysim.workload", "pysim.accuracy", "pysim.cli"),
             "pysim.workload": ("hw",)}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def imports_of(name: str, path: Path, known) -> set[str]:
    """Project modules imported by ``name`` (relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module
            targets = [stem] + [f"{stem}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            # the longest project module the target names
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and target not in PACKAGES:  # a root __init__
                found.add(target)
    return found


def layer_of(name: str) -> tuple[str, int]:
    prefix = max((p for p in LAYERS if name == p or name.startswith(p + ".")), key=len)
    return prefix, LAYERS[prefix]


@pytest.fixture(scope="module")
def graph():
    modules = project_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def test_the_layers_are_found(graph):
    # the test reads real modules: a renamed package would make it vacuous
    for package in ("pysim.numerics.s2fp8", "pysim.perf.cycles", "pysim.workload.trace",
                    "pysim.accuracy.gemm_error", "pysim.cli", "hw.array", "hw.tb.harness"):
        assert package in graph
    assert "pysim.numerics.formats" in graph["pysim.perf.arch"] | graph["hw.array"]


def test_each_module_imports_only_lower_layers(graph):
    bad = []
    for name, targets in sorted(graph.items()):
        prefix, rank = layer_of(name)
        for target in sorted(targets):
            t_prefix, t_rank = layer_of(target)
            same_package = t_prefix == prefix
            if (not same_package and t_rank >= rank) or any(
                    target == f or target.startswith(f + ".") for f in FORBIDDEN.get(prefix, ())):
                bad.append(f"{name} ({prefix}) imports {target} ({t_prefix})")
    assert not bad, "layering violations:\n" + "\n".join(bad)


def test_no_import_cycle(graph):
    state, stack, cycles = {}, [], []

    def visit(u):
        state[u] = 1
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                cycles.append(stack[stack.index(v):] + [v])
            elif v not in state:
                visit(v)
        stack.pop()
        state[u] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_catches_a_violation(tmp_path):
    # a numerics module importing the CLI must be reported
    fake = ROOT / "pysim" / "numerics" / "fp8.py"
    known = project_modules()
    targets = imports_of("pysim.numerics.fp8", fake, known) | {"pysim.cli"}
    prefix, rank = layer_of("pysim.numerics.fp8")
    assert any(layer_of(t)[1] > rank for t in targets)
    assert layer_of("hw.array")[0] == "hw" and "pysim.workload" in FORBIDDEN["hw"]


@pytest.mark.parametrize("old", sorted(pysim.LEGACY_MODULES))
def test_legacy_module_paths_still_import(old):
    assert importlib.import_module(old) is importlib.import_module(pysim.LEGACY_MODULES[old])


def test_readme_api_imports():
    from pysim import fp8, golden, s2fp8  # noqa: F401
    from pysim.cycles import gemm_cycles
    from hw.array import S2FP8Array  # noqa: F401
    assert gemm_cycles(64, 32, 16, rows=8, cols=8) == gemm_cycles(64, 32, 16, 8, 8)

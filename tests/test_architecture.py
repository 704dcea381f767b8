"""The package's shape, checked from the outside: what listing and validating cost to import, which
package may import which, and where Ray is started. Fast: subprocesses of the CLI and an ``ast`` walk of
the source, no Ray (docs/architecture.md says why each rule exists)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "platform" / "partaware"
HEAVY = ("torch", "timm", "ray")
#: core packages: they are used by the orchestration, never the other way round
CORE = ("encoders", "datasets", "extract", "probes", "report", "lab")
#: package-level import edges that close a cycle, each with why it is there and what removes it
KNOWN_CYCLE_EDGES: dict[tuple[str, str], str] = {}

LISTING = """
import json, sys
from partaware.spec import load_spec
from partaware.encoders.registry import ENCODERS, select_encoders
from partaware.datasets import DATASETS
from partaware.probes.tasks import PROBE_TASKS

load_spec("jobs/quickstart.yaml")
select_encoders(["all"], zoo="paper")
for registry in (ENCODERS, DATASETS, PROBE_TASKS):
    for name in registry.names():
        registry.get(name)
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[1:]))))
"""


def test_validating_and_listing_import_no_torch_timm_or_ray():
    out = subprocess.run(
        [sys.executable, "-c", LISTING, *HEAVY], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(out.stdout) == []


def _imported(importtime_stderr: str) -> set[str]:
    """Top-level names of every module in ``-X importtime`` output (``import time: self | cumulative | name``)."""
    lines = (line.rsplit("|", 1)[-1].strip() for line in importtime_stderr.splitlines() if line.startswith("import"))
    return {name.split(".")[0] for name in lines}


@pytest.mark.parametrize(
    "args",
    [["encoders", "list"], ["weights", "list"], ["validate", "jobs/quickstart.yaml"]],
    ids=["encoders-list", "weights-list", "validate"],
)
def test_cli_listing_and_validation_import_no_torch_timm_or_ray(args, partctl, tmp_path):
    extra = ["--storage", str(tmp_path)] if args[0] in ("encoders", "weights") else []
    out = partctl(*args, *extra, cwd=REPO, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    imported = _imported(out.stderr)
    assert "partaware" in imported  # the profile is really there
    assert imported.isdisjoint(HEAVY), sorted(imported & set(HEAVY))


# --- the static import graph -------------------------------------------------------------------------


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """Nodes under ``if TYPE_CHECKING:`` (never executed: not a dependency)."""
    return {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for child in ast.walk(node)
    }


def _imports(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, at module level or inside a function (lazy imports are dependencies too)."""
    module = _module_name(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _type_checking_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against this module's package
                package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)  # ``from pkg import submodule``


def _unit(module: str) -> str | None:
    """The top-level subpackage or module of ``partaware`` a module belongs to (None: outside, or the root)."""
    parts = module.split(".")
    if parts[0] != "partaware" or len(parts) < 2:
        return None
    unit = parts[1]
    return unit if (PACKAGE / unit).is_dir() or (PACKAGE / f"{unit}.py").exists() else None


def _source_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _graph() -> dict[str, dict[str, set[str]]]:
    """unit -> imported unit -> the files that import it."""
    graph: dict[str, dict[str, set[str]]] = {}
    for path in _source_files():
        src = _unit(_module_name(path))
        for imported in _imports(path):
            dst = _unit(imported)
            if src and dst and dst != src:
                graph.setdefault(src, {}).setdefault(dst, set()).add(str(path.relative_to(PACKAGE)))
    return graph


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_core_packages_never_import_the_orchestration_or_the_cli():
    offenders = [
        f"{path.relative_to(PACKAGE)} imports {imported}"
        for path in _source_files()
        if _unit(_module_name(path)) in CORE
        for imported in _imports(path)
        if _unit(imported) in ("runs", "cli")
    ]
    assert offenders == []


def test_the_package_import_graph_has_no_cycles_beyond_the_known_ones():
    graph = _graph()
    edges = {src: {dst for dst in dsts if (src, dst) not in KNOWN_CYCLE_EDGES} for src, dsts in graph.items()}
    cycles = _cycles(edges)
    detail = [
        f"{src} -> {dst}: {', '.join(sorted(graph[src][dst]))}"
        for cycle in cycles
        for src in cycle
        for dst in sorted(edges.get(src, ()))
        if dst in cycle
    ]
    assert cycles == [], "\n".join(detail)
    stale = [edge for edge in KNOWN_CYCLE_EDGES if edge[1] not in graph.get(edge[0], {})]
    assert stale == [], f"no longer imported: remove from KNOWN_CYCLE_EDGES: {stale}"
    full = {src: set(dsts) for src, dsts in graph.items()}
    unbroken = [edge for edge in KNOWN_CYCLE_EDGES if not any(set(edge) <= set(c) for c in _cycles(full))]
    assert unbroken == [], f"no longer part of a cycle: remove from KNOWN_CYCLE_EDGES: {unbroken}"


def test_only_the_cluster_module_starts_ray():
    calls = [
        str(path.relative_to(PACKAGE))
        for path in _source_files()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "init"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "ray"
    ]
    assert sorted(set(calls)) == ["runs/cluster.py"]

"""The package's import graph: no module imports a higher floor, and nothing imports in a
circle. Imports inside functions count too: a lazy import is still a dependency.

The floors, lowest first (``docs/architecture.md`` says what each owns):
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "bulutfon_pipeline"

#: module prefix -> floor; a module may import its own floor and the floors below.
FLOORS: dict[str, int] = {
    "bulutfon_pipeline.settings": 0,
    "bulutfon_pipeline.jsonio": 0,
    "bulutfon_pipeline.progress": 0,
    "bulutfon_pipeline.faults": 0,
    "bulutfon_pipeline.account_threads": 0,
    "bulutfon_pipeline.grouped_writes": 0,
    "bulutfon_pipeline.stop_signals": 0,
    "bulutfon_pipeline.api": 1,
    "bulutfon_pipeline.accounts": 1,
    "bulutfon_pipeline.normalize": 1,
    "bulutfon_pipeline.warehouse": 2,
    "bulutfon_pipeline.simulator": 2,
    "bulutfon_pipeline.loads": 3,
    "bulutfon_pipeline.load_results": 3,
    "bulutfon_pipeline.detail_spool": 3,
    "bulutfon_pipeline.directory": 3,
    "bulutfon_pipeline.recordings": 3,
    "bulutfon_pipeline.replay": 3,
    "bulutfon_pipeline.versions": 3,
    "bulutfon_pipeline.report": 3,
    "bulutfon_pipeline.webhook": 3,
    "bulutfon_pipeline.webhook.sensor": 6,
    "bulutfon_pipeline.resources": 4,
    "bulutfon_pipeline.executors": 4,
    "bulutfon_pipeline.partitions": 4,
    "bulutfon_pipeline.checks": 4,
    "bulutfon_pipeline.assets": 5,
    "bulutfon_pipeline.schedules": 6,
    "bulutfon_pipeline.definitions": 6,
    "bulutfon_pipeline.runner": 7,
    "bulutfon_pipeline.cli": 8,
}
#: Dagster stays at the edges: these floors never import it.
NO_DAGSTER_BELOW = 4


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _floor(module: str) -> int | None:
    best = None
    for prefix, floor in FLOORS.items():
        if (module == prefix or module.startswith(prefix + ".")) and (
            best is None or len(prefix) > len(best[0])
        ):
            best = (prefix, floor)
    return None if best is None else best[1]


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:`` (annotations only: no import
    happens when the program runs)."""
    nodes: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        nodes.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return nodes


def _imports(path: Path) -> set[str]:
    """Every module of the project (or dagster) that ``path`` imports at run time, at any
    depth (imports inside functions count)."""
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # ``from bulutfon_pipeline import settings`` imports a module, not a name.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith(("bulutfon_pipeline", "dagster")) and name}


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {t for t in _imports(path) if t in modules or t.startswith("dagster")}
        graph[name] = targets
    return graph


def test_every_module_has_a_floor() -> None:
    assert [m for m in _graph() if m != "bulutfon_pipeline" and _floor(m) is None] == []


def test_no_module_imports_a_higher_floor_or_dagster_below_the_edge() -> None:
    upward = []
    for module, targets in _graph().items():
        floor = _floor(module)
        if floor is None:
            continue
        for target in targets:
            if target.startswith("dagster"):
                if floor < NO_DAGSTER_BELOW:
                    upward.append(f"{module} -> {target}")
                continue
            target_floor = _floor(target)
            if target_floor is not None and target_floor > floor:
                upward.append(f"{module} (floor {floor}) -> {target} (floor {target_floor})")
    assert upward == []


def test_the_import_graph_has_no_cycle() -> None:
    graph = {m: {t for t in ts if not t.startswith("dagster")} for m, ts in _graph().items()}

    def parents(module: str) -> set[str]:
        # Importing a.b.c runs a/__init__ and a/b/__init__ first.
        parts = module.split(".")
        return {".".join(parts[:i]) for i in range(1, len(parts))} & graph.keys()

    edges = {m: (ts | set()) - {m} for m, ts in graph.items()}
    # A package's __init__ re-exporting its own modules is not a cycle.
    for module in edges:
        edges[module] = {t for t in edges[module] if module not in parents(t)}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def _warehouse_importers(drivers: tuple[str, ...]) -> set[str]:
    """The ``warehouse/`` modules that import any of ``drivers`` (at any depth)."""
    importers = set()
    for path in (PACKAGE / "warehouse").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(name.split(".")[0] in drivers for name in names):
                importers.add(path.name)
    return importers


def test_only_the_backend_module_of_the_warehouse_imports_duckdb() -> None:
    # duckdb_analytics.py reads the analysts' copy, a DuckDB file by definition (a server
    # warehouse needs no copy: its readers never block a load); duckdb_migrate.py lends
    # the caller's raw connection to the migrations (duckdb-engine); duckdb_connect.py
    # opens the backend's files (its settings, one thread at a time).
    assert _warehouse_importers(("duckdb", "duckdb_engine")) == {
        "duckdb_backend.py",
        "duckdb_connect.py",
        "duckdb_analytics.py",
        "duckdb_migrate.py",
    }


def test_only_the_postgres_backend_imports_psycopg() -> None:
    assert _warehouse_importers(("psycopg", "psycopg2")) == {"postgres_backend.py"}


@pytest.mark.parametrize("limit", [400])
def test_no_module_is_over_the_size_limit(limit: int) -> None:
    # Cohesive units allowed past the limit, each with its reason in docs/architecture.md.
    allowed: set[str] = set(ALLOWED_BIG)
    big = {
        _module_name(p): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > limit
    }
    assert {m for m in big if m not in allowed} == set(), big


#: Modules over 400 lines, until their split lands (see docs/architecture.md).
ALLOWED_BIG: tuple[str, ...] = ()


def test_the_runner_imports_neither_click_nor_rich() -> None:
    # The runner returns typed results; parsing and rendering belong to the CLI.
    offenders = {
        _module_name(path)
        for path in (PACKAGE / "runner").rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in (
            [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        )
        if name.split(".")[0] in ("click", "rich")
    }
    assert offenders == set()

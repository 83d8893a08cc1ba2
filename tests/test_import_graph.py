"""The package's import graph has no cycle: every import counts, at module level, inside functions and under
TYPE_CHECKING alike, since each one is a dependency a reader has to follow."""
import ast
from pathlib import Path

import twingan

PACKAGE_ROOT = Path(twingan.__file__).parent


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (packages by their __init__.py)."""
    modules = {}
    for path in PACKAGE_ROOT.rglob("*.py"):
        parts = ("twingan", *path.relative_to(PACKAGE_ROOT).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_modules(path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``path`` imports: ``import a.b`` -> a.b; ``from a import b`` -> a (its
    __init__ runs) and a.b when b is a submodule."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in modules:
                found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names
                         if f"{node.module}.{alias.name}" in modules)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that returns to its start, or None (depth-first search)."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for child in sorted(graph[node]):
            if state.get(child) == "open":
                return stack[stack.index(child):] + [child]
            if child not in state:
                cycle = visit(child)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_one_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_package_imports_form_no_cycle():
    modules = module_files()
    assert "twingan.losses.terms" in modules and "twingan.training" in modules
    graph = {name: imported_modules(path, modules) - {name} for name, path in modules.items()}
    assert "twingan.training" in graph["twingan.cli.train"] | graph["twingan.demo.run"]  # the walk sees lazy imports
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)

"""The package's modules import each other without a circle (function-level imports included)."""

import ast
from pathlib import Path

import factorkit

SOURCE = Path(factorkit.__file__).parent


def module_graph() -> dict[str, set[str]]:
    graph = {}
    for path in SOURCE.rglob("*.py"):
        name = ".".join(("factorkit", *path.relative_to(SOURCE).with_suffix("").parts)).removesuffix(
            ".__init__"
        )
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("factorkit"):
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names if alias.name.startswith("factorkit")}
        graph[name] = imported
    return graph


def find_cycles(graph: dict[str, set[str]], skip: set[str]) -> list[list[str]]:
    cycles, done, path = [], set(), []

    def visit(name: str) -> None:
        if name in path:
            cycles.append(path[path.index(name) :] + [name])
            return
        if name in done:
            return
        done.add(name)
        path.append(name)
        for other in sorted(graph.get(name, ())):
            if other not in skip:
                visit(other)
        path.pop()

    for name in sorted(graph):
        if name not in skip:
            visit(name)
    return cycles


def test_no_module_imports_itself_through_others():
    graph = module_graph()
    # a package's __init__ re-exports its children; the edges between the modules are what matter
    packages = {
        ".".join(("factorkit", *p.relative_to(SOURCE).parts[:-1])).rstrip(".")
        for p in SOURCE.rglob("__init__.py")
    }
    assert "factorkit.fit.guess_check" in graph and "factorkit.fit.smc" in graph
    assert find_cycles(graph, packages) == []


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph, set()) == [["a", "b", "c", "a"]]

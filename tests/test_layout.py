"""The code's layout: no module imports itself through others, at top level or inside a function."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules that `path` imports anywhere in its text."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & modules - {path.stem}


def test_no_import_cycles():
    paths = {path.stem: path for path in ROOT.glob("*.py")}
    graph = {name: imports(path, set(paths)) for name, path in paths.items()}
    done, cycles = set(), []

    def visit(name: str, stack: list[str]) -> None:
        for other in sorted(graph[name]):
            if other in stack:
                cycles.append(" -> ".join([*stack[stack.index(other) :], other]))
            elif other not in done:
                visit(other, [*stack, other])
        done.add(name)

    for name in sorted(graph):
        if name not in done:
            visit(name, [name])
    assert len(graph) > 30 and "islr" in graph
    assert cycles == []

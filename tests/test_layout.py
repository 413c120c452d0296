"""The code's layout: the core flat at the root, each periphery in a folder, imports one way.

The root holds the core (what a batch and a run pass through) and the command line. The core
never imports a folder; the command modules (islr.py and the commands it registers from the
root) wire the folders to the core. A folder imports the core and the folders below it in
FOLDERS, never one above it, and no folder imports a command module.
"""

import ast
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {"islr", "crossval", "tools"}  # the root modules allowed to import folders
FOLDERS = ["raw", "synthetic", "deploy", "video", "pictures", "web", "bench"]  # lowest first
MAX_ROOT_MODULES = 18


def module_name(path: Path) -> str:
    """`data` for data.py, `video.live` for video/live.py, `video` for video/__init__.py."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    paths = [*ROOT.glob("*.py"), *(p for f in FOLDERS for p in (ROOT / f).glob("*.py"))]
    return {module_name(path): path for path in paths}


def imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules that `path` imports anywhere in its text (function bodies too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from video import live`: the module video.live when there is one, else video
            names = [
                f"{node.module}.{alias.name}"
                if f"{node.module}.{alias.name}" in modules
                else node.module
                for alias in node.names
            ]
        else:
            continue
        found |= {name for name in names if name in modules}
    return found - {module_name(path)}


def layer(module: str) -> tuple[str, int]:
    """("core" | "command" | "folder", rank): the rank orders folders, lowest first."""
    top = module.split(".")[0]
    if top in FOLDERS:
        return "folder", FOLDERS.index(top)
    return ("command" if module in COMMANDS else "core"), -1


def edges_breaking_the_layering(graph: dict[str, set[str]]) -> list[str]:
    broken = []
    for module, imported in graph.items():
        kind, rank = layer(module)
        for other in sorted(imported):
            other_kind, other_rank = layer(other)
            if other_kind == "command" and module != "islr":
                broken.append(f"{module} -> {other} (only islr.py imports a command module)")
            elif kind == "core" and other_kind == "folder":
                broken.append(f"{module} -> {other} (the core imports no folder)")
            elif kind == "folder" and other_kind == "folder" and other_rank > rank:
                broken.append(f"{module} -> {other} (a folder imports only those below it)")
    return broken


def test_the_layering_runs_one_way():
    """No core module imports a folder, no folder one above it, nothing a command module."""
    modules = project_modules()
    graph = {name: imports(path, set(modules)) for name, path in modules.items()}
    assert "video.live" in graph["islr"] and "data" in graph["cache"]  # the walk sees imports
    assert edges_breaking_the_layering(graph) == []


def test_the_layering_check_catches_each_kind_of_upward_edge():
    """The rule itself fails on a core-to-folder, folder-upward and folder-to-command edge."""
    graph = {
        "data": {"video.video"},
        "video.live": {"web.serve", "raw.kaggle", "data"},
        "pictures.show": {"crossval"},
        "islr": {"crossval", "web.serve"},
    }
    assert edges_breaking_the_layering(graph) == [
        "data -> video.video (the core imports no folder)",
        "video.live -> web.serve (a folder imports only those below it)",
        "pictures.show -> crossval (only islr.py imports a command module)",
    ]


def test_no_import_cycles():
    """No module imports itself through others, at top level or inside a function."""
    modules = project_modules()
    graph = {name: imports(path, set(modules)) for name, path in modules.items()}
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
    assert len(graph) > 40 and "islr" in graph
    assert cycles == []


def test_the_root_holds_the_core_and_the_command_line_only():
    """At most 19 modules at the root, and every other module sits in one of FOLDERS."""
    root = sorted(path.stem for path in ROOT.glob("*.py"))
    assert len(root) <= MAX_ROOT_MODULES, root
    folders = sorted(
        path.name for path in ROOT.iterdir() if path.is_dir() and (path / "__init__.py").exists()
    )
    assert folders == sorted(FOLDERS)


def test_each_folder_lists_its_modules_in_its_docstring():
    """A folder's __init__.py docstring names each of its modules, so a reader finds them."""
    for folder in FOLDERS:
        docstring = ast.get_docstring(ast.parse((ROOT / folder / "__init__.py").read_text()))
        assert docstring, folder
        for path in (ROOT / folder).glob("*.py"):
            if path.stem != "__init__":
                assert f"{path.stem}.py" in docstring, (folder, path.name)


def test_the_readme_tree_matches_the_files():
    """README's layout block names each file and folder of the root, and nothing else."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## How the code is laid out")[1].split("```")[1]
    named = {line.split()[0].rstrip("/") for line in block.splitlines() if line[:1].strip()}
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert named == {path.split("/")[0] for path in tracked if not path.startswith(".")}


MAX_BODY_LINES = 60
# models.py keeps each model's forward whole; every other module is held to MAX_BODY_LINES.
LONG_FUNCTIONS_ALLOWED = {"models"}


def long_functions(source: str) -> list[tuple[str, int]]:
    """(name, lines of body) of each function in `source` whose body (its docstring not
    counted) runs past MAX_BODY_LINES."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body[1:] if ast.get_docstring(node) else node.body
            lines = node.end_lineno - body[0].lineno + 1 if body else 0
            if lines > MAX_BODY_LINES:
                found.append((node.name, lines))
    return found


def test_functions_fit_in_a_reader_s_head():
    """No function of the root or of a folder has more than 60 lines of body (its docstring not
    counted), except in models.py."""
    too_long = [
        f"{name}.{function} ({lines} lines)"
        for name, path in sorted(project_modules().items())
        if name not in LONG_FUNCTIONS_ALLOWED
        for function, lines in long_functions(path.read_text())
    ]
    assert too_long == []


def test_the_length_check_counts_the_body_without_its_docstring():
    """A 61-line body is too long, a 60-line one with a docstring and a signature is not."""
    body = "".join(f"    x{i} = {i}\n" for i in range(60))
    fits = f'def fits(\n    a,\n):\n    """Doc\n    string."""\n{body}'
    assert long_functions(fits) == []
    assert long_functions(f"def long():\n{body}    return 1\n") == [("long", 61)]

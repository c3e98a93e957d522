"""The shape of the house, checked on the source: which package imports which, and how big a
module or a function may grow before it needs splitting (or a comment saying why not)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("automl", "tuning", "serving")
#: the one place automl may import tuning: the fit's search stage
SEARCH_CALL = ("automl/fit.py", "_search")
MAX_MODULE_LINES = 350
MAX_FUNCTION_LINES = 80


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imports(path: Path) -> list[tuple[str, str | None]]:
    """(imported top-level package, enclosing function or None) for every import in ``path``."""
    found: list[tuple[str, str | None]] = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            if isinstance(child, ast.Import):
                found.extend((a.name.split(".")[0], function) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.append((child.module.split(".")[0], function))
            visit(child, name)

    visit(ast.parse(path.read_text()), None)
    return found


def test_packages_import_in_one_direction():
    """serving -> automl and tuning -> automl; automl imports tuning only to run the search and
    serving nowhere."""
    wrong = []
    for package in PACKAGES:
        for path in _sources(package):
            rel = path.relative_to(ROOT).as_posix()
            for imported, function in _imports(path):
                if package == "serving" and imported == "tuning":
                    wrong.append(f"{rel} imports tuning")
                if package == "tuning" and imported == "serving":
                    wrong.append(f"{rel} imports serving")
                if package == "automl" and imported == "tuning" and (rel, function) != SEARCH_CALL:
                    wrong.append(f"{rel} imports tuning in {function or 'the module'}")
                # the CLI finds serving's commands (serve, predict) by plugin name, not by import
                if package == "automl" and imported == "serving":
                    wrong.append(f"{rel} imports serving")
    assert not wrong, wrong


def test_the_check_sees_a_wrong_import(tmp_path):
    """The import check reads function-level imports too (a test of the test)."""
    src = tmp_path / "m.py"
    src.write_text("import os\n\ndef f():\n    from tuning.search import run_search\n")
    assert _imports(src) == [("os", None), ("tuning", "f")]


def _long_functions(path: Path) -> list[str]:
    """Functions over the limit whose first lines carry no comment saying why."""
    lines = path.read_text().splitlines()
    out = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            head = "\n".join(lines[node.lineno - 1 : node.lineno + 2])
            if length > MAX_FUNCTION_LINES and "long function:" not in head:
                out.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    return out


@pytest.mark.parametrize("package", PACKAGES)
def test_modules_and_functions_stay_small(package):
    """No module over ~350 lines; no function over 80 lines unless a "long function:" comment
    in its first lines says why."""
    big = [
        f"{p.relative_to(ROOT)} ({n} lines)"
        for p in _sources(package)
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    long = [f for p in _sources(package) for f in _long_functions(p)]
    assert not big and not long, big + long

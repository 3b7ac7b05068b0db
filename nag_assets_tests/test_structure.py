"""The shape the code keeps: short functions, and the method library free of Dagster."""

from __future__ import annotations

import ast
from pathlib import Path

import nag_assets

PACKAGE = Path(nag_assets.__file__).parent
LIMIT = 60


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_no_function_is_over_60_lines() -> None:
    long = [
        f"{p.relative_to(PACKAGE)}:{f.lineno} {f.name} ({f.end_lineno - f.lineno + 1} lines)"
        for p in sorted(PACKAGE.rglob("*.py"))
        for f in _functions(p)
        if f.end_lineno - f.lineno + 1 > LIMIT
    ]
    assert long == []


def test_method_library_and_rankers_import_no_dagster() -> None:
    for folder in ("nag", "rankers", "pipeline"):
        for p in (PACKAGE / folder).rglob("*.py"):
            tree = ast.parse(p.read_text())
            names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
            names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
            assert not [n for n in names if n.split(".")[0] == "dagster"], p

"""The shape the code keeps: short functions, and the method library free of Dagster."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
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


DAGSTER_SIDE = ("defs", "component", "definitions")  # the Dagster layer over the library


def _library_modules() -> list[str]:
    """Every module below the Dagster layer (`__main__` ones run when imported: left out)."""
    names = []
    for p in sorted(PACKAGE.rglob("*.py")):
        parts = p.relative_to(PACKAGE).with_suffix("").parts
        if parts[0] in DAGSTER_SIDE or parts[-1] == "__main__":
            continue
        names.append(".".join(("nag_assets", *parts)).removesuffix(".__init__"))
    return names


IMPORT_EACH = """
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
    if "dagster" in sys.modules:
        sys.exit(f"importing {name} imports dagster")
"""


def test_everything_below_the_dagster_layer_imports_no_dagster_even_transitively() -> None:
    """In a fresh interpreter, each module in turn, dagster looked for after each: the first
    one that pulls it in, however indirectly, is named. One process for all: each module
    alone would pay torch's import (seconds) some 70 times, and finds the same first one."""
    modules = _library_modules()
    assert "nag_assets.storage" in modules and "nag_assets.checks" in modules
    assert not [m for m in modules if m.startswith("nag_assets.defs")]
    path = os.pathsep.join(filter(None, [str(PACKAGE.parent), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_EACH, *modules], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_dagster_layer_reads_no_table() -> None:
    """defs/ wires the steps to Dagster; what a table holds is read below it (pipeline/)."""
    package = Path(__file__).resolve().parents[1] / "nag_assets"
    readers = ("read_parquet", "read_meta", "Footer.read", "pq.", "scan_parquet")
    for path in sorted((package / "defs").glob("*.py")):
        text = path.read_text()
        found = [r for r in readers if r in text]
        assert not found, f"{path.name} reads tables itself: {found}"

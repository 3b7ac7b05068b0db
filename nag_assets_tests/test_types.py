"""mypy over the package ([tool.mypy] in pyproject.toml: basic mode): a report kept clean, so
a wrong type (e.g. a step typed to get a `Backbone` that gets Ray's `BackboneInfo`) shows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import nag_assets

ROOT = Path(nag_assets.__file__).parent.parent

pytestmark = pytest.mark.slow  # a cold run (no .mypy_cache) takes a minute or two


def test_mypy_is_clean() -> None:
    pytest.importorskip("mypy", reason="mypy comes with the dev extra")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "nag_assets"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]

"""Installing a Debian package a test needs (Chromium, Postgres) when it is missing: only as
root with apt-get (the CI); otherwise the test is skipped with the command to run."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def ensure_installed(
    find: Callable[[], T | None],
    packages: tuple[str, ...] | list[str],
    log: Path,
    what: str,
    binary: str,
    missing: type[Exception],
) -> T:
    """`find()`'s answer, installing `packages` first when it finds nothing and we are root.
    Raises `missing` (the caller skips) when installing is impossible."""
    found = find()
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise missing(
            f"{what} is not installed and cannot be installed here (needs root and "
            f"apt-get); install it with: sudo apt-get install -y {' '.join(packages)}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with log.open("a") as out:
        for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *packages]):
            done = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=900)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed (exit {done.returncode}); see {log}")
    found = find()
    if not found:
        raise RuntimeError(f"installed {list(packages)} but found no {binary}; see {log}")
    return found

"""A throwaway Postgres server for the daemon test: Debian's `postgresql` package, a
temporary data folder, loopback only, a free port.

Nothing is downloaded at test time except that package, and only when it is missing and the
tests run as root (CI). The server refuses to run as root, so then initdb and the server run
as the `postgres` user the package creates."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from nag_assets_tests.debian import ensure_installed
from nag_assets_tests.ui.site import free_port

PACKAGES = ("postgresql",)
USER = "dagster"  # the database role (trust auth on loopback: no password)
DB = "dagster"


class PostgresMissing(Exception):
    """Postgres is not installed and cannot be installed here (not root, no apt-get)."""


def find_bindir() -> Path | None:
    """The newest installed server's bin folder (Debian: /usr/lib/postgresql/<major>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_major)
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).resolve().parent if pg_ctl else None


def _major(path: str) -> int:
    version = Path(path).parts[-3]
    return int(version) if version.isdigit() else 0


def ensure_postgres(log: Path) -> Path:
    """The server's bin folder; installs Debian's package first when it is missing and we are
    root (the CI). Raises PostgresMissing when that is impossible."""
    return ensure_installed(
        find_bindir, PACKAGES, log, "the Postgres server", "pg_ctl", PostgresMissing
    )


@dataclass
class Postgres:
    """A running server: where to reach it, and how to stop it."""

    bindir: Path
    folder: Path  # data folder, socket and log
    port: int
    host: str = "127.0.0.1"

    def env(self) -> dict[str, str]:
        """What deploy/dagster.yaml reads (deploy/env.example)."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_DB": DB,
            "DAGSTER_PG_USER": USER,
            "DAGSTER_PG_PASSWORD": "",
        }

    def stop(self) -> None:
        """Fast shutdown; the server's own process group is killed if it will not stop."""
        done = _as_owner(
            [self.bindir / "pg_ctl", "-D", self.folder / "data", "stop", "-m", "fast", "-w"],
            timeout=60,
        )
        pid_file = self.folder / "data" / "postmaster.pid"
        if done.returncode != 0 and pid_file.exists():
            pid = int(pid_file.read_text().split()[0])
            os.killpg(os.getpgid(pid), 9)
        shutil.rmtree(self.folder, ignore_errors=True)


def start_postgres(bindir: Path) -> Postgres:
    """initdb into a fresh temporary folder, start the server on 127.0.0.1:<free port>
    (its unix socket in the same folder), and create the database."""
    folder = Path(tempfile.mkdtemp(prefix="nag-postgres-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    pg = Postgres(bindir, folder, free_port())
    data, log = folder / "data", folder / "server.log"
    _check(_as_owner([bindir / "initdb", "-D", data, "-U", USER, "--auth=trust", "-E", "UTF8"]))
    options = f"-c listen_addresses={pg.host} -p {pg.port} -k {folder} -c fsync=off"
    # pg_ctl starts the server in a session of its own; stop() ends it.
    start = [bindir / "pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "-t", "60", "start"]
    _check(_as_owner(start), log)
    _check(_as_owner([bindir / "createdb", "-h", pg.host, "-p", str(pg.port), "-U", USER, DB]))
    return pg


def _as_owner(cmd: list, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run as the `postgres` user when we are root (the server will not run as root)."""
    cmd = [str(c) for c in cmd]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/")


def _check(done: subprocess.CompletedProcess, log: Path | None = None) -> None:
    if done.returncode != 0:
        tail = log.read_text()[-2000:] if log and log.exists() else ""
        raise RuntimeError(f"{done.args} failed:\n{done.stdout}\n{done.stderr}\n{tail}")

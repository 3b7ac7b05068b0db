"""The deployment of deploy/ started for real on loopback: Postgres, the code server, the
daemon and the webserver, each a process group of its own that the test can kill and restart.

The instance is deploy/dagster.yaml copied into a temporary DAGSTER_HOME; the daemon and the
webserver load deploy/workspace.yaml. The code server serves `nag_assets_tests.daemon.location`
(the project's Definitions plus a hook that slows one named shard)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nag_assets_tests.daemon.postgres import Postgres
from nag_assets_tests.ui.site import CHECKOUT, free_port, graphql

DEPLOY = CHECKOUT / "deploy"
TOP_K = 4
BATCH = 8
SLOW_HOLD_S = 900  # the slow shard's first pass holds this long; the test kills it inside
COMMANDS = {
    "code": [
        "-m",
        "dagster",
        "code-server",
        "start",
        "-m",
        "nag_assets_tests.daemon.location",
        "--location-name",
        "nag_assets",
    ],
    "daemon": ["-m", "dagster._daemon", "run", "-w", str(DEPLOY / "workspace.yaml")],
    "webserver": ["-m", "dagster_webserver", "-w", str(DEPLOY / "workspace.yaml")],
}


@dataclass
class Deployment:
    home: Path  # DAGSTER_HOME
    root: Path  # NAG_ASSETS_ROOT
    model: Path  # NAG_MODEL: a tiny model folder
    logs: Path
    pg: Postgres
    slow_shard: str  # the shard whose backbone pass the code location slows down
    code_port: int = field(default_factory=free_port)
    web_port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def slow_pid_file(self) -> Path:
        """Holds the pid of the run worker extracting the slow shard, once it has started."""
        return self.logs / "slow-shard.pid"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.pg.env())
        env.update(
            DAGSTER_HOME=str(self.home),
            NAG_CODE_SERVER_HOST="127.0.0.1",
            NAG_CODE_SERVER_PORT=str(self.code_port),
            NAG_ASSETS_ROOT=str(self.root),
            NAG_MODEL=str(self.model),
            NAG_PRESET="paper",  # as plain_run, the independent reference, uses
            NAG_TOP_K=str(TOP_K),
            NAG_BATCH_SIZE=str(BATCH),
            NAG_DEVICE="cpu",
            NAG_TEST_SLOW_SHARD=self.slow_shard,
            NAG_TEST_SLOW_SIGNAL=str(self.slow_pid_file),
            NAG_TEST_SLOW_SECONDS=str(SLOW_HOLD_S),
            OMP_NUM_THREADS="1",  # a 3-layer model gains nothing from threads
            PYTHONWARNINGS="ignore",
            PYTHONPATH=str(CHECKOUT),  # the test location lives in the test package
        )
        return env

    def start(self, name: str) -> subprocess.Popen:
        """Start one service in a new session (its children share its process group)."""
        cmd = [sys.executable, *COMMANDS[name]]
        if name == "code":
            cmd += ["-h", "127.0.0.1", "-p", str(self.code_port)]
        if name == "webserver":
            cmd += ["-h", "127.0.0.1", "-p", str(self.web_port)]
        log = (self.logs / f"{name}.log").open("a")
        log.write(f"\n=== {time.strftime('%H:%M:%S')} start: {' '.join(cmd)}\n")
        log.flush()
        self.procs[name] = subprocess.Popen(
            cmd,
            cwd=CHECKOUT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self.procs[name]

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal a service's whole process group, then reap it."""
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        except ProcessLookupError:
            pass

    def stop_all(self) -> None:
        for name in ("webserver", "daemon", "code"):
            self.kill(name, signal.SIGTERM)

    def graphql(self, query: str) -> dict:
        return graphql(f"http://127.0.0.1:{self.web_port}", query)

    def wait_webserver(self, timeout: float = 180) -> None:
        """Until the webserver answers and has loaded the code location from the code server."""
        query = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
        query += "locationOrLoadError { __typename } } } } }"

        def loaded():
            self._alive("webserver")
            try:
                entries = self.graphql(query)["workspaceOrError"]["locationEntries"]
            except OSError:
                return None
            ok = [e for e in entries if e["loadStatus"] == "LOADED"]
            return ok and ok[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation"

        wait_until("the webserver to load the code location", loaded, timeout, self)

    def _alive(self, name: str) -> None:
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{name} exited ({proc.returncode}); see {self.logs}/{name}.log")

    def check_alive(self) -> None:
        for name in list(self.procs):
            self._alive(name)

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def wait_until(
    what: str, check: Callable[[], object], timeout: float, deployment: Deployment | None = None
):
    """check()'s first truthy value, polled every 2 s; a service that died fails at once."""
    deadline = time.monotonic() + timeout
    while True:
        if deployment is not None:
            deployment.check_alive()
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            logs = "" if deployment is None else deployment.log_tail("daemon")
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")
        time.sleep(2)


def new_home(base: Path) -> Path:
    home = base / "dagster_home"
    home.mkdir(parents=True)
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    return home

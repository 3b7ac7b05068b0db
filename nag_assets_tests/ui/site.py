"""A Dagster instance where the whole graph was materialized with a tiny model, and the
Dagster UI (`dagster dev`: webserver + daemon) serving it on loopback.

    python -m nag_assets_tests.ui.site materialize HOME ROOT MODEL   (run by `build_site`)

The graph is materialized in a child process whose environment (NAG_ASSETS_ROOT, NAG_MODEL,
NAG_TOP_K) is the one the UI's code location gets, so both see the same code versions."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
TOP_K = 4
SHARDS = 3
DOCS_PER_SHARD = 30
TARGETS = ("arc_easy", "water")
# Telemetry off; the queued run coordinator (the default) is dequeued by the daemon.
DAGSTER_YAML = "telemetry:\n  enabled: false\n"


@dataclass
class Site:
    home: Path  # DAGSTER_HOME
    root: Path  # NAG_ASSETS_ROOT
    model: Path  # the tiny model folder (NAG_MODEL)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DAGSTER_HOME=str(self.home),
            NAG_ASSETS_ROOT=str(self.root),
            NAG_MODEL=str(self.model),
            NAG_TOP_K=str(TOP_K),
            NAG_PRESET="paper",
            NAG_DEVICE="cpu",
            OMP_NUM_THREADS="1",  # a 3-layer model gains nothing from threads
            PYTHONWARNINGS="ignore",
        )
        return env


def build_site(base: Path, model: Path) -> Site:
    """A fresh instance and root under `base`, with every asset materialized."""
    site = Site(base / "dagster_home", base / "root", model)
    site.home.mkdir(parents=True)
    (site.home / "dagster.yaml").write_text(DAGSTER_YAML)
    cmd = [sys.executable, "-m", "nag_assets_tests.ui.site", "materialize"]
    out = subprocess.run(
        cmd, cwd=CHECKOUT, env=site.env(), capture_output=True, text=True, timeout=300
    )
    if out.returncode != 0:
        raise RuntimeError(f"materializing the graph failed:\n{out.stdout}\n{out.stderr}")
    return site


def _materialize() -> None:
    """In the child: write the root, then drive the graph like the daemons would."""
    import warnings

    warnings.filterwarnings("ignore")
    import dagster as dg
    import torch

    from nag_assets.definitions import defs
    from nag_assets.defs.driver import automation_ticks, sensor_tick
    from nag_assets.sources.wiki import load_wiki_leads
    from nag_assets_tests.defs.helpers import ARC_SPEC, build_root, science_texts

    torch.set_num_threads(1)
    targets = {"arc_easy": ARC_SPEC, "water": science_texts(12)}
    pool = load_wiki_leads(SHARDS * DOCS_PER_SHARD)
    build_root(Path(os.environ["NAG_ASSETS_ROOT"]), pool, SHARDS, DOCS_PER_SHARD, targets)
    with dg.DagsterInstance.get() as instance:
        cursor, _ = automation_ticks(defs, instance)
        _, runs = sensor_tick(defs, instance)
        _, more = automation_ticks(defs, instance, cursor)
    runs += more
    failed = [r for r in runs if not r["success"]]
    if failed:
        raise SystemExit(f"runs failed: {failed}")
    print(json.dumps(runs))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DagsterUI:
    """`dagster dev` on 127.0.0.1:<free port> against the site; a context manager."""

    def __init__(self, site: Site, log: Path):
        self.site = site
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> DagsterUI:
        cmd = [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(self.port)]
        cmd += ["-w", str(CHECKOUT / "workspace.yaml")]
        self._log = self.log.open("w")
        self.proc = subprocess.Popen(
            cmd,
            cwd=CHECKOUT,
            env=self.site.env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its webserver, daemon and code servers end together
        )
        try:
            self._wait_loaded(timeout=180)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(10)
        self._log.close()

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        return graphql(self.url, query, variables)

    def _wait_loaded(self, timeout: float) -> None:
        """Until the webserver answers and the code location has loaded."""
        deadline = time.monotonic() + timeout
        query = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
        query += "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dagster dev exited; see {self.log}")
            try:
                entries = self.graphql(query)["workspaceOrError"]["locationEntries"]
            except (OSError, RuntimeError) as e:
                last = e
            else:
                last = entries
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    errors = [e for e in entries if "message" in (e["locationOrLoadError"] or {})]
                    if errors:
                        raise RuntimeError(f"code location failed to load: {errors}")
                    return
            time.sleep(1)
        raise TimeoutError(f"the Dagster UI did not come up in {timeout}s ({last}); see {self.log}")


if __name__ == "__main__":
    if sys.argv[1:] == ["materialize"]:
        _materialize()
    else:
        raise SystemExit("usage: python -m nag_assets_tests.ui.site materialize")


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    """The `data` of one query to the webserver at `url`; its errors raise."""
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(f"{url}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        out = json.loads(resp.read())
    if out.get("errors"):
        raise RuntimeError(out["errors"])
    return out["data"]

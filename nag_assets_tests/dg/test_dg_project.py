"""The `dg` workflow a team follows, offline: a project made by `create-dagster project`
(no install step), NagSelection found by `dg list components`, scaffolded with `dg scaffold
defs`, `dg check defs` clean, and `dg dev` serving its assets."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from nag_assets_tests.ui.site import free_port

pytestmark = pytest.mark.slow

CHECKOUT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ASSETS = {
    "candidate_shard",
    "mixture_corpus",
    "mixture_preview",
    "selected_mixture",
    "selection_checks",
    "shard_nag",
    "shard_scores",
    "target_dataset",
    "target_nag",
}


def run(project: Path, *args: str, timeout: float = 240) -> str:
    out = subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        cwd=project,
        env=_env(project),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, f"{args} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def _env(project: Path) -> dict[str, str]:
    """This checkout and the project importable without installing either; no network."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(CHECKOUT), str(project / "src")])
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    env["DAGSTER_DG_UPDATE_CHECK_ENABLED"] = "0"
    env["DAGSTER_HOME"] = str(project / ".dagster_home")
    env["NAG_DEVICE"] = "cpu"
    return env


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`create-dagster project team --no-uv-sync`, then `dg scaffold defs` of two selections."""
    base = tmp_path_factory.mktemp("dg")
    run(base, "create-dagster", "project", "team", "--no-uv-sync")
    project = base / "team"
    (project / ".dagster_home").mkdir()
    (project / ".dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    registered = importlib.metadata.entry_points(group="dagster_dg_cli.registry_modules")
    if "nag_assets" not in {e.value for e in registered}:  # this checkout not pip-installed
        pyproject = project / "pyproject.toml"
        text = pyproject.read_text().replace(
            "registry_modules = [", 'registry_modules = [\n    "nag_assets",'
        )
        pyproject.write_text(text)
    for name in ("code_pool", "math_pool"):  # two selections in one code location
        root = base / f"{name}_root"
        for folder in ("targets", "shards"):  # empty: the sensors find nothing to do
            (root / folder).mkdir(parents=True)
        run(project, "dg", "scaffold", "defs", "nag_assets.NagSelection", name, "--root", str(root))
    return project


def test_list_components_finds_nag_selection(project: Path) -> None:
    listed = json.loads(run(project, "dg", "list", "components", "--json"))
    assert "nag_assets.NagSelection" in {c["key"] for c in listed["items"]}


def test_scaffolded_defs_yaml_checks_clean(project: Path) -> None:
    defs_yaml = project / "src" / "team" / "defs" / "code_pool" / "defs.yaml"
    doc = yaml.safe_load(defs_yaml.read_text())
    assert doc["type"] == "nag_assets.NagSelection"
    assert doc["attributes"]["name"] == "code_pool"
    assert doc["attributes"]["storage"]["root"] == str(project.parent / "code_pool_root")
    out = run(project, "dg", "check", "defs")
    assert "All definitions loaded successfully" in out


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ("backbone: {top_k: many}", "top_k"),
        ("mixture: {fraction: 1.5}", "mixture.fraction"),
        ("backbone: {preset: tunned}", "preset"),
    ],
)
def test_check_defs_names_a_bad_setting(project: Path, setting: str, key: str) -> None:
    bad = project / "src" / "team" / "defs" / "bad_pool"
    bad.mkdir()
    (bad / "defs.yaml").write_text(
        f"type: nag_assets.NagSelection\nattributes:\n  name: bad\n  {setting}\n"
    )
    try:
        out = subprocess.run(
            [str(BIN / "dg"), "check", "defs"],
            cwd=project,
            env=_env(project),
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        (bad / "defs.yaml").unlink()
        bad.rmdir()
    assert out.returncode != 0
    assert key in out.stdout + out.stderr and "bad_pool" in out.stdout + out.stderr


def test_dg_dev_serves_both_selections(project: Path) -> None:
    port = free_port()
    log = (project / "dg_dev.log").open("w")
    proc = subprocess.Popen(
        [str(BIN / "dg"), "dev", "--host", "127.0.0.1", "--port", str(port)],
        cwd=project,
        env=_env(project),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # webserver, daemon and code server end with it
    )
    try:
        keys, sensors = _wait_for_assets(f"http://127.0.0.1:{port}", proc, timeout=240)
    finally:
        _stop(proc)
        log.close()
    names = ("code_pool", "math_pool")
    assert keys == {f"{name}/{a}" for name in names for a in ASSETS}
    assert set(sensors) == {f"{n}_{s}" for n in names for s in ("pool_sensor", "nag_automation")}
    for name in names:  # the daemon ticked each pool sensor without an error
        tick = sensors[f"{name}_pool_sensor"]
        assert tick["status"] in ("SKIPPED", "SUCCESS"), (name, tick)


QUERY = """{ assetNodes { assetKey { path } }
  workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError {
    ... on RepositoryLocation { repositories { sensors { name
      sensorState { ticks(limit: 1) { status error { message } } } } } } } } } } }"""


def _wait_for_assets(url: str, proc: subprocess.Popen, timeout: float) -> tuple[set, dict]:
    """Until the webserver lists both selections' assets and the daemon has ticked their pool
    sensors: (asset keys, each sensor's latest tick or None)."""
    query = json.dumps({"query": QUERY}).encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "dg dev exited early; see dg_dev.log"
        try:
            req = urllib.request.Request(
                f"{url}/graphql", query, {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(req, timeout=20) as resp:
                data = json.loads(resp.read())["data"]
        except OSError:
            data = None
        if data and len(data["assetNodes"]) >= 2 * len(ASSETS):
            entries = data["workspaceOrError"]["locationEntries"]
            repos = [r for e in entries for r in e["locationOrLoadError"]["repositories"]]
            ticks = {s["name"]: s["sensorState"]["ticks"] for r in repos for s in r["sensors"]}
            pool_ticks = [t for name, t in ticks.items() if name.endswith("_pool_sensor")]
            if pool_ticks and all(pool_ticks):  # each pool sensor ticked by the daemon
                keys = {"/".join(n["assetKey"]["path"]) for n in data["assetNodes"]}
                return keys, {name: t[0] if t else None for name, t in ticks.items()}
        time.sleep(2)
    raise TimeoutError(f"dg dev did not list the assets and sensor ticks within {timeout}s")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to dg (it shuts its children down), then to its session if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    with contextlib.suppress(ProcessLookupError):  # whatever of its session outlived it
        os.killpg(proc.pid, signal.SIGKILL)

"""Fixtures for the daemon test: Postgres (installed when root), the deployment of deploy/
started on it with a tiny model and an empty storage root, and the instance as the test reads
it. Logs go to `test_artifacts/daemon/` in the checkout (gitignored)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from nag_assets_tests.daemon.postgres import PostgresMissing, ensure_postgres, start_postgres
from nag_assets_tests.daemon.stack import Deployment, new_home
from nag_assets_tests.tiny import save_tiny
from nag_assets_tests.ui.site import CHECKOUT

ARTIFACTS = CHECKOUT / "test_artifacts" / "daemon"
SLOW_SHARD = "wiki-004"  # the shard whose run the test kills mid-extraction


@pytest.fixture(scope="session")
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def postgres_bin(artifacts: Path) -> Path:
    try:
        return ensure_postgres(artifacts / "apt.log")
    except PostgresMissing as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def deployment(
    postgres_bin: Path, artifacts: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """Postgres, then the code server, the daemon and the webserver, over an empty root.
    Everything is stopped at the end, by process group."""
    base = tmp_path_factory.mktemp("daemon")
    root = base / "root"
    for folder in ("targets", "shards"):
        (root / folder).mkdir(parents=True)
    pg = start_postgres(postgres_bin)
    deployment = Deployment(
        new_home(base), root, save_tiny(base / "tiny-llama"), artifacts, pg, SLOW_SHARD
    )
    try:
        with pytest.MonkeyPatch.context() as mp:
            for name, value in pg.env().items():  # what the test's own instance reads
                mp.setenv(name, value)
            deployment.start("code")
            deployment.start("webserver")
            deployment.wait_webserver()  # the code server is up and loaded
            deployment.start("daemon")
            yield deployment
    finally:
        deployment.stop_all()
        if (pg.folder / "server.log").exists():
            shutil.copy(pg.folder / "server.log", artifacts / "postgres.log")
        pg.stop()


@pytest.fixture(scope="module")
def instance(deployment: Deployment) -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.from_config(str(deployment.home)) as inst:
        yield inst

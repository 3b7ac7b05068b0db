"""One real Ray cluster for the session (`ray start --head` on 127.0.0.1, 2 CPUs), started
once: a start costs seconds. Its workers get the test credentials of the S3 server (workers
read storage with their own environment, as on a real cluster) and this checkout on their
path; the driver (this process) connects with the session's own auth token."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

import nag_assets
from nag_assets.executors import ExecutorSettings
from nag_assets.executors.ray import RayExtractor, disconnect, stop_pool
from nag_assets.pipeline.extractor import BackboneSpec
from nag_assets_tests.defs.conftest import tiny_model_dir, wiki_pool  # noqa: F401
from nag_assets_tests.executors.cluster import LocalCluster, auth_env, start_cluster
from nag_assets_tests.s3.conftest import AWS_ENV, s3  # noqa: F401

CLUSTER_CPUS = 2


@pytest.fixture(scope="session")
def ray_env() -> Iterator[dict[str, str]]:
    """The auth token in this process's environment too (the driver needs it to connect)."""
    env = auth_env()
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        yield env


@pytest.fixture(scope="session")
def ray_cluster(ray_env: dict[str, str]) -> Iterator[LocalCluster]:
    checkout = str(Path(nag_assets.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (checkout, os.environ.get("PYTHONPATH")) if p)
    env = {**ray_env, **AWS_ENV, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    cluster = start_cluster(CLUSTER_CPUS, env)
    try:
        yield cluster
    finally:
        disconnect()
        cluster.stop()


def make_extractor(
    cluster: LocalCluster, model_dir: Path, actors: int = 2, **kwargs
) -> RayExtractor:
    settings = ExecutorSettings("ray", cluster.address, actors=actors, **kwargs)
    return RayExtractor(settings, BackboneSpec(str(model_dir), "cpu", None))


@pytest.fixture
def fresh_pool(ray_cluster: LocalCluster) -> Iterator[LocalCluster]:
    """No backbone actor alive before the test (its model loads are its own to count)."""
    stop_pool_on(ray_cluster)
    yield ray_cluster


def stop_pool_on(cluster: LocalCluster) -> None:
    from nag_assets.executors.ray import connect

    connect(cluster.address)
    stop_pool()


@pytest.fixture(scope="session")
def docs(wiki_pool: pl.DataFrame) -> pl.DataFrame:  # noqa: F811
    return wiki_pool.select("id", "text")

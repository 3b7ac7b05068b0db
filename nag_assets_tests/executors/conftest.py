"""Helpers over the session's Ray cluster (`ray_cluster`, in nag_assets_tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from nag_assets.executors import ExecutorSettings
from nag_assets.executors.ray import RayExtractor, stop_pool
from nag_assets.pipeline.extractor import BackboneSpec
from nag_assets_tests.defs.conftest import tiny_model_dir, wiki_pool  # noqa: F401
from nag_assets_tests.executors.cluster import LocalCluster
from nag_assets_tests.s3.conftest import s3  # noqa: F401


def make_extractor(
    cluster: LocalCluster, model_dir: Path, actors: int = 2, **kwargs
) -> RayExtractor:
    settings = ExecutorSettings(
        executor="ray", ray_address=cluster.address, actors=actors, **kwargs
    )
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

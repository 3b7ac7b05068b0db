"""Shared fixtures for the asset-graph tests: a tiny model folder, a Wikipedia pool, roots."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from nag_assets.sources.wiki import load_wiki_leads
from nag_assets_tests.defs.helpers import Graph, build_root
from nag_assets_tests.tiny import save_tiny


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def wiki_pool() -> pl.DataFrame:
    """200 Wikipedia leads: the first ones fill shards, later ones make extra shards."""
    return load_wiki_leads(200)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture
def make_graph(
    tmp_path: Path, tiny_model_dir: Path, wiki_pool: pl.DataFrame, instance: dg.DagsterInstance
) -> Callable[..., Graph]:
    """make_graph(shards=3, docs_per_shard=30, targets=None, selection=None) -> Graph over a
    fresh root (targets default to arc_easy with 20 examples; `selection`: a NagSelection whose
    settings build the graph); nothing materialized yet."""

    def make(selection=None, **kwargs) -> Graph:
        root = build_root(tmp_path / "root", wiki_pool, **kwargs)
        return Graph(root, tiny_model_dir, instance, selection)

    return make

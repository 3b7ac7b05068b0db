"""The whole graph (pool sensor, declarative automation) with the backbone steps on Ray
against the same graph in-process: the same mixture byte for byte, the same stored NAGs and
profiles, the same UI metadata; a rerun with nothing changed does no backbone work."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from nag_assets.definitions import build_defs
from nag_assets.defs.resources import BackboneResource, ExecutorResource, StorageResource
from nag_assets.pipeline.mixture import mixture_digest
from nag_assets_tests.defs.helpers import TOP_K, Graph, build_root, science_texts
from nag_assets_tests.executors.cluster import LocalCluster

pytestmark = pytest.mark.slow

TARGETS = {"water": science_texts(12)}
SHARDS = ["wiki-000", "wiki-001"]
TIMINGS = {"seconds"}  # metadata that may differ between two runs


class ExecutorGraph(Graph):
    """`Graph` with the backbone steps on the given executor."""

    def __init__(self, root: Path, model_dir: Path, instance, executor: ExecutorResource):
        super().__init__(root, model_dir, instance)
        backbone = BackboneResource(model=str(model_dir), top_k=TOP_K, device="cpu")
        self.defs = build_defs(StorageResource(root=str(root)), backbone, executor)


def _files(root: Path, folder: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / folder).glob("*.*"))}


def _run(root: Path, model_dir: Path, executor: ExecutorResource) -> tuple[ExecutorGraph, dict]:
    with dg.DagsterInstance.ephemeral() as instance:
        g = ExecutorGraph(root, model_dir, instance, executor)
        g.step()
        assert g.runs and all(r["success"] for r in g.runs), g.runs
        meta = {
            (asset, p): {k: v for k, v in g.latest_metadata(asset, p).items() if k not in TIMINGS}
            for asset, parts in (("shard_nag", SHARDS), ("target_nag", list(TARGETS)))
            for p in parts
        }
        done = len(g.runs)
        g.step()  # nothing changed: the sensor and automation request nothing new
        assert len(g.runs) == done, g.runs[done:]
    return g, meta


def test_graph_on_ray_gives_the_local_mixture_byte_for_byte(
    ray_cluster: LocalCluster, tmp_path: Path, tiny_model_dir: Path, wiki_pool: pl.DataFrame
) -> None:
    roots = {
        name: build_root(tmp_path / name, wiki_pool, 2, 20, TARGETS) for name in ("local", "ray")
    }
    local, local_meta = _run(roots["local"], tiny_model_dir, ExecutorResource())
    ray_executor = ExecutorResource(executor="ray", ray_address=ray_cluster.address, actors=2)
    on_ray, ray_meta = _run(roots["ray"], tiny_model_dir, ray_executor)
    assert mixture_digest(on_ray.storage) == mixture_digest(local.storage)
    for folder in ("assets/shard_nag", "assets/target_nag", "assets/shard_scores"):
        assert _files(roots["ray"], folder) == _files(roots["local"], folder), folder
    assert ray_meta == local_meta

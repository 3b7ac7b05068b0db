"""`distill: {rerank: X}` with the backbone pass on Ray: the same shard_scores tables, byte for
byte, as in-process."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nag_assets.nag import load_backbone
from nag_assets.pipeline import distilled
from nag_assets.pipeline.layout import SHARD_SCORES, table
from nag_assets.storage import Storage
from nag_assets_tests.executors.cluster import LocalCluster
from nag_assets_tests.executors.conftest import make_extractor
from nag_assets_tests.pipeline.test_distilled_steps import (
    SETTINGS,
    SHARDS,
    TARGETS,
    make_root,
    run_path,
)

pytestmark = pytest.mark.slow


def test_rerank_on_ray_gives_the_in_process_tables(
    fresh_pool: LocalCluster, tiny_model_dir: Path, tmp_path: Path
) -> None:
    backbone = load_backbone(str(tiny_model_dir), device="cpu")
    local = make_root(tmp_path / "local", backbone)
    run_path(local, backbone)
    shutil.copytree(tmp_path / "local", tmp_path / "ray")
    on_ray = Storage(str(tmp_path / "ray"))
    extractor = make_extractor(fresh_pool, tiny_model_dir, actors=1)
    ways = {
        local: distilled.Rerank(0.5, SETTINGS),
        on_ray: distilled.Rerank(0.5, SETTINGS, extractor, backbone=extractor.backbone()),
    }
    for store, how in ways.items():
        for s in SHARDS:
            done = distilled.distilled_scores(store, s, TARGETS, backbone, rerank_with=how)
            assert done.facts["rerank_extracted"] > 0
    for s in SHARDS:
        parts = table(SHARD_SCORES, s)
        assert on_ray.read_bytes(*parts) == local.read_bytes(*parts)
    assert sum(w.chunks for w in extractor.workers()) > 0  # the actors did the reading

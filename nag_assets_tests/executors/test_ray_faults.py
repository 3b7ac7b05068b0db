"""Faults on a real Ray cluster: a worker killed mid-shard (retried, identical table, no
partial output), retries run out (that shard fails alone, named), the cluster going away
(a clear error; a rerun on a live cluster picks up what is missing)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import polars as pl
import psutil
import pytest

from nag_assets.executors import ExecutorError
from nag_assets.nag import load_backbone
from nag_assets.pipeline import shards
from nag_assets.pipeline.common import NagSettings
from nag_assets.storage import Storage
from nag_assets_tests.executors.cluster import LocalCluster, start_cluster
from nag_assets_tests.executors.conftest import make_extractor
from nag_assets_tests.executors.test_ray_extract import write_pool

pytestmark = pytest.mark.slow

SETTINGS = NagSettings(top_k=4, batch_size=8, chunk_rows=5)
FILES = ["long-000.jsonl", "long-001.parquet"]
DOCS = 60  # 12 chunks per file


@pytest.fixture(scope="module")
def reference(
    tmp_path_factory: pytest.TempPathFactory, docs: pl.DataFrame, tiny_model_dir: Path
) -> tuple[Path, dict[str, bytes]]:
    root = write_pool(tmp_path_factory.mktemp("faults-ref"), docs, FILES, per_file=DOCS)
    backbone = load_backbone(str(tiny_model_dir), device="cpu")
    store = Storage(str(root))
    for k in ("long-000", "long-001"):
        shards.shard_nag(store, k, backbone, SETTINGS)
    return root, {k: _out(root, k).read_bytes() for k in ("long-000", "long-001")}


def _out(root: Path, key: str) -> Path:
    return root / "assets/shard_nag" / f"{key}.parquet"


def _pool_copy(reference_root: Path, docs: pl.DataFrame, to: Path) -> Storage:
    write_pool(to, docs, FILES, per_file=DOCS)
    assert (to / "shards/long-000.jsonl").read_bytes() == (
        reference_root / "shards/long-000.jsonl"
    ).read_bytes()
    return Storage(str(to))


def test_worker_killed_mid_shard_is_retried_and_the_table_is_identical(
    ray_cluster: LocalCluster, reference, docs: pl.DataFrame, tiny_model_dir: Path, tmp_path: Path
) -> None:
    ref_root, ref_bytes = reference
    store = _pool_copy(ref_root, docs, tmp_path)
    extractor = make_extractor(ray_cluster, tiny_model_dir, actors=2, max_retries=3)
    backbone = extractor.backbone()
    before = {w.name: w.pid for w in extractor.workers()}
    killed: list[int] = []

    def kill_one_worker(done: int, total: int, tokens: int) -> None:
        if killed:
            return
        assert 0 < done < total  # mid-shard
        victim = psutil.Process(before[sorted(before)[1]])
        victim.kill()
        killed.append(victim.pid)
        assert not _out(tmp_path, "long-000").exists()  # nothing partial is visible

    step = shards.shard_nag(store, "long-000", backbone, SETTINGS, kill_one_worker, extractor)
    assert killed and not step.skipped
    assert _out(tmp_path, "long-000").read_bytes() == ref_bytes["long-000"]
    after = {w.name: w for w in extractor.workers()}
    restarted = [n for n, w in after.items() if w.restarted]
    assert restarted == [sorted(before)[1]] and after[restarted[0]].pid != killed[0]


def test_cluster_going_away_is_a_clear_error_and_a_rerun_picks_up(
    ray_cluster: LocalCluster,
    ray_env: dict[str, str],
    reference,
    docs: pl.DataFrame,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    ref_root, ref_bytes = reference
    store = _pool_copy(ref_root, docs, tmp_path)
    doomed = start_cluster(1, {**ray_env, "OMP_NUM_THREADS": "1"})
    try:
        extractor = make_extractor(doomed, tiny_model_dir, actors=1)
        backbone = extractor.backbone()

        def pull_the_plug(done: int, total: int, tokens: int) -> None:
            if done < total:
                doomed.stop()

        with pytest.raises(ExecutorError) as err:
            shards.shard_nag(store, "long-000", backbone, SETTINGS, pull_the_plug, extractor)
    finally:
        doomed.stop()
    message = str(err.value)
    assert f"the Ray cluster at {doomed.address!r} went away or is out of reach" in message
    assert "long-000.jsonl (partition long-000), chunk " in message
    assert not _out(tmp_path, "long-000").exists()
    # a rerun against a cluster that is up does the shard, identical to in-process
    rerun = make_extractor(ray_cluster, tiny_model_dir, actors=2)
    shards.shard_nag(store, "long-000", rerun.backbone(), SETTINGS, None, rerun)
    assert _out(tmp_path, "long-000").read_bytes() == ref_bytes["long-000"]


class Killer:
    """Kills every worker of the cluster's backbone actors as soon as it appears."""

    def __init__(self, cluster: LocalCluster):
        self.cluster, self.stop, self.kills = cluster, threading.Event(), 0
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.is_set():
            for p in self.cluster.workers():
                try:
                    p.kill()
                    self.kills += 1
                except psutil.NoSuchProcess:
                    pass
            time.sleep(0.05)

    def __enter__(self) -> Killer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def test_retries_exhausted_fail_that_shard_alone_with_its_name(
    ray_cluster: LocalCluster, reference, docs: pl.DataFrame, tiny_model_dir: Path, tmp_path: Path
) -> None:
    ref_root, ref_bytes = reference
    store = _pool_copy(ref_root, docs, tmp_path)
    extractor = make_extractor(ray_cluster, tiny_model_dir, actors=1, max_retries=1)
    # the backbone as the actor would describe it: the actor itself never gets to start
    backbone = load_backbone(str(tiny_model_dir), device="cpu")
    with Killer(ray_cluster) as killer, pytest.raises(ExecutorError) as err:
        shards.shard_nag(store, "long-000", backbone, SETTINGS, None, extractor)
    assert killer.kills >= 2
    message = str(err.value)
    assert "long-000.jsonl (partition long-000), chunk " in message
    assert "died 2 times (max_retries=1)" in message
    assert not _out(tmp_path, "long-000").exists()
    # the next shard (its own run: a new extractor) gets new actors and is not affected
    again = make_extractor(ray_cluster, tiny_model_dir, actors=1, max_retries=1)
    shards.shard_nag(store, "long-001", again.backbone(), SETTINGS, None, again)
    assert _out(tmp_path, "long-001").read_bytes() == ref_bytes["long-001"]
    assert all(w.loads == 1 for w in again.workers())


def test_an_unreachable_cluster_is_named() -> None:
    from nag_assets_tests.executors.cluster import free_port

    address = f"127.0.0.1:{free_port()}"
    extractor = make_extractor(LocalCluster(address, Path("/nonexistent")), Path("unused"))
    with pytest.raises(ExecutorError, match=f"cannot reach the Ray cluster at '{address}'"):
        extractor.backbone()

"""Ray over several nodes on one machine: a head and two worker nodes, each its own `ray
start` with 1 CPU (a worker node also has a custom resource naming it). The actors are spread
over the nodes; a node lost mid-shard (its raylet and every process of it SIGKILLed) costs
only its chunks' work: with room elsewhere the actor restarts there, without room the step
finishes on the actors left, and with no actor left it fails in bounded time naming the node
and the shard. Never a hang. What a user sees: docs/ray_multinode.md."""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest

import nag_assets
from nag_assets.executors import ExecutorError, ExecutorSettings
from nag_assets.executors.ray import RayExtractor, disconnect
from nag_assets.pipeline import shards
from nag_assets.pipeline.extractor import BackboneSpec
from nag_assets_tests.executors.cluster import LocalCluster, Node, start_cluster
from nag_assets_tests.executors.conftest import stop_pool_on
from nag_assets_tests.executors.test_ray_faults import (  # noqa: F401
    SETTINGS,
    _out,
    _pool_copy,
    reference,
)

pytestmark = pytest.mark.slow

# Ray marks a node dead after health_check_failure_threshold missed checks, one every
# health_check_period_ms (5 x 3 s by default); the tests shorten that to 3 x 0.5 s
HEALTH = {
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "3",
}
_names = itertools.count()


@pytest.fixture(scope="module")
def multinode(ray_env: dict[str, str]) -> Iterator[LocalCluster]:
    """A head and two worker nodes, 1 CPU each; the module's own cluster (nodes lost in a
    test are replaced before the next one)."""
    checkout = str(Path(nag_assets.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (checkout, os.environ.get("PYTHONPATH")) if p)
    env = {**ray_env, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **HEALTH}
    cluster = start_cluster(1, env)
    cluster.env = env
    try:
        yield cluster
    finally:
        disconnect()
        cluster.stop()


@pytest.fixture
def cluster(multinode: LocalCluster) -> Iterator[LocalCluster]:
    """The module's cluster with two worker nodes up and no backbone actor."""
    for node in [n for n in multinode.nodes if n.lost]:
        multinode.nodes.remove(node)
        node.remove()
    while len(multinode.nodes) < 2:
        multinode.add_node(1, multinode.env, f"nagnode{next(_names)}")
    stop_pool_on(multinode)
    yield multinode
    stop_pool_on(multinode)


def _extractor(cluster: LocalCluster, model_dir: Path, wait_s: float, **kw) -> RayExtractor:
    settings = ExecutorSettings(executor="ray", ray_address=cluster.address, **kw)
    return RayExtractor(settings, BackboneSpec(str(model_dir), "cpu", None), wait_s)


def _alive() -> set[str]:
    import ray

    return {n["NodeID"] for n in ray.nodes() if n["Alive"]}


def _loser(node: Node, when: list[float]) -> Callable[[int, int, int], None]:
    """A progress hook that loses `node` after the shard's first chunk (mid-shard)."""

    def lose(done: int, total: int, tokens: int) -> None:
        if not when:
            assert 0 < done < total
            node.kill()
            when.append(time.monotonic())

    return lose


def test_actors_are_spread_over_the_nodes(cluster: LocalCluster, tiny_model_dir: Path) -> None:
    """Three actors of a quarter CPU would fit on one node; SPREAD puts one on each."""
    extractor = _extractor(cluster, tiny_model_dir, 30, actors=3, cpus_per_actor=0.25)
    extractor.backbone()
    on = [w.node_id for w in extractor.workers()]
    nodes = {n.node_id() for n in cluster.nodes}
    assert len(on) == 3 and set(on) == _alive() and nodes < set(on)


def test_a_node_lost_mid_shard_with_room_elsewhere_restarts_its_actor_there(
    cluster: LocalCluster,
    reference,  # noqa: F811
    docs: pl.DataFrame,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    """Two actors on three nodes: the lost node's actor restarts on the free one, its chunks
    are redone, the table is byte-identical to the in-process one."""
    ref_root, ref_bytes = reference
    store = _pool_copy(ref_root, docs, tmp_path)
    extractor = _extractor(cluster, tiny_model_dir, 40, actors=2, max_retries=3)
    backbone = extractor.backbone()
    on = {w.name: w.node_id for w in extractor.workers()}
    by_id = {n.node_id(): n for n in cluster.nodes}
    name = next(a for a, node in sorted(on.items()) if node in by_id)  # one on a worker node
    lost: list[float] = []
    hook = _loser(by_id[on[name]], lost)
    step = shards.shard_nag(store, "long-000", backbone, SETTINGS, hook, extractor)
    assert lost and not step.skipped
    assert _out(tmp_path, "long-000").read_bytes() == ref_bytes["long-000"]
    after = {w.name: w for w in extractor.workers()}
    assert set(after) == set(on) and after[name].restarted
    assert after[name].node_id != on[name] and on[name] not in _alive()


def test_a_node_lost_with_no_room_left_finishes_on_the_actors_left(
    cluster: LocalCluster,
    reference,  # noqa: F811
    docs: pl.DataFrame,
    tiny_model_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Three actors fill the three nodes: the lost one cannot restart anywhere; its chunks go
    to the two left, the table is byte-identical, and nothing waits for it past the bound."""
    ref_root, ref_bytes = reference
    store = _pool_copy(ref_root, docs, tmp_path)
    wait_s = 8.0
    extractor = _extractor(cluster, tiny_model_dir, wait_s, actors=3, max_retries=3)
    backbone = extractor.backbone()
    on = {w.name: w.node_id for w in extractor.workers()}
    victim = cluster.nodes[0]
    name = next(a for a, node in on.items() if node == victim.node_id())
    lost: list[float] = []
    with caplog.at_level(logging.WARNING, logger="nag_assets.executors.ray"):
        step = shards.shard_nag(
            store, "long-000", backbone, SETTINGS, _loser(victim, lost), extractor
        )
    assert lost and not step.skipped
    assert _out(tmp_path, "long-000").read_bytes() == ref_bytes["long-000"]
    warned = [r.getMessage() for r in caplog.records if name in r.getMessage()]
    assert warned and victim.node_id() in warned[0] and "long-000.jsonl" in warned[0]
    # the lost actor is left out once the bound has passed, not waited for
    workers = extractor.workers()
    assert sorted(w.name for w in workers) == sorted(set(on) - {name})
    assert time.monotonic() - lost[0] < wait_s + 20


def test_a_node_lost_with_no_actor_left_fails_in_bounded_time_naming_node_and_shard(
    cluster: LocalCluster,
    reference,  # noqa: F811
    docs: pl.DataFrame,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    """The head and one worker node are full (placement groups hold their CPU), so the one
    actor runs on the other node; that node lost, the step fails after the bound, naming the
    node and the shard, and writes nothing."""
    import ray

    ref_root, _ = reference
    store = _pool_copy(ref_root, docs, tmp_path)
    victim, other = cluster.nodes
    fill = [{"CPU": 1.0, "node:__internal_head__": 0.01}, {"CPU": 1.0, other.resource: 0.01}]
    groups = [ray.util.placement_group([b]) for b in fill]
    try:
        ray.get([g.ready() for g in groups], timeout=30)
        wait_s = 8.0
        extractor = _extractor(cluster, tiny_model_dir, wait_s, actors=1, max_retries=3)
        backbone = extractor.backbone()
        assert [w.node_id for w in extractor.workers()] == [victim.node_id()]
        lost: list[float] = []
        with pytest.raises(ExecutorError) as err:
            shards.shard_nag(store, "long-000", backbone, SETTINGS, _loser(victim, lost), extractor)
        took = time.monotonic() - lost[0]
    finally:
        for g in groups:
            ray.util.remove_placement_group(g)
    assert wait_s <= took < wait_s + 20
    message = str(err.value)
    assert "long-000.jsonl (partition long-000), chunk " in message
    assert victim.node_id() in message and f", not back within {wait_s:g} s" in message
    assert not _out(tmp_path, "long-000").exists()

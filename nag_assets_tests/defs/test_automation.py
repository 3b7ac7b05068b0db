"""Declarative automation: what each kind of update makes the conditions request."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl
import pytest

from nag_assets_tests.defs.helpers import Graph, requested, science_texts, write_jsonl

pytestmark = pytest.mark.slow  # graph runs, servers or subprocesses

SHARDS = ["wiki-000", "wiki-001", "wiki-002"]
DOWNSTREAM = ["target_nag", "shard_scores", "selected_mixture"]


@pytest.fixture
def graph(make_graph: Callable[..., Graph]) -> Graph:
    g = make_graph(shards=3, docs_per_shard=20)
    g.step()
    assert all(r["success"] for r in g.runs)
    quiet = g.evaluate_automation()
    assert all(requested(quiet, a) == set() for a in DOWNSTREAM)
    return g


def test_new_target_dataset_requests_its_target_nag(graph: Graph) -> None:
    write_jsonl(graph.root / "targets" / "ice.jsonl", science_texts(6, topic="ice"))
    graph.instance.add_dynamic_partitions("targets", ["ice"])
    graph.materialize("target_dataset", "ice")

    result = graph.evaluate_automation()
    assert requested(result, "target_nag") == {"ice"}
    assert requested(result, "shard_scores") == set()  # waits for the target's NAGs
    assert requested(result, "selected_mixture") == set()


def test_changed_target_dataset_requests_only_its_target_nag(graph: Graph) -> None:
    """An existing partition (not missing), so only the dependency update can request it."""
    write_jsonl(graph.root / "targets" / "ice.jsonl", science_texts(6, topic="ice"))
    graph.instance.add_dynamic_partitions("targets", ["ice"])
    graph.materialize("target_dataset", "ice")
    graph.materialize("target_nag", "ice")
    graph.evaluate_automation()
    write_jsonl(graph.root / "targets" / "ice.jsonl", science_texts(8, topic="ice"))
    graph.materialize("target_dataset", "ice")

    result = graph.evaluate_automation()
    assert requested(result, "target_nag") == {"ice"}
    assert requested(result, "shard_scores") == set()


def test_updated_target_nag_requests_all_scores_then_the_mixture(graph: Graph) -> None:
    write_jsonl(graph.root / "targets" / "ice.jsonl", science_texts(6, topic="ice"))
    graph.instance.add_dynamic_partitions("targets", ["ice"])
    graph.materialize("target_dataset", "ice")
    graph.evaluate_automation()  # requests target_nag[ice], which we run by hand
    graph.materialize("target_nag", "ice")

    result = graph.evaluate_automation()
    assert requested(result, "shard_scores") == set(SHARDS)
    assert requested(result, "target_nag") == set()
    assert requested(result, "selected_mixture") == set()  # not until the scores land
    for shard in SHARDS:
        graph.materialize("shard_scores", shard)

    result = graph.evaluate_automation()
    assert requested(result, "selected_mixture") == {None}
    assert requested(result, "shard_scores") == set()


def test_updated_shard_nag_requests_only_its_scores(graph: Graph) -> None:
    path = graph.root / "shards" / "wiki-001.parquet"
    pl.read_parquet(path).head(12).write_parquet(path)
    graph.materialize("shard_nag", "wiki-001")

    result = graph.evaluate_automation()
    assert requested(result, "shard_scores") == {"wiki-001"}
    assert requested(result, "target_nag") == set()
    assert requested(result, "selected_mixture") == set()
    graph.materialize("shard_scores", "wiki-001")

    result = graph.evaluate_automation()
    assert requested(result, "selected_mixture") == {None}
    assert requested(result, "shard_scores") == set()


def test_nothing_updated_requests_nothing(graph: Graph) -> None:
    for _ in range(2):
        result = graph.evaluate_automation()
        assert all(requested(result, a) == set() for a in DOWNSTREAM)


def test_new_partition_waits_for_its_own_upstream(graph: Graph) -> None:
    """A partition whose same-partition dependency does not exist yet is not requested."""
    graph.instance.add_dynamic_partitions("targets", ["ice"])
    graph.instance.add_dynamic_partitions("shards", ["late"])

    result = graph.evaluate_automation()
    assert requested(result, "target_nag") == set()
    assert requested(result, "shard_scores") == set()

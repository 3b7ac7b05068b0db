"""The whole asset graph, materialized in-process with a tiny model on a temporary root."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from nag_assets.pipeline.mixture import mixture_digest, read_mixture
from nag_assets_tests.defs.helpers import (
    ARC_EXAMPLES,
    ARC_SPEC,
    Graph,
    build_root,
    expected_selection,
    pairs,
    read_scores,
    science_texts,
)

pytestmark = pytest.mark.slow  # graph runs, servers or subprocesses

TARGETS = {"arc_easy": ARC_SPEC, "water": science_texts(12)}
SHARDS = ["wiki-000", "wiki-001", "wiki-002"]


@pytest.fixture(scope="module")
def graph(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, wiki_pool: pl.DataFrame
) -> Iterator[Graph]:
    """Materialized once for the module; the tests below only read it."""
    root = build_root(tmp_path_factory.mktemp("graph") / "root", wiki_pool, targets=TARGETS)
    with dg.DagsterInstance.ephemeral() as instance:
        g = Graph(root, tiny_model_dir, instance)
        g.step()
        yield g


def test_every_run_succeeds_and_covers_the_graph(graph: Graph) -> None:
    assert graph.runs and all(r["success"] for r in graph.runs), graph.runs
    done = {(a, r["partition"]) for r in graph.runs for a in r["assets"]}
    assert {("target_dataset", t) for t in TARGETS} <= done
    assert {("target_nag", t) for t in TARGETS} <= done
    assert {("shard_nag", s) for s in SHARDS} <= done
    assert ("shard_scores", "all") in done
    assert ("selected_mixture", None) in done
    assert graph.partitions("targets") == sorted(TARGETS)
    assert graph.partitions("shards") == SHARDS
    assert (graph.root / "mixture_versions" / "CURRENT.json").is_file()


def test_mixture_equals_independent_selection(graph: Graph) -> None:
    scores = read_scores(graph.root)
    assert sorted(scores["shard"].unique().to_list()) == SHARDS
    assert scores.height == 90 and scores["id"].n_unique() == 90
    mix = read_mixture(graph.storage)
    expected = expected_selection(scores, sorted(TARGETS))
    assert expected, "the budget should admit some documents"
    assert mix.height == len(expected)  # no duplicate (target, id) rows
    assert pairs(mix) == expected
    # every target gets documents, and none beyond its budget
    facts = json.loads((graph.root / "mixture_versions" / "CURRENT.json").read_text())["facts"]
    budget = int(scores["tokens"].sum()) // (5 * len(TARGETS))
    for t in TARGETS:
        mine = mix.filter(pl.col("target") == t)
        assert mine.height > 0
        assert facts["targets"][t]["budget"] == budget
        assert facts["targets"][t]["documents"] == mine.height
        assert facts["targets"][t]["tokens"] == int(mine["tokens"].sum()) <= budget
        assert facts["targets"][t]["cutoff_score"] == pytest.approx(float(mine["score"].min()))


def test_mixture_rows_carry_their_documents(graph: Graph) -> None:
    mix = read_mixture(graph.storage)
    scores = read_scores(graph.root)
    for shard in SHARDS:
        docs = pl.read_parquet(graph.root / "shards" / f"{shard}.parquet")
        text_of = dict(zip(docs["id"].to_list(), docs["text"].to_list()))
        title_of = dict(zip(docs["id"].to_list(), docs["title"].to_list()))
        part = mix.filter(pl.col("shard") == shard)
        for row in part.iter_rows(named=True):
            assert row["text"] == text_of[row["id"]]
            assert row["title"] == title_of[row["id"]]  # extra shard columns are kept
        mine = scores.filter(pl.col("shard") == shard)
        for row in part.iter_rows(named=True):
            stored = mine.filter(pl.col("id") == row["id"]).row(0, named=True)
            assert row["tokens"] == stored["tokens"]
            assert row["score"] == pytest.approx(stored[row["target"]])


def test_asset_checks_pass(graph: Graph) -> None:
    checks = graph.check_evaluations()
    assert checks[("target_nag", "profile_layers_sum_to_one")] == [True] * len(TARGETS)
    assert checks[("selected_mixture", "budget_holds")] == [True]
    assert checks[("mixture_corpus", "rows_point_to_documents")] == [True]


def test_target_nag_metadata(graph: Graph) -> None:
    fingerprints = set()
    for target, examples in [("arc_easy", ARC_EXAMPLES), ("water", len(TARGETS["water"]))]:
        meta = graph.latest_metadata("target_nag", target)
        assert meta["examples"] == examples
        assert meta["examples_extracted"] == examples
        assert meta["skipped_unchanged"] is False
        assert isinstance(meta["nag_fingerprint"], str) and meta["nag_fingerprint"]
        fingerprints.add(meta["nag_fingerprint"])
        assert graph.latest_metadata("target_dataset", target)["examples"] == examples
    assert len(fingerprints) == 1  # one backbone, one set of NAG settings
    mixture = graph.latest_metadata("selected_mixture")
    assert mixture["documents"] == read_mixture(graph.storage).height


def test_rerun_requests_no_work(graph: Graph, extraction_calls: list) -> None:
    digest = mixture_digest(graph.storage)
    sensor_runs, auto_runs = graph.step()
    assert sensor_runs == [] and auto_runs == []
    assert extraction_calls == []
    assert mixture_digest(graph.storage) == digest


def test_fresh_instance_on_same_root_extracts_nothing(
    graph: Graph, tiny_model_dir: Path, extraction_calls: list
) -> None:
    """A new Dagster instance (no history) over outputs that are up to date: every run is
    requested again, but every step finds its output current and skips."""
    digest = mixture_digest(graph.storage)
    with dg.DagsterInstance.ephemeral() as instance:
        fresh = Graph(graph.root, tiny_model_dir, instance)
        fresh.step()
        assert fresh.runs and all(r["success"] for r in fresh.runs)
        assert extraction_calls == []
        for target in TARGETS:
            assert fresh.latest_metadata("target_nag", target)["skipped_unchanged"] is True
        for shard in SHARDS:
            assert fresh.latest_metadata("shard_nag", shard)["documents_extracted"] == 0
        assert fresh.latest_metadata("selected_mixture")["skipped_unchanged"] is True
    assert mixture_digest(graph.storage) == digest


def test_recomputing_from_inputs_is_byte_identical(
    tmp_path: Path, tiny_model_dir: Path, wiki_pool: pl.DataFrame
) -> None:
    """Materialize, wipe every output, materialize again with a fresh instance on the same
    root and inputs: the mixture's files are byte-identical."""
    root = build_root(tmp_path / "root", wiki_pool, targets=TARGETS)
    digests, versions = [], []
    for _ in range(2):
        for output in ("assets", "mixture_versions", "nag_store"):
            shutil.rmtree(root / output, ignore_errors=True)
        (root / "selected_mixture").unlink(missing_ok=True)  # a link to the version in force
        with dg.DagsterInstance.ephemeral() as instance:
            g = Graph(root, tiny_model_dir, instance)
            g.step()
            assert all(r["success"] for r in g.runs)
            assert g.latest_metadata("selected_mixture")["skipped_unchanged"] is False
            digests.append(mixture_digest(g.storage))
            pointer = json.loads((root / "mixture_versions" / "CURRENT.json").read_text())
            versions.append(pointer["version"])
    assert digests[0] == digests[1]
    assert versions[0] == versions[1]
    assert read_mixture(g.storage).height > 0

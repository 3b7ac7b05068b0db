"""Incremental work: the backbone only ever sees texts that are new (counted by wrapping
`nag_assets.pipeline.common.extract_nags`)."""

from __future__ import annotations

import json
from collections.abc import Callable

import polars as pl
import pytest

from nag_assets.pipeline.mixture import read_mixture
from nag_assets.sources.wiki import write_shards
from nag_assets_tests.defs.helpers import (
    ARC_EXAMPLES,
    Graph,
    expected_selection,
    pairs,
    read_scores,
    science_texts,
)

pytestmark = pytest.mark.slow  # graph runs, servers or subprocesses

SHARDS = ["wiki-000", "wiki-001", "wiki-002"]


def _materialized(make_graph: Callable[..., Graph], calls: list[list[str]]) -> Graph:
    g = make_graph(shards=3, docs_per_shard=30)
    g.step()
    assert all(r["success"] for r in g.runs)
    # the initial pass: every target example and every document, each exactly once
    assert sorted(len(c) for c in calls) == sorted([ARC_EXAMPLES, 30, 30, 30])
    shard_texts = set()
    for s in SHARDS:
        shard_texts |= set(pl.read_parquet(g.root / "shards" / f"{s}.parquet")["text"])
    assert set().union(*map(set, calls)) >= shard_texts
    calls.clear()
    return g


def _assets(runs: list[dict]) -> list[tuple[str, str | None]]:
    return [(a, r["partition"]) for r in runs for a in r["assets"]]


def _pointer(g: Graph) -> dict:
    return json.loads((g.root / "mixture_versions" / "CURRENT.json").read_text())


def test_new_target_extracts_only_its_examples(
    make_graph: Callable[..., Graph], extraction_calls: list[list[str]]
) -> None:
    g = _materialized(make_graph, extraction_calls)
    version = _pointer(g)["version"]
    texts = science_texts(7, topic="ice")
    (g.root / "targets" / "ice.jsonl").write_text(
        "".join(json.dumps({"id": f"ice/{i}", "text": t}) + "\n" for i, t in enumerate(texts))
    )

    sensor_runs, auto_runs = g.step()
    assert all(r["success"] for r in sensor_runs + auto_runs)
    # backbone work: exactly the new target's examples, never a shard document
    assert sum(len(c) for c in extraction_calls) == len(texts)
    assert sorted(t for c in extraction_calls for t in c) == sorted(texts)
    assert _assets(sensor_runs) == [("target_dataset", "ice")]
    assert ("target_nag", "ice") in _assets(auto_runs)
    assert not any(a in ("shard_nag", "target_dataset") for a, _ in _assets(auto_runs))
    assert not any(p == "arc_easy" for _, p in _assets(auto_runs))
    # every shard re-scored in one run over the whole partition range
    scoring = [r for r in auto_runs if r["assets"] == ["shard_scores"]]
    assert [r["partition"] for r in scoring] == ["all"]
    tags = g.instance.get_run_by_id(scoring[0]["run_id"]).tags
    assert tags["dagster/asset_partition_range_start"] == SHARDS[0]
    assert tags["dagster/asset_partition_range_end"] == SHARDS[-1]
    assert g.latest_metadata("shard_scores", SHARDS[0])["shards_scored"] == len(SHARDS)
    for s in SHARDS:
        assert g.storage.read_meta("assets/shard_scores", f"{s}.parquet")["targets"] == [
            "arc_easy",
            "ice",
        ]
    # the mixture now selects for both targets, as an independent selection would
    assert ("selected_mixture", None) in _assets(auto_runs)
    assert _pointer(g)["version"] != version
    mix = read_mixture(g.storage)
    assert set(mix["target"].to_list()) == {"arc_easy", "ice"}
    assert pairs(mix) == expected_selection(read_scores(g.root), ["arc_easy", "ice"])
    assert g.latest_metadata("target_nag", "ice")["examples"] == len(texts)


def test_new_shard_extracts_only_its_documents(
    make_graph: Callable[..., Graph],
    wiki_pool: pl.DataFrame,
    extraction_calls: list[list[str]],
) -> None:
    g = _materialized(make_graph, extraction_calls)
    version = _pointer(g)["version"]
    extra = wiki_pool.slice(120, 25)
    write_shards(extra, g.root / "shards", 1, prefix="extra")

    sensor_runs, auto_runs = g.step()
    assert all(r["success"] for r in sensor_runs + auto_runs)
    assert [len(c) for c in extraction_calls] == [extra.height]
    assert sorted(extraction_calls[0]) == sorted(extra["text"].to_list())
    assert _assets(sensor_runs) == [("shard_nag", "extra-000")]
    # only the new shard is scored; the other shards' scores are untouched
    assert ("shard_scores", "extra-000") in _assets(auto_runs)
    assert not any(a == "shard_scores" and p != "extra-000" for a, p in _assets(auto_runs))
    assert not any(a in ("target_nag", "shard_nag") for a, _ in _assets(auto_runs))
    assert ("selected_mixture", None) in _assets(auto_runs)
    assert _pointer(g)["version"] != version
    assert set(_pointer(g)["facts"]["shards"]) == {*SHARDS, "extra-000"}
    mix = read_mixture(g.storage)
    assert pairs(mix) == expected_selection(read_scores(g.root), ["arc_easy"])


def test_unchanged_pool_extracts_nothing(
    make_graph: Callable[..., Graph], extraction_calls: list[list[str]]
) -> None:
    g = _materialized(make_graph, extraction_calls)
    version = _pointer(g)["version"]
    for _ in range(2):
        assert g.step() == ([], [])
    assert extraction_calls == []
    assert _pointer(g)["version"] == version

"""Bad inputs through the real graph: each fails only its own partition, with a message naming
the file (and the spot); the good targets and shards go on to a mixture that lists what it
left out."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from nag_assets.definitions import build_defs
from nag_assets.defs.resources import BackboneResource, StorageResource
from nag_assets.pipeline.mixture import read_mixture
from nag_assets_tests.defs.helpers import Graph, build_root, science_texts
from nag_assets_tests.faults.helpers import failure_text

pytestmark = pytest.mark.slow  # graph runs, servers or subprocesses

GOOD_SHARDS = ["wiki-000", "wiki-001"]
BAD_TARGETS = {
    "few": "target 'few' (few.jsonl): 3 usable examples, at least 5 needed",
    "nope": "nope.json: unknown benchmark",
}
BAD_SHARDS = {
    "cut": "cut.parquet: not a readable parquet file",
    "notjson": "notjson.jsonl: line 2 is not valid JSON (Expecting ',' delimiter, column 14)",
    "short-gz": "short-gz.jsonl.gz: gzip data is corrupt or ends early",
    "notext": "notext.parquet: no `text` column (columns: ['id', 'body'])",
    "nulltext": "nulltext.jsonl: line 2, field `text` is null",
    "numtext": "numtext.jsonl: line 1, field `text` is a number, not a string",
    "empty": "empty.jsonl: the shard holds no documents",
    "dups": "dups.jsonl: id 'x' appears more than once (line 1, line 3)",
    "latin1": "latin1.jsonl: line 1 is not valid UTF-8 (byte 0xe9 at byte 14)",
}


def _bad_files(root: Path) -> None:
    shards = root / "shards"
    good = (shards / "wiki-000.parquet").read_bytes()
    (shards / "cut.parquet").write_bytes(good[: len(good) // 2])
    (shards / "notjson.jsonl").write_bytes(b'{"text": "a"}\n{"text": "b" "c"}\n')
    (shards / "short-gz.jsonl.gz").write_bytes(gzip.compress(b'{"text": "abc"}\n' * 50)[:-12])
    pl.DataFrame({"id": ["a"], "body": ["no text here"]}).write_parquet(shards / "notext.parquet")
    (shards / "nulltext.jsonl").write_text('{"text": "fine"}\n{"text": null}\n')
    (shards / "numtext.jsonl").write_text('{"text": 12}\n')
    (shards / "empty.jsonl").write_text("\n")
    (shards / "dups.jsonl").write_text(
        "".join(json.dumps({"id": i, "text": f"t {n}"}) + "\n" for n, i in enumerate("xyx"))
    )
    (shards / "latin1.jsonl").write_bytes(b'{"text": "caf\xe9"}\n')
    (root / "targets" / "few.jsonl").write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in science_texts(3, "ice"))
    )
    (root / "targets" / "nope.json").write_text(json.dumps({"benchmark": "no_such_benchmark"}))


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, wiki_pool: pl.DataFrame):
    root = build_root(
        tmp_path_factory.mktemp("bad") / "root",
        wiki_pool,
        shards=2,
        docs_per_shard=20,
        targets={"water": science_texts(12)},
    )
    _bad_files(root)
    with dg.DagsterInstance.ephemeral() as instance:
        g = Graph(root, tiny_model_dir, instance)
        g.step()
        yield g


def _runs(graph: Graph, asset: str) -> dict:
    return {r["partition"]: r for r in graph.runs if r["assets"] == [asset]}


def test_each_bad_input_fails_only_its_partition_and_says_why(graph: Graph) -> None:
    for asset, bad, good in [
        ("target_dataset", BAD_TARGETS, ["water"]),
        ("shard_nag", BAD_SHARDS, GOOD_SHARDS),
    ]:
        runs = _runs(graph, asset)
        assert sorted(runs) == sorted([*bad, *good])
        for key in good:
            assert runs[key]["success"], (asset, key)
        for key, message in bad.items():
            assert not runs[key]["success"], (asset, key)
            text = failure_text(graph.instance, runs[key]["run_id"])
            assert message in text, (key, text)


def test_the_good_ones_reach_the_mixture_which_lists_what_it_left_out(graph: Graph) -> None:
    assert _runs(graph, "target_nag")["water"]["success"]
    assert set(_runs(graph, "target_nag")) == {"water"}  # bad targets never got this far
    mix = read_mixture(graph.storage)
    assert set(mix["shard"]) == set(GOOD_SHARDS) and set(mix["target"]) == {"water"}
    facts = json.loads((graph.root / "mixture_versions/CURRENT.json").read_text())["facts"]
    assert sorted(facts["shards"]) == GOOD_SHARDS
    assert sorted(facts["shards_left_out"]) == sorted(BAD_SHARDS)
    assert all("its file is bad" in why for why in facts["shards_left_out"].values())
    assert sorted(facts["targets_left_out"]) == sorted(BAD_TARGETS)
    mixture_runs = [r for r in graph.runs if r["assets"] == ["selected_mixture"]]
    assert mixture_runs and all(r["success"] for r in mixture_runs)


def test_budget_fraction_outside_zero_one_fails_the_preview_run(graph: Graph) -> None:
    """The spec refuses it when the definitions load (tests/test_settings.py); a preview asked
    for with it fails its run, naming the setting, and the selection in force stays."""
    before = graph.storage.read_bytes("mixture_versions/CURRENT.json")
    result = dg.materialize(
        assets=list(graph.defs.assets or []),
        selection=[dg.AssetKey("mixture_preview")],
        instance=graph.instance,
        resources=graph.defs.resources,
        run_config={"ops": {"mixture_preview": {"config": {"fraction": 1.5}}}},
        raise_on_error=False,
    )
    assert not result.success
    failure = failure_text(graph.instance, result.run_id)
    assert "mixture.fraction: budget fraction 1.5 must be in (0, 1]" in failure
    assert graph.storage.read_bytes("mixture_versions/CURRENT.json") == before


def test_no_targets_and_no_shards_the_mixture_says_so(tmp_path: Path, tiny_model_dir) -> None:
    defs = build_defs(
        StorageResource(root=str(tmp_path)), BackboneResource(model=str(tiny_model_dir))
    )
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            assets=list(defs.assets or []),
            selection=[dg.AssetKey("selected_mixture")],
            instance=instance,
            resources=defs.resources,
            raise_on_error=False,
        )
        assert "no targets: add a target file under" in failure_text(instance, result.run_id)
        instance.add_dynamic_partitions("targets", ["water"])
        result = dg.materialize(
            assets=list(defs.assets or []),
            selection=[dg.AssetKey("selected_mixture")],
            instance=instance,
            resources=defs.resources,
            raise_on_error=False,
        )
        assert "no shards: add parquet or JSONL files under" in failure_text(
            instance, result.run_id
        )


def test_a_backbone_that_cannot_load_fails_with_its_name(tmp_path: Path) -> None:
    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / "water.jsonl").write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in science_texts(6))
    )
    defs = build_defs(StorageResource(root=str(tmp_path)), BackboneResource(model="/no/such/model"))
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("targets", ["water"])
        result = dg.materialize(
            assets=list(defs.assets or []),
            selection=[dg.AssetKey("target_dataset")],
            partition_key="water",
            instance=instance,
            resources=defs.resources,
            raise_on_error=False,
        )
        assert "cannot load backbone '/no/such/model': no such folder" in failure_text(
            instance, result.run_id
        )


def test_one_run_over_all_shards_scores_the_good_ones_and_names_the_bad(graph: Graph) -> None:
    """The single-run backfill of shard_scores (all shards in one run) is not failed by a bad
    shard: the good ones are scored, the bad ones are named in the run's metadata."""
    keys = graph.instance.get_dynamic_partitions("shards")
    result = dg.materialize(
        assets=list(graph.defs.assets or []),
        selection=[dg.AssetKey("shard_scores")],
        instance=graph.instance,
        resources=graph.defs.resources,
        tags={
            "dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-1],
        },
    )
    assert result.success
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert sorted(meta["shards_failed"].value) == sorted(BAD_SHARDS)
    assert meta["shards_scored"].value + meta["shards_unchanged"].value == len(GOOD_SHARDS)
    assert all("shard_nag" in why for why in meta["shards_failed"].value.values())

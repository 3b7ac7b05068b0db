"""Two NagSelection instances in one code location and one Dagster instance, built from their
YAML: different roots, backbones and budgets, materialized side by side with tiny models, with
no shared asset key, partition set, sensor, cursor or pool."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from nag_assets.component import NagSelection
from nag_assets.defs.driver import automation_ticks, sensor_tick
from nag_assets.pipeline.mixture import read_mixture
from nag_assets.sources.wiki import write_shards
from nag_assets.storage import Storage
from nag_assets_tests.defs.helpers import (
    build_root,
    expected_selection,
    pairs,
    read_scores,
    science_texts,
)
from nag_assets_tests.tiny import save_tiny

pytestmark = pytest.mark.slow  # graph runs, servers or subprocesses

YAML = """
name: {name}
storage:
  root: {root}
backbone:
  model: {model}
  top_k: {top_k}
  max_tokens: {max_tokens}
mixture:
  fraction: {fraction}
"""
SETTINGS = {
    "code": {"top_k": 4, "max_tokens": 120, "fraction": 0.2, "topic": "loops"},
    "math": {"top_k": 3, "max_tokens": 60, "fraction": 0.3, "topic": "primes"},
}


class Selection:
    """One selection's root and its own pool sensor and automation cursors."""

    def __init__(self, name: str, root: Path, component: NagSelection):
        self.name, self.root, self.component = name, root, component
        self.sensor_cursor: str | None = None
        self.auto_cursor = None
        self.runs: list[dict] = []

    def step(self, defs: dg.Definitions, instance: dg.DagsterInstance) -> list[dict]:
        self.sensor_cursor, runs = sensor_tick(
            defs, instance, self.sensor_cursor, sensor=f"{self.name}_pool_sensor"
        )
        self.auto_cursor, more = automation_ticks(
            defs, instance, self.auto_cursor, sensor=f"{self.name}_nag_automation"
        )
        self.runs += runs + more
        return runs + more


@pytest.fixture(scope="module")
def side_by_side(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, wiki_pool: pl.DataFrame
) -> Iterator[tuple[dg.Definitions, dg.DagsterInstance, dict[str, Selection]]]:
    base = tmp_path_factory.mktemp("selections")
    models = {"code": tiny_model_dir, "math": save_tiny(base / "tiny-gpt2", "gpt2", seed=1)}
    pools = {"code": wiki_pool.head(60), "math": wiki_pool.slice(60, 40)}
    selections = {}
    for name, s in SETTINGS.items():
        root = build_root(
            base / name, pools[name], 2, 30, {s["topic"]: science_texts(8, s["topic"])}
        )
        text = YAML.format(name=name, root=root, model=models[name], **s)
        selections[name] = Selection(name, root, NagSelection.resolve_from_yaml(text))
    defs = dg.Definitions.merge(*(s.component.definitions() for s in selections.values()))
    with dg.DagsterInstance.ephemeral() as instance:
        for s in selections.values():  # cursors established before any change, as the daemon
            s.auto_cursor, _ = automation_ticks(defs, instance, sensor=f"{s.name}_nag_automation")
        for s in selections.values():
            s.step(defs, instance)
        yield defs, instance, selections


def test_both_materialize_only_their_own_assets(side_by_side) -> None:
    _, _, selections = side_by_side
    for name, s in selections.items():
        assert s.runs and all(r["success"] for r in s.runs), s.runs
        touched = {a for r in s.runs for a in r["assets"]}
        assert {a.split("/")[0] for a in touched} == {name}
        assert f"{name}/selected_mixture" in touched


def test_partition_sets_are_separate(side_by_side) -> None:
    _, instance, selections = side_by_side
    for name, s in selections.items():
        assert instance.get_dynamic_partitions(f"{name}_targets") == [SETTINGS[name]["topic"]]
        shards = sorted(p.stem for p in (s.root / "shards").glob("*.parquet"))
        assert sorted(instance.get_dynamic_partitions(f"{name}_shards")) == shards
    assert instance.get_dynamic_partitions("targets") == []
    assert instance.get_dynamic_partitions("shards") == []


def test_each_root_selected_with_its_own_backbone_and_budget(side_by_side) -> None:
    _, _, selections = side_by_side
    for name, s in selections.items():
        settings = SETTINGS[name]
        for shard in (s.root / "shards").glob("*.parquet"):
            meta = Storage(str(s.root)).read_meta("assets/shard_nag", shard.name)
            assert (meta["top_k"], meta["max_tokens"]) == (
                settings["top_k"],
                settings["max_tokens"],
            )
        want = expected_selection(read_scores(s.root), [settings["topic"]], settings["fraction"])
        assert pairs(read_mixture(Storage(str(s.root)))) == want


def test_lineage_stays_within_a_selection(side_by_side) -> None:
    defs, _, _ = side_by_side
    graph = defs.resolve_asset_graph()
    for name in SETTINGS:
        mixture = dg.AssetKey([name, "selected_mixture"])
        upstream = dg.AssetSelection.assets(mixture).upstream().resolve(graph)
        upstream |= graph.get(dg.AssetKey([name, "shard_nag"])).parent_keys  # the observed file
        assert len(upstream) == 6 and {k.path[0] for k in upstream} == {name}
        assert {graph.get(k).group_name.split("_")[0] for k in upstream} == {name}


def test_pools_and_code_versions_follow_each_config(side_by_side) -> None:
    defs, _, selections = side_by_side
    graph = defs.resolve_asset_graph()
    versions = {}
    for name, s in selections.items():
        node = graph.get(dg.AssetKey([name, "shard_nag"]))
        assert node.pools == {f"{name}_backbone"}
        assert node.code_version.endswith(s.component.backbone_resource().code_version())
        versions[name] = node.code_version
    assert versions["code"] != versions["math"]


def test_a_new_file_wakes_only_its_own_selection(side_by_side, wiki_pool) -> None:
    defs, instance, selections = side_by_side
    code, math = selections["code"], selections["math"]
    before = json.loads(code.sensor_cursor)
    write_shards(wiki_pool.slice(150, 10), math.root / "extra", 1)
    (math.root / "extra" / "wiki-000.parquet").rename(math.root / "shards" / "extra-000.parquet")
    assert code.step(defs, instance) == []
    assert json.loads(code.sensor_cursor) == before
    runs = math.step(defs, instance)
    assert all(r["success"] for r in runs)
    assert ("math/shard_nag", "extra-000") in {
        (a, r["partition"]) for r in runs for a in r["assets"]
    }
    assert "extra-000" in instance.get_dynamic_partitions("math_shards")
    assert "extra-000" not in instance.get_dynamic_partitions("code_shards")

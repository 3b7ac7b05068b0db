"""`scorer: distilled` in the graph: the backbone reads only the hashed sample of each shard
(never shard_nag), a new shard adds only its own sample's pass, a new target trains only its
own scorer and runs no backbone over shards, and the default graph is unchanged."""

from __future__ import annotations

import hashlib

import dagster as dg
import polars as pl
import pytest

from nag_assets.component import NagSelection
from nag_assets.pipeline.mixture import read_mixture
from nag_assets.settings import DistilledScorerSettings as DistillConfig
from nag_assets.settings import SelectionSettings
from nag_assets.sources.files import InputError
from nag_assets_tests.defs.helpers import (
    Graph,
    expected_selection,
    pairs,
    read_scores,
    science_texts,
    write_jsonl,
)

FRACTION, SEED = 0.5, 3
DISTILLED = NagSelection(
    name="", scorer="distilled", distill=DistillConfig(sample_fraction=FRACTION, sample_seed=SEED)
)


def in_sample(shard: str, doc_id: str) -> bool:
    """The draw, from its definition: blake2b-64 of (seed, shard, id), its top 53 bits."""
    h = hashlib.blake2b(f"{SEED}\0{shard}\0{doc_id}".encode(), digest_size=8).digest()
    return (int.from_bytes(h, "little") >> 11) / 2**53 < FRACTION


def sampled_texts(g: Graph, shard: str) -> list[str]:
    docs = pl.read_parquet(g.root / "shards" / f"{shard}.parquet")
    return [t for i, t in zip(docs["id"], docs["text"]) if in_sample(shard, i)]


def target_texts(g: Graph, target: str) -> list[str]:
    return pl.read_parquet(g.root / "assets" / "target_dataset" / f"{target}.parquet")["text"]


def extracted(calls: list[list[str]]) -> list[str]:
    return sorted(t for call in calls for t in call)


def materializations(g: Graph, asset: str, partition: str) -> int:
    return len(
        g.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]),
            limit=100,
        ).records
    )


@pytest.fixture
def graph(make_graph, extraction_calls: list) -> Graph:
    g = make_graph(selection=DISTILLED)
    g.step()
    return g


@pytest.mark.slow
def test_the_backbone_reads_targets_and_the_sample_only(graph: Graph, extraction_calls) -> None:
    shards = graph.partitions("shards")
    expected = list(target_texts(graph, "arc_easy"))
    expected += [t for s in shards for t in sampled_texts(graph, s)]
    assert 20 < len(expected) - 20 < 70  # about half of the 90 documents
    assert extracted(extraction_calls) == sorted(expected)
    assert not (graph.root / "assets" / "shard_nag").exists()
    # the mixture is the budgeted selection over the distilled shard_scores tables
    scores = read_scores(graph.root)
    assert sorted(set(scores["shard"])) == shards
    assert pairs(read_mixture(graph.storage)) == expected_selection(scores, ["arc_easy"])
    meta = graph.latest_metadata("selected_mixture")
    assert meta["scorer"] == "distilled" and "distilled_scorer" in meta["inputs"]
    assert graph.check_evaluations()[("selected_mixture", "budget_holds")] == [True]


@pytest.mark.slow
def test_a_new_shard_adds_only_its_own_sample(graph: Graph, wiki_pool, extraction_calls) -> None:
    extraction_calls.clear()
    wiki_pool.slice(150, 30).write_parquet(graph.root / "shards" / "extra.parquet")
    graph.step()
    assert extracted(extraction_calls) == sorted(sampled_texts(graph, "extra"))
    assert materializations(graph, "shard_scores", "extra") == 1
    # every shard, the new one too, scored by the scorers retrained on the larger sample
    versions = graph.latest_metadata("selected_mixture")["input_versions"]
    assert sorted(versions["shard_scores_file"]) == graph.partitions("shards")
    scores = read_scores(graph.root)
    assert pairs(read_mixture(graph.storage)) == expected_selection(scores, ["arc_easy"])
    assert not (graph.root / "assets" / "shard_nag").exists()


@pytest.mark.slow
def test_a_shard_outside_sample_shards_needs_no_backbone_and_no_retraining(
    make_graph, wiki_pool, extraction_calls
) -> None:
    frozen = DistillConfig(sample_fraction=FRACTION, sample_seed=SEED, sample_shards=["wiki-*"])
    g = make_graph(selection=NagSelection(name="", scorer="distilled", distill=frozen))
    g.step()
    extraction_calls.clear()
    wiki_pool.slice(150, 30).write_parquet(g.root / "shards" / "extra.parquet")
    sensor_runs, _ = g.step()
    assert extraction_calls == []  # neither its sample nor anything else reaches the backbone
    assert [r["assets"] for r in sensor_runs] == [["shard_scores"]]
    assert materializations(g, "distill_sample", "extra") == 0
    assert materializations(g, "distilled_scorer", "arc_easy") == 1  # not retrained
    assert materializations(g, "shard_scores", "extra") == 1
    assert materializations(g, "shard_scores", "wiki-000") == 1  # the old tables stand
    scores = read_scores(g.root)
    assert sorted(set(scores["shard"])) == g.partitions("shards")
    assert pairs(read_mixture(g.storage)) == expected_selection(scores, ["arc_easy"])


@pytest.mark.slow
def test_rerank_reads_each_shards_top_share_only_and_selects_from_exact_scores(
    make_graph, extraction_calls
) -> None:
    rerank = DistillConfig(sample_fraction=FRACTION, sample_seed=SEED, rerank=0.3)
    g = make_graph(selection=NagSelection(name="", scorer="distilled", distill=rerank))
    node = g.defs.resolve_asset_graph().get(dg.AssetKey("shard_scores"))
    assert node.pools == {"backbone"}  # it runs the backbone now, in its pool
    g.step()
    scores = read_scores(g.root)
    exact = scores.filter(pl.col("arc_easy") >= 0)
    for s in g.partitions("shards"):  # the top 30% of each shard's 30 documents: 9
        assert exact.filter(pl.col("shard") == s).height == 9
    # the backbone read the targets, the sample and the candidates outside it, once each
    sample = [t for s in g.partitions("shards") for t in sampled_texts(g, s)]
    docs = pl.concat(
        [pl.read_parquet(g.root / "shards" / f"{s}.parquet").with_columns(shard=pl.lit(s))
         for s in g.partitions("shards")]
    )  # fmt: skip
    top = exact.join(docs, on=["id", "shard"])["text"].to_list()
    expected = list(target_texts(g, "arc_easy")) + sample + [t for t in top if t not in sample]
    assert extracted(extraction_calls) == sorted(expected)
    assert pairs(read_mixture(g.storage)) == expected_selection(scores, ["arc_easy"])
    assert g.check_evaluations()[("selected_mixture", "budget_holds")] == [True]


@pytest.mark.slow
def test_a_new_target_trains_only_its_own_scorer(graph: Graph, extraction_calls) -> None:
    extraction_calls.clear()
    write_jsonl(graph.root / "targets" / "water.jsonl", science_texts(12))
    graph.step()
    assert extracted(extraction_calls) == sorted(science_texts(12))  # no shard document
    assert materializations(graph, "distilled_scorer", "water") == 1
    assert materializations(graph, "distilled_scorer", "arc_easy") == 1
    mix = read_mixture(graph.storage)
    assert set(mix["target"]) == {"arc_easy", "water"}


@pytest.mark.slow
def test_a_rerun_requests_no_work(graph: Graph, extraction_calls) -> None:
    extraction_calls.clear()
    sensor_runs, auto_runs = graph.step()
    assert sensor_runs == [] and auto_runs == [] and extraction_calls == []


@pytest.mark.slow
def test_the_sensor_asks_for_the_sample_not_shard_nag(graph: Graph) -> None:
    sensor = graph.defs.resolve_sensor_def("pool_sensor")
    keys = {k.to_user_string() for k in sensor.asset_selection.resolve(graph.defs.assets)}
    assert "distill_sample" in keys and "shard_nag" not in keys
    nag_keys = {a.key.to_user_string() for a in NagSelection(name="").definitions().assets}
    assert {"shard_nag", "shard_scores"} <= nag_keys and "distill_sample" not in nag_keys


@pytest.mark.parametrize(
    ("selection", "env", "message"),
    [
        ({"scorer": "fast"}, {}, r"scorer: Input should be 'nag' or 'distilled'"),
        ({}, {"NAG_SCORER": "bogus"}, r"NAG_SCORER='bogus' \(from the environment"),
        ({"distill": {"sample_fraction": 0}}, {}, r"sample_fraction 0(\.0)? must be in \(0, 1\]"),
        ({"distill": {"sample_fraction": 1.5}}, {}, r"sample_fraction 1.5 must be in \(0, 1\]"),
        ({}, {"NAG_SAMPLE_FRACTION": "a tenth"}, r"NAG_SAMPLE_FRACTION='a tenth' \(from the env"),
        ({"distill": {"features": "pixels"}}, {}, r"distill.features: Input should be"),
        ({"distill": {"rerank": 0}}, {}, r"distill: rerank must be > 0"),
        ({}, {"NAG_DISTILL_RERANK": "half"}, r"NAG_DISTILL_RERANK='half' \(from the environment"),
    ],
)
def test_bad_settings_are_named(selection: dict, env: dict, message: str, monkeypatch) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(InputError, match=message):
        NagSelection(name="", **selection).definitions()


def test_yaml_then_env_then_default(monkeypatch) -> None:
    def scoring(**spec):
        resolved = SelectionSettings(**spec).resolved()
        return resolved.distill.scoring(resolved.scorer)

    assert scoring().scorer == "nag"
    monkeypatch.setenv("NAG_SCORER", "distilled")
    monkeypatch.setenv("NAG_SAMPLE_FRACTION", "0.25")
    got = scoring()
    assert (got.scorer, got.sample.fraction, got.sample.seed) == ("distilled", 0.25, 0)
    yaml = scoring(scorer="nag", distill={"sample_fraction": 0.05})
    assert (yaml.scorer, yaml.sample.fraction) == ("nag", 0.05)
    assert got.sample.shards == ("*",) and got.sample.covers("any-shard")
    monkeypatch.setenv("NAG_SAMPLE_SHARDS", "cc-2026-*,wiki-000")
    listed = scoring().sample
    assert listed.shards == ("cc-2026-*", "wiki-000")
    assert [listed.covers(k) for k in ("cc-2026-07", "wiki-000", "wiki-001")] == [1, 1, 0]
    assert scoring(distill={"sample_shards": ["a*"]}).sample.shards == ("a*",)
    assert scoring().rerank is None
    monkeypatch.setenv("NAG_DISTILL_RERANK", "0.4")
    assert scoring().rerank == 0.4
    assert scoring(distill={"rerank": 0.25}).rerank == 0.25


def test_the_yaml_chooses_the_scorer_and_names_its_assets() -> None:
    sel = NagSelection.resolve_from_yaml(
        "name: team\nscorer: distilled\ndistill: {sample_fraction: 0.05, sample_seed: 2}\n"
    )
    defs = sel.definitions()
    keys = {a.key.to_user_string() for a in defs.assets}
    assert {"team/distill_sample", "team/distilled_scorer", "team/shard_scores"} <= keys
    assert "team/shard_nag" not in keys
    node = defs.resolve_asset_graph().get(dg.AssetKey(["team", "distill_sample"]))
    assert node.pools == {"team_backbone"}  # the backbone's pool, like shard_nag's
    scoring = sel.distill.scoring(sel.scorer)
    assert (scoring.sample.fraction, scoring.sample.seed) == (0.05, 2)

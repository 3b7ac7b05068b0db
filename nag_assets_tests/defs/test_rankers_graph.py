"""Baseline rankers and sanity checks in the asset graph (tiny model, temporary root)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
import torch

from nag_assets import checks
from nag_assets.nag import load_backbone
from nag_assets.pipeline.mixture import RANK_SEP, mixture_digest, read_mixture
from nag_assets.pipeline.ranker_scores import score_folder
from nag_assets_tests.defs.helpers import (
    ARC_SPEC,
    TOP_K,
    Graph,
    build_root,
    expected_selection,
    pairs,
    science_texts,
)

pytestmark = pytest.mark.slow  # graph runs, servers or subprocesses

TARGETS = {"arc_easy": ARC_SPEC, "water": science_texts(12)}


@pytest.fixture(scope="module")
def graph(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, wiki_pool: pl.DataFrame
) -> Iterator[Graph]:
    root = build_root(tmp_path_factory.mktemp("rankers") / "root", wiki_pool, targets=TARGETS)
    with dg.DagsterInstance.ephemeral() as instance:
        g = Graph(root, tiny_model_dir, instance)
        g.step()  # the default graph: NAG mixture
        g.nag_digest = mixture_digest(g.storage)
        g.nag_mixture = read_mixture(g.storage)
        yield g


def materialize(graph: Graph, asset: str, **config) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        assets=list(graph.defs.assets or []),
        selection=[dg.AssetKey(asset)],
        instance=graph.instance,
        resources=graph.defs.resources,
        run_config={"ops": {asset: {"config": config}}},
    )
    assert result.success
    return result


def preview(graph: Graph, **config) -> str:
    """A mixture_preview with other mixture settings than the spec's: its version."""
    materialize(graph, "mixture_preview", **config)
    return graph.latest_metadata("mixture_preview")["version"]


def baseline_table(root: Path, ranker: str) -> pl.DataFrame:
    folder = root / score_folder(ranker)
    return pl.concat([pl.read_parquet(p) for p in sorted(folder.glob("*.parquet"))])


@pytest.mark.parametrize(
    "ranker", ["nag_contrastive", "random", "dsir", "embedding", "nag_distilled"]
)
def test_baseline_mixture_keeps_the_contract(graph: Graph, ranker: str) -> None:
    extra = {"sample_fraction": 0.5} if ranker == "nag_distilled" else {}  # a tiny pool
    version = preview(graph, ranker=ranker, **extra)
    mix = read_mixture(graph.storage, preview=version)
    nag = graph.nag_mixture
    assert mix.columns == nag.columns  # same output schema, ranker column included
    assert mix["ranker"].unique().to_list() == [ranker]
    assert nag["ranker"].unique().to_list() == ["nag"]
    facts = json.loads((graph.root / "previews" / f"{version}.json").read_text())["facts"]
    assert facts["ranker"] == ranker
    assert graph.latest_metadata("mixture_preview")["ranker"] == ranker
    assert mixture_digest(graph.storage) == graph.nag_digest  # the selection in force stays
    # the same documents and tokens as the NAG scores, one score column per target in [0, 1]
    scores = baseline_table(graph.root, ranker)
    nag_scores = pl.concat(
        [pl.read_parquet(p) for p in sorted((graph.root / score_folder("nag")).glob("*.parquet"))]
    )
    assert scores.select("id", "tokens").equals(nag_scores.select("id", "tokens"))
    assert scores.columns == nag_scores.columns
    values = scores.select(sorted(TARGETS)).to_numpy()
    assert ((values >= 0) & (values <= 1)).all()
    # the same budget rule: exactly the independent recomputation, within each budget
    assert pairs(mix) == expected_selection(scores, sorted(TARGETS))
    for t in TARGETS:
        used = int(mix.filter(pl.col("target") == t)["tokens"].sum())
        assert used == facts["targets"][t]["tokens"] <= facts["targets"][t]["budget"]
    assert mix.height > 0


def test_rankers_are_deterministic_and_nag_stays_the_default(graph: Graph) -> None:
    version = preview(graph, ranker="random", seed=3)
    first = mixture_digest(graph.storage, preview=version)
    assert preview(graph, ranker="random", seed=3) == version
    assert mixture_digest(graph.storage, preview=version) == first
    assert graph.latest_metadata("mixture_preview")["skipped_unchanged"] is True
    other = preview(graph, ranker="random", seed=4)
    assert mixture_digest(graph.storage, preview=other) != first
    materialize(graph, "selected_mixture")  # the spec: NAG, byte-identical to before
    assert mixture_digest(graph.storage) == graph.nag_digest


def test_unknown_ranker_is_refused(graph: Graph) -> None:
    with pytest.raises(Exception, match="unknown ranker 'bm25'"):
        materialize(graph, "mixture_preview", ranker="bm25")


def _stored_nags(root: Path, folder: str, name: str) -> np.ndarray:
    df = pl.read_parquet(root / "assets" / folder / f"{name}.parquet")
    return np.stack(df["nag"].to_numpy()).reshape(df.height, -1, TOP_K)


def test_contrastive_scores_follow_the_formula(graph: Graph) -> None:
    """nag_contrastive: w ~ target freq / (pool freq + 1/(n K)), per layer summed to 1,
    recomputed here by counting, without the library's profile code."""
    preview(graph, ranker="nag_contrastive")
    shards = sorted(p.stem for p in (graph.root / "assets" / "shard_nag").glob("*.parquet"))
    pool = np.concatenate([_stored_nags(graph.root, "shard_nag", s) for s in shards])
    n, layers, _ = pool.shape
    d_ff = int(pool.max()) + 1
    scores = baseline_table(graph.root, "nag_contrastive")
    for t in TARGETS:
        target = _stored_nags(graph.root, "target_nag", t)
        expected = np.zeros(n)
        for layer in range(layers):
            d = max(d_ff, int(target[:, layer].max()) + 1)
            tf = np.bincount(target[:, layer].ravel(), minlength=d) / (len(target) * TOP_K)
            pf = np.bincount(pool[:, layer].ravel(), minlength=d) / (n * TOP_K)
            w = tf / (pf + 1 / (n * TOP_K))
            w /= w.sum()
            expected += w[pool[:, layer]].sum(axis=1)
        np.testing.assert_allclose(scores[t].to_numpy(), expected / layers, rtol=1e-5)


def test_selection_checks_asset_reports_stability_and_agreement(graph: Graph) -> None:
    materialize(
        graph,
        "selection_checks",
        checks=["stability", "agreement", "variants"],
        sizes=[5, 10, 50],
        seeds=2,
        rankers=["random", "dsir"],
        ks=[8],
    )
    meta = graph.latest_metadata("selection_checks")
    assert "| stability | water |" in meta["summary"]
    stab = meta["stability"]["jaccard_with_all_examples"]
    assert stab["water"]["examples"] == 12
    assert set(stab["water"]) == {"examples", "5", "10", "all"}
    assert stab["water"]["all"]["mean"] == 1.0
    assert 0 <= stab["arc_easy"]["5"]["min"] <= stab["arc_easy"]["5"]["mean"] <= 1
    agree = meta["agreement"]["jaccard"]
    for t in TARGETS:
        assert set(agree[t]["documents"]) == {"nag", "random", "dsir"}
        assert 0 <= agree[t]["nag_vs_random"] <= 1 and 0 <= agree[t]["nag_vs_dsir"] <= 1
    var = meta["variants"]["variants"]
    assert set(var) == {"paper", "contrastive", "normalized", "k8"}
    assert (var["k8"]["top_k"], var["normalized"]["impact"]) == (8, "normalized")
    # the paper variant, re-extracted in one pass, is the graph's own NAG selection
    stored = graph.storage.read_parquet(
        "assets/selection_checks/variants/paper", "selection.parquet"
    )
    # each variant's overlap with it, recounted here from the stored selections
    for name in ("contrastive", "normalized", "k8"):
        other = graph.storage.read_parquet(
            f"assets/selection_checks/variants/{name}", "selection.parquet"
        )
        for t in TARGETS:
            a = set(stored.filter(pl.col("target") == t)["rank"])
            b = set(other.filter(pl.col("target") == t)["rank"])
            assert var[name]["jaccard_with_paper"][t] == round(len(a & b) / len(a | b), 4)
    mix = graph.nag_mixture
    assert set(zip(stored["target"], stored["rank"])) == {
        (t, f"{i}{RANK_SEP}{s}") for t, i, s in zip(mix["target"], mix["id"], mix["shard"])
    }
    # distinct neurons per layer, counted here from the stored shard NAGs
    shards = sorted(p.stem for p in (graph.root / "assets" / "shard_nag").glob("*.parquet"))
    pool = np.concatenate([_stored_nags(graph.root, "shard_nag", s) for s in shards])
    distinct = [len(np.unique(pool[:, layer])) for layer in range(pool.shape[1])]
    assert var["paper"]["distinct_neurons_per_layer"] == round(float(np.mean(distinct)), 1)
    assert var["k8"]["distinct_neurons_per_layer"] >= var["paper"]["distinct_neurons_per_layer"]
    assert var["normalized"]["jaccard_with_paper"] != var["paper"]["jaccard_with_paper"]
    for v in var.values():
        assert 0 <= v["top_neuron_share"] <= 1 and 0 <= v["between_targets_jaccard"] <= 1
    assert "| variants | normalized |" in meta["summary"]
    assert (graph.root / "assets" / "selection_checks" / "latest.json").is_file()


def test_deactivation_check_on_held_out_examples(graph: Graph, tiny_model_dir: Path) -> None:
    texts = checks.held_out(graph.storage, "arc_easy", 8)
    used = set(graph.storage.read_parquet("assets/target_dataset", "arc_easy.parquet")["text"])
    assert len(texts) == 8 and not set(texts) & used
    with pytest.raises(ValueError, match="not a built-in benchmark"):
        checks.held_out(graph.storage, "water", 8)
    backbone = load_backbone(str(tiny_model_dir))
    out = checks.deactivation(graph.storage, backbone, neurons=[3], seeds=2, examples=8)
    assert set(out["targets"]) == {"arc_easy"} and out["without_held_out_examples"] == ["water"]
    row = out["targets"]["arc_easy"]
    assert row["held_out_examples"] == 8 and np.isfinite(row["loss_intact"])
    k3 = row["k=3"]
    # the variants stored by the variants check (run above) are deactivated too
    assert set(k3["rise_own_neurons"]) == {"paper", "contrastive", "normalized", "k8"}
    assert k3["rise_own_neurons"]["paper"] != 0  # zeroing neurons changes the model
    assert k3["rise_random_max"] >= k3["rise_random_mean"]
    assert all(np.isfinite(v) for v in k3["rise_own_neurons"].values())
    others = k3["rise_other_targets_neurons"]
    assert set(others) == set(k3["rise_own_neurons"]) and set(others["k8"]) == {"water"}
    # water's 3 most frequent neurons per layer, counted here, zeroed in the weights of a copy
    water = _stored_nags(graph.root, "target_nag", "water")
    zeroed = copy.deepcopy(backbone)
    for layer, up in enumerate(zeroed.up_projs):
        counts = np.bincount(water[:, layer].ravel(), minlength=backbone.d_ff)
        top = np.argsort(-counts, kind="stable")[:3]
        with torch.no_grad():
            up.weight[top, :] = 0
    rise = checks.lm_loss(zeroed, texts) - row["loss_intact"]
    assert others["paper"]["water"] == pytest.approx(rise, abs=2e-4)
    # the hooks are gone afterwards: the intact loss comes back
    again = checks.lm_loss(backbone, checks.held_out(graph.storage, "arc_easy", 8))
    assert again == pytest.approx(row["loss_intact"], abs=1e-4)


def test_checks_command_line(graph: Graph, capsys: pytest.CaptureFixture) -> None:
    assert (
        checks.main(["stability", "--root", str(graph.root), "--sizes", "5", "--seeds", "2"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["check"] == "stability" and "5" in out["jaccard_with_all_examples"]["arc_easy"]

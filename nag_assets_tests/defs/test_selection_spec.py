"""The selection spec end to end (tiny model): a pool where it lies (read-only, nested, with
include patterns), the budget of the spec honoured by automation, previews beside the
selection, a clean corpus folder, and a second selection over the same pool that shares its
NAGs through the NAG store (no backbone pass over its shards)."""

from __future__ import annotations

import json
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import polars as pl
import pytest

import nag_assets
from nag_assets.component import NagSelection
from nag_assets.defs.resources import StorageResource
from nag_assets.pipeline.mixture import mixture_digest, read_mixture
from nag_assets_tests.defs.helpers import (
    Graph,
    expected_selection,
    pairs,
    read_scores,
    science_texts,
    write_jsonl,
)

pytestmark = pytest.mark.slow  # graph runs


def _pool(folder: Path, wiki: pl.DataFrame) -> Path:
    """A FineWeb-like pool in nested folders, one file that the include pattern leaves out,
    then made read-only (files and folders)."""
    for i, dump in enumerate(["CC-MAIN-2024-10", "CC-MAIN-2024-18"]):
        (folder / dump).mkdir(parents=True)
        for j in range(2):
            part = wiki.slice(60 * i + 30 * j, 30).select("id", "text", "title")
            part.write_parquet(folder / dump / f"000_0000{j}.parquet")
    (folder / "notes").mkdir()
    wiki.slice(150, 10).select("id", "text").write_parquet(folder / "notes" / "skip.parquet")
    for path in sorted(folder.rglob("*"), reverse=True):
        path.chmod(stat.S_IREAD | (stat.S_IEXEC if path.is_dir() else 0))
    folder.chmod(stat.S_IREAD | stat.S_IEXEC)
    return folder


def _targets(folder: Path, topic: str) -> Path:
    folder.mkdir(parents=True)
    write_jsonl(folder / f"{topic}.jsonl", science_texts(12, topic))
    return folder


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory, wiki_pool: pl.DataFrame) -> Iterator[Path]:
    folder = _pool(tmp_path_factory.mktemp("downloads") / "fineweb", wiki_pool)
    yield folder
    for path in [folder, *folder.rglob("*")]:
        path.chmod(stat.S_IRWXU)


def _graph(
    tmp: Path, name: str, pool: Path, store: Path, model: Path, fraction: float, topic: str = ""
) -> Graph:
    """An unnamed selection (its own instance) over `pool`, its target (`topic`, default its
    name) in its own folder."""
    storage = StorageResource(
        root=str(tmp / name),
        pool=str(pool),
        pool_include=["CC-MAIN-*/*.parquet"],
        targets=str(_targets(tmp / f"{name}-targets", topic or name)),
        nag_store=str(store),
    )
    selection = NagSelection(name="", mixture={"fraction": fraction})
    return Graph(tmp / name, model, dg.DagsterInstance.ephemeral(), selection, storage)


def _one_shard_root(root: Path, wiki: pl.DataFrame) -> Path:
    """A root of the usual layout: one shard of 30 leads, one target."""
    (root / "shards").mkdir(parents=True)
    wiki.head(30).select("id", "text").write_parquet(root / "shards" / "s0.parquet")
    _targets(root / "targets_tmp", "water").rename(root / "targets")
    return root


def _facts(g: Graph) -> dict:
    return json.loads((g.root / "mixture_versions" / "CURRENT.json").read_text())["facts"]


def test_a_pool_where_it_lies_and_a_budget_that_sticks(
    tmp_path: Path, pool: Path, tiny_model_dir: Path
) -> None:
    g = _graph(tmp_path, "water", pool, tmp_path / "nags", tiny_model_dir, 0.1)
    g.step()
    shards = g.partitions("shards")
    assert len(shards) == 4  # the include pattern leaves notes/skip.parquet out
    assert all(s.startswith("cc-main-2024-") for s in shards)
    facts = _facts(g)
    assert facts["fraction"] == 0.1
    scores = read_scores(g.root)
    mix = read_mixture(str(g.root))
    assert pairs(mix) == expected_selection(scores, ["water"], fraction=0.1)
    # a new target arrives: automation reruns the mixture with the spec's 10%, not a default
    write_jsonl(Path(g.storage.inputs("targets").root) / "snow.jsonl", science_texts(12, "snow"))
    g.step()
    facts = _facts(g)
    assert sorted(facts["targets"]) == ["snow", "water"] and facts["fraction"] == 0.1
    mix = read_mixture(nag_assets.Storage(str(g.root)))
    assert pairs(mix) == expected_selection(read_scores(g.root), ["snow", "water"], 0.1)
    meta = g.latest_metadata("selected_mixture")
    assert meta["settings"]["fraction"] == 0.1  # the UI shows what made the selection


def test_a_preview_is_written_beside_the_selection_never_over_it(
    tmp_path: Path, pool: Path, tiny_model_dir: Path
) -> None:
    g = _graph(tmp_path, "water", pool, tmp_path / "nags", tiny_model_dir, 0.1)
    g.step()
    before = mixture_digest(g.storage)
    result = dg.materialize(
        assets=list(g.defs.assets or []),
        selection=[dg.AssetKey("mixture_preview")],
        instance=g.instance,
        resources=g.defs.resources,
        run_config={"ops": {"mixture_preview": {"config": {"fraction": 0.3, "ranker": "random"}}}},
    )
    assert result.success
    assert mixture_digest(g.storage) == before  # the selection in force is untouched
    meta = g.latest_metadata("mixture_preview")
    assert meta["differs_from_spec"] == {"fraction": [0.1, 0.3], "ranker": ["nag", "random"]}
    preview = read_mixture(g.storage, preview=meta["version"])
    assert set(preview["ranker"].to_list()) == {"random"}
    assert preview.height > read_mixture(g.storage).height  # 30% holds more than 10%
    with pytest.raises(dg.DagsterInvalidConfigError):  # the mixture takes the spec only
        dg.materialize(
            assets=list(g.defs.assets or []),
            selection=[dg.AssetKey("selected_mixture")],
            instance=g.instance,
            resources=g.defs.resources,
            run_config={"ops": {"selected_mixture": {"config": {"fraction": 0.3}}}},
        )


def test_the_corpus_folder_holds_the_selection_in_force_and_nothing_else(
    tmp_path: Path, pool: Path, tiny_model_dir: Path
) -> None:
    import datasets

    g = _graph(tmp_path, "water", pool, tmp_path / "nags", tiny_model_dir, 0.1)
    g.step()
    write_jsonl(Path(g.storage.inputs("targets").root) / "snow.jsonl", science_texts(12, "snow"))
    g.step()  # a second version: the first lives apart now
    corpus = g.root / "selected_mixture"
    want = read_mixture(g.storage).sort(["target", "id"])
    assert {p.suffix for p in corpus.iterdir()} == {".parquet"}
    got = pl.scan_parquet(f"{corpus}/*.parquet").collect().sort(["target", "id"])
    assert got.equals(want)
    assert len(pd.read_parquet(corpus)) == want.height
    hf = datasets.load_dataset("parquet", data_dir=str(corpus), split="train")
    assert hf.num_rows == want.height
    versions = [
        p for p in (g.root / "mixture_versions").iterdir() if p.is_dir() and p.suffix != ".manifest"
    ]
    assert len(versions) == 2  # the version in force and the one before, apart


def test_a_second_selection_over_the_pool_extracts_none_of_it(
    tmp_path: Path, pool: Path, tiny_model_dir: Path, extraction_calls: list
) -> None:
    first = _graph(tmp_path, "water", pool, tmp_path / "nags", tiny_model_dir, 0.1)
    first.step()
    read = [t for call in extraction_calls for t in call]
    pool_texts = set(read) - set(science_texts(12, "water"))
    assert len(pool_texts) == 120 and len(read) == 120 + 12  # the pool read once
    extraction_calls.clear()
    second = _graph(tmp_path, "snow", pool, tmp_path / "nags", tiny_model_dir, 0.2)
    second.step()
    read = [t for call in extraction_calls for t in call]
    assert sorted(read) == sorted(science_texts(12, "snow"))  # its target only: no shard
    for s in second.partitions("shards"):
        meta = second.latest_metadata("shard_nag", s)
        assert meta["documents_extracted"] == 0 and meta["from_nag_store"] is True
    fresh = _graph(tmp_path, "fresh", pool, tmp_path / "own", tiny_model_dir, 0.2, topic="snow")
    fresh.step()
    a, b = (read_mixture(g.storage).sort(["target", "id"]) for g in (second, fresh))
    assert a.drop("shard").equals(b.drop("shard")) and a["shard"].equals(b["shard"])


@pytest.mark.parametrize("cadence", ["on_demand", "0 3 * * *"])
def test_the_corpus_copy_follows_its_cadence_not_each_shard(
    tmp_path: Path, wiki_pool: pl.DataFrame, tiny_model_dir: Path, cadence: str
) -> None:
    root = _one_shard_root(tmp_path / "root", wiki_pool)
    selection = NagSelection(name="", mixture={"fraction": 0.2, "corpus": cadence})
    g = Graph(root, tiny_model_dir, dg.DagsterInstance.ephemeral(), selection)
    g.step()
    manifest = _facts(g)
    assert not (root / "selected_mixture").exists()  # the copy waits for its cadence
    g.materialize("mixture_corpus")
    meta = g.latest_metadata("mixture_corpus")
    assert meta["manifest_version"] == g.latest_metadata("selected_mixture")["version"]
    wiki_pool.slice(30, 30).select("id", "text").write_parquet(root / "shards" / "s1.parquet")
    _, auto_runs = g.step()  # a new shard: the selection follows at once, the copy does not
    assert _facts(g) != manifest and sorted(_facts(g)["shards"]) == ["s0", "s1"]
    assert ["mixture_corpus"] not in [r["assets"] for r in auto_runs]
    assert set(read_mixture(g.storage)["shard"]) == {"s0"}  # the corpus in force, behind


def test_a_root_made_before_the_store_keeps_its_nags(
    tmp_path: Path, wiki_pool: pl.DataFrame, tiny_model_dir: Path, extraction_calls: list
) -> None:
    root = _one_shard_root(tmp_path / "root", wiki_pool)
    Graph(root, tiny_model_dir, dg.DagsterInstance.ephemeral()).step()
    # what an older release left: no NAG store, versions inside selected_mixture/
    shutil.rmtree(root / "nag_store")
    (root / "selected_mixture").unlink()
    (root / "selected_mixture" / "0123456789abcdef").mkdir(parents=True)
    (root / "selected_mixture" / "CURRENT.json").write_text('{"version": "0123456789abcdef"}')
    extraction_calls.clear()
    g = Graph(root, tiny_model_dir, dg.DagsterInstance.ephemeral())
    g.step()
    assert extraction_calls == []  # neither the pool nor the target read again
    assert g.latest_metadata("shard_nag", "s0")["documents_extracted"] == 0
    assert (root / "selected_mixture").is_symlink()
    assert {p.suffix for p in (root / "selected_mixture").iterdir()} == {".parquet"}
    assert any((root / "nag_store" / "shard_nag").iterdir())  # the store filled, by links

"""The selection and its corpus apart: a manifest from the scores alone, the text written per
shard afterwards (any number of workers, the same bytes), parts reused when a shard's chosen
rows did not change."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from nag_assets.nag import Backbone
from nag_assets.pipeline import corpus, mixture, shards
from nag_assets.pipeline.common import NagSettings
from nag_assets.settings import MixtureSettings
from nag_assets.storage import Storage
from nag_assets_tests.pipeline.test_quality_blend import pool  # noqa: F401  (fixture)

SETTINGS = NagSettings(top_k=4)


def _select(store: Storage, fraction: float, copy: bool):
    settings = MixtureSettings(fraction=fraction)
    return mixture.selected_mixture(store, ["a", "b"], ["snow"], settings, copy=copy)


def test_the_manifest_holds_the_choice_and_no_text(pool: Storage) -> None:  # noqa: F811
    step = _select(pool, 0.5, copy=False)
    chosen = mixture.read_manifest(pool)
    assert "text" not in chosen.columns
    assert chosen.height == step.facts["targets"]["snow"]["documents"]
    assert int(chosen["tokens"].sum()) == step.facts["targets"]["snow"]["tokens"]
    with pytest.raises(FileNotFoundError):  # no corpus written yet
        mixture.read_mixture(pool)
    written = corpus.write_corpus(pool)
    mix = mixture.read_mixture(pool)
    assert mix.select(chosen.columns).sort("id").equals(chosen.sort("id"))
    assert mix["text"].str.starts_with("doc ").all()
    assert written.facts["parts"] == 2 and written.facts["reused"] == 0
    assert corpus.write_corpus(pool).skipped


def test_the_corpus_is_the_same_bytes_however_it_is_written(
    pool: Storage,  # noqa: F811
    tmp_path: Path,
) -> None:
    _select(pool, 0.5, copy=True)
    once = mixture.mixture_digest(pool)
    for workers in (1, 2):
        for f in Path(pool.path("corpus_parts")).iterdir():
            f.unlink()
        Path(pool.path(corpus.FOLDER, corpus.CORPUS_POINTER)).unlink()
        corpus.write_corpus(pool, workers=workers)
        assert mixture.mixture_digest(pool) == once
    calls = []

    def recording_map(fn, items):
        calls.append(list(items))
        return [fn(i) for i in items]

    Path(pool.path(corpus.FOLDER, corpus.CORPUS_POINTER)).unlink()
    corpus.write_corpus(pool, map_fn=recording_map)
    assert calls == [["a", "b"]] and mixture.mixture_digest(pool) == once


def test_a_new_shard_rewrites_only_the_parts_whose_rows_changed(
    pool: Storage,  # noqa: F811
    backbone: Backbone,
) -> None:
    _select(pool, 1.0, copy=False)  # every document chosen: a new shard moves no cut-off
    assert corpus.write_corpus(pool).facts["reused"] == 0
    before = {p: Path(pool.path(corpus.PART_CACHE, p)).stat().st_ino for p in _parts(pool)}
    pl.DataFrame({"id": ["c0", "c1"], "text": ["doc c0: snow", "doc c1: rain"]}).write_parquet(
        pool.path("shards", "c.parquet")
    )
    shards.shard_nag(pool, "c", backbone, SETTINGS)
    shards.shard_scores(pool, "c", ["snow"])
    settings = MixtureSettings(fraction=1.0)
    mixture.selected_mixture(pool, ["a", "b", "c"], ["snow"], settings, copy=False)
    step = corpus.write_corpus(pool)
    assert (step.facts["parts"], step.facts["reused"]) == (3, 2)  # a, b linked; c written
    after = {p: Path(pool.path(corpus.PART_CACHE, p)).stat().st_ino for p in _parts(pool)}
    assert {p: after[p] for p in before} == before  # the old parts untouched
    assert set(mixture.read_mixture(pool)["shard"]) == {"a", "b", "c"}


def _parts(store: Storage) -> list[str]:
    return sorted(p.name for p in Path(store.path(corpus.PART_CACHE)).iterdir())


def test_a_shard_changed_since_its_manifest_stops_the_copy(pool: Storage) -> None:  # noqa: F811
    _select(pool, 0.5, copy=False)
    path = Path(pool.path("shards", "a.parquet"))
    pl.read_parquet(path).with_columns(pl.col("text") + " changed").write_parquet(path)
    with pytest.raises(ValueError, match=r"a\.parquet changed after it was scored"):
        corpus.write_corpus(pool)

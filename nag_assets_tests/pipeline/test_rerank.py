"""`distill: {rerank: X}`: each shard's top X per target by distilled score gets its exact NAG
score, the rest rank below every exact score; the backbone reads each candidate once (kept
NAGs and the sample's are reused); what a table holds depends on the shard, the targets and
the settings only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nag_assets.nag import Backbone, build_profile, extract_nags, score_many
from nag_assets.pipeline import distilled, rerank
from nag_assets.pipeline.layout import RERANK_NAG, SHARD_SCORES, table
from nag_assets.sources.files import InputError
from nag_assets.storage import Storage
from nag_assets_tests.pipeline.test_distilled_steps import (
    SETTINGS,
    SHARDS,
    TARGETS,
    TOPICS,
    _texts,
    make_root,
    run_path,
)


def exact_scores(backbone: Backbone, texts: list[str]) -> np.ndarray:
    """(n, T) NAG scores recomputed here: the texts' NAGs against profiles of the examples."""
    nags, _ = extract_nags(backbone, texts, SETTINGS.top_k, SETTINGS.max_tokens)
    profiles = []
    for topic in TOPICS.values():
        examples, _ = extract_nags(
            backbone, [f"{topic} {i}" for i in range(8)], SETTINGS.top_k, SETTINGS.max_tokens
        )
        profiles.append(build_profile(examples, backbone.d_ff))
    return score_many(nags, np.stack(profiles))


def rescore(storage: Storage, backbone: Backbone, share: float, targets=TARGETS) -> dict:
    how = distilled.Rerank(share, SETTINGS)
    return {s: distilled.distilled_scores(storage, s, targets, backbone, rerank_with=how)
            for s in SHARDS}  # fmt: skip


def scores_of(storage: Storage, shard: str):
    return storage.read_parquet(*table(SHARD_SCORES, shard))


@pytest.fixture
def store(tmp_path: Path, backbone: Backbone) -> Storage:
    storage = make_root(tmp_path, backbone)
    run_path(storage, backbone)
    return storage


def test_a_full_rerank_is_full_nag(store: Storage, backbone: Backbone) -> None:
    rescore(store, backbone, 1.0)
    for k, s in enumerate(SHARDS):
        expected = exact_scores(backbone, _texts(k))
        got = scores_of(store, s).select(TARGETS).to_numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_the_top_share_gets_exact_scores_and_the_rest_ranks_below(
    store: Storage, backbone: Backbone, extraction_calls: list
) -> None:
    plain = {s: scores_of(store, s) for s in SHARDS}  # the distilled scores
    extraction_calls.clear()
    done = rescore(store, backbone, 0.25)
    read = sorted(t for call in extraction_calls for t in call)
    wanted = []
    for k, s in enumerate(SHARDS):
        texts, got = _texts(k), scores_of(store, s)
        d = plain[s].select(TARGETS).to_numpy()
        top = set()
        for j in range(len(TARGETS)):  # the top 10 of 40, ties by id
            order = sorted(range(len(texts)), key=lambda i: (-d[i, j], f"d{i}"))
            top |= set(order[:10])
        assert done[s].facts["reranked"] == len(top)
        exact = exact_scores(backbone, [texts[i] for i in sorted(top)])
        for j, t in enumerate(TARGETS):
            col = got[t].to_numpy()
            np.testing.assert_allclose(col[sorted(top)], exact[:, j], rtol=1e-6, atol=1e-7)
            rest = [i for i in range(len(texts)) if i not in top]
            np.testing.assert_allclose(col[rest], d[rest, j] - 1, rtol=1e-6)
            assert col[rest].max() < 0 <= col[sorted(top)].min()
        wanted += [texts[i] for i in top]
    # the backbone read candidates only, each once, none of the sample's again
    assert len(read) == len(set(read)) and set(read) <= set(wanted)
    assert sum(d.facts["rerank_extracted"] for d in done.values()) == len(read) < len(wanted)


def test_reruns_and_narrower_shares_read_nothing_new(
    store: Storage, backbone: Backbone, extraction_calls: list
) -> None:
    rescore(store, backbone, 0.5)
    extraction_calls.clear()
    assert all(d.skipped for d in rescore(store, backbone, 0.5).values())
    narrower = rescore(store, backbone, 0.25)  # its candidates are a subset: all kept
    assert extraction_calls == [] and not any(d.skipped for d in narrower.values())
    rescore(store, backbone, 0.75)  # more to read: the kept table grows, each id once
    for s in SHARDS:
        kept = store.read_parquet(*table(RERANK_NAG, s))["id"]
        assert kept.n_unique() == kept.len() >= 30  # 0.75 of 40, over two targets


def test_a_table_does_not_depend_on_what_was_read_before(
    store: Storage, tmp_path: Path, backbone: Backbone
) -> None:
    rescore(store, backbone, 0.5)
    rescore(store, backbone, 0.25)  # the kept NAGs hold more than this share's candidates
    fresh = make_root(tmp_path / "fresh", backbone)
    run_path(fresh, backbone)
    rescore(fresh, backbone, 0.25)
    for s in SHARDS:
        assert scores_of(store, s).equals(scores_of(fresh, s))


@pytest.mark.parametrize("share", [0, -0.5, 1.5, True])
def test_a_bad_share_is_named(share) -> None:
    with pytest.raises(InputError, match=r"distill rerank .* must be a share in \(0, 1\]"):
        distilled.Scoring("distilled", rerank=share)


def test_candidates_break_ties_by_id() -> None:
    ids = ["b", "a", "d", "c"]
    scores = np.array([[0.5], [0.5], [0.9], [0.1]])
    assert rerank.candidates(ids, scores, 0.5).tolist() == [False, True, True, False]

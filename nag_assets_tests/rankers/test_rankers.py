"""The baseline rankers' own contracts: shape, range, determinism, what they prefer."""

from __future__ import annotations

import numpy as np
import pytest

from nag_assets.rankers import (
    NgramModel,
    dsir_scores,
    embedding_scores,
    load_embedder,
    ngram_buckets,
    random_scores,
)
from nag_assets.rankers.dsir import bucket_counts
from nag_assets.rankers.embedding import centroid

KEYS = [f"s/{i}" for i in range(500)]


def test_random_scores_are_seeded_uniform_and_independent_of_the_batch() -> None:
    a = random_scores(KEYS, ["x", "y"], seed=0)
    assert a.shape == (500, 2) and a.dtype == np.float32
    assert ((a >= 0) & (a < 1)).all()
    assert np.array_equal(a, random_scores(KEYS, ["x", "y"], seed=0))
    assert not np.array_equal(a, random_scores(KEYS, ["x", "y"], seed=1))
    assert not np.array_equal(a[:, 0], a[:, 1])  # targets draw independently
    # a document's score does not depend on what else is in its batch
    assert np.array_equal(random_scores(KEYS[100:110], ["y"], 0)[:, 0], a[100:110, 1])
    assert 0.4 < a.mean() < 0.6


def test_ngram_buckets_are_stable_unigrams_and_bigrams() -> None:
    b = ngram_buckets("The cat, the CAT")  # the cat , the cat: 5 unigrams + 4 bigrams
    assert len(b) == 9 and ((b >= 0) & (b < 10_000)).all()
    assert b[0] == b[3] and b[1] == b[4]  # lower-cased
    assert np.array_equal(b, ngram_buckets("the cat , the cat"))
    assert len(ngram_buckets("")) == 0


def test_dsir_prefers_target_like_documents() -> None:
    target = [f"the river water flows to the sea number {i}" for i in range(20)]
    pool = [
        "water flows in the river to the sea",
        "stock prices fell on the exchange today",
        "the election results were announced",
        "",
    ]
    raw = NgramModel.fit(bucket_counts(pool))
    s = dsir_scores(pool, [NgramModel.fit(bucket_counts(target))], raw)
    assert s.shape == (4, 1) and s.dtype == np.float32
    assert ((s >= 0) & (s <= 1)).all()
    assert s[0, 0] > s[1, 0] and s[0, 0] > s[2, 0]
    assert s[3, 0] == 0  # no n-grams, no evidence
    assert np.array_equal(s, dsir_scores(pool, [NgramModel.fit(bucket_counts(target))], raw))


def test_embedding_scores_map_cosine_to_unit_interval() -> None:
    docs = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    s = embedding_scores(docs, [centroid(np.array([[1.0, 0.0], [1.0, 0.0]]))])
    assert s[:, 0].tolist() == pytest.approx([1.0, 0.5, 0.0])


@pytest.mark.slow  # loads all-MiniLM-L6-v2
def test_packaged_minilm_loads_offline_and_ranks_by_meaning(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    embedder = load_embedder()
    targets = embedder.encode(["A cat sleeps on the sofa.", "Kittens play with yarn."])
    assert targets.shape == (2, 384)
    assert np.allclose(np.linalg.norm(targets, axis=1), 1.0, atol=1e-5)
    docs = embedder.encode(["My cat chased a mouse.", "Bond yields rose sharply in May."])
    s = embedding_scores(docs, [centroid(targets)])
    assert s[0, 0] > s[1, 0]

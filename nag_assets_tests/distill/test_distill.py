"""The distilled scorer as a library: a deterministic sample, a scorer that learns the scores
it is trained on, byte-identical reruns, and bad settings named."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from nag_assets import distill
from nag_assets.sources.files import InputError
from nag_assets_tests.tiny import tiny_backbone

WORDS = [f"w{i}x" for i in range(40)]  # w0x..w19x raise a document's score, the rest do not


@pytest.fixture(scope="module")
def reader_and_embeddings():
    backbone = tiny_backbone()
    emb = backbone.model.get_input_embeddings().weight.detach().float().numpy()
    return distill.hf_reader(backbone.tokenizer, 64), emb


def corpus(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Texts of 8 words each, scored by the share of "good" words (an independent label)."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(WORDS), size=(n, 8))
    texts = [" ".join(WORDS[i] for i in row) for row in picks]
    good = (picks < 20).mean(axis=1)
    return texts, np.stack([good, 1 - good], axis=1)  # a target and its opposite


def test_sample_is_a_hash_of_shard_and_id_alone() -> None:
    ids = [f"d{i}" for i in range(2000)]
    settings = distill.SampleSettings(fraction=0.1, seed=3)
    whole = distill.draw({"a": ids}, settings)["a"]
    # in another order, with another shard beside: each document is drawn as before
    again = distill.draw({"b": ids, "a": ids[::-1]}, settings)
    assert np.array_equal(again["a"][::-1], whole)
    assert not np.array_equal(again["b"], whole)  # the shard is part of a document's name
    assert 150 < whole.sum() < 250  # ~10% of 2000
    other_seed = distill.draw({"a": ids}, distill.SampleSettings(fraction=0.1, seed=4))["a"]
    assert not np.array_equal(other_seed, whole)


def test_sample_by_size_takes_exactly_that_many() -> None:
    pool = {"a": [f"d{i}" for i in range(300)], "b": [f"d{i}" for i in range(200)]}
    masks = distill.draw(pool, distill.SampleSettings(fraction=None, size=37))
    assert sum(int(m.sum()) for m in masks.values()) == 37
    keys = np.concatenate([distill.sample_keys(s, ids) for s, ids in pool.items()])
    chosen = np.concatenate(list(masks.values()))
    assert keys[chosen].max() < keys[~chosen].min()  # the 37 smallest keys


@pytest.mark.parametrize("features", distill.FEATURES)
def test_scorer_learns_its_training_labels(reader_and_embeddings, features: str) -> None:
    read, emb = reader_and_embeddings
    texts, labels = corpus(600)
    mask = distill.draw({"s": [f"d{i}" for i in range(600)]}, distill.SampleSettings(0.5))["s"]
    rows, rest = np.flatnonzero(mask), np.flatnonzero(~mask)
    settings = distill.DistillSettings(features=features)
    scorer = distill.train(
        read, emb, [texts[i] for i in rows], labels[rows], ["good", "bad"], settings, 64
    )
    scores = scorer.score(read, texts)
    assert scores.dtype == np.float32 and scores.shape == (600, 2)
    assert (scores > 0).all() and (scores < 1).all()
    floor = 0.9 if settings.uses_words else 0.5  # characters alone see words only in part
    for j in range(2):
        assert spearmanr(scores[rows, j], labels[rows, j])[0] > floor
        assert spearmanr(scores[rest, j], labels[rest, j])[0] > floor - 0.1  # held out
    assert spearmanr(scores[:, 0], scores[:, 1])[0] < -0.9  # the opposite target, opposite


def test_training_is_deterministic_and_the_file_round_trips(reader_and_embeddings) -> None:
    read, emb = reader_and_embeddings
    texts, labels = corpus(200, seed=1)
    settings = distill.DistillSettings()
    first = distill.train(read, emb, texts, labels, ["good", "bad"], settings, 64)
    second = distill.train(read, emb, texts, labels, ["good", "bad"], settings, 64)
    assert first.to_bytes() == second.to_bytes()
    loaded = distill.DistilledScorer.from_bytes(first.to_bytes())
    assert loaded.targets == ("good", "bad") and loaded.settings == settings
    fresh, _ = corpus(50, seed=2)
    assert np.array_equal(loaded.score(read, fresh), first.score(read, fresh))
    assert loaded.score(read, []).shape == (0, 2)


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (lambda: distill.DistillSettings(features="pixels"), "features 'pixels'"),
        (lambda: distill.DistillSettings(alpha=0), "alpha 0"),
        (lambda: distill.DistillSettings(ngrams=0), "ngrams 0"),
        (lambda: distill.SampleSettings(fraction=1.5), "sample_fraction 1.5"),
        (lambda: distill.SampleSettings(fraction=None, size=0), "sample_size 0"),
        (lambda: distill.SampleSettings(fraction=0.1, size=5), "exactly one of"),
    ],
)
def test_bad_settings_are_named(make, named: str) -> None:
    with pytest.raises(InputError, match=named):
        make()


def test_bad_training_input_is_named(reader_and_embeddings) -> None:
    read, emb = reader_and_embeddings
    with pytest.raises(InputError, match=r"need scores of shape \(2, 1\), got \(2, 2\)"):
        distill.train(
            read, emb, ["a b", "c d"], np.zeros((2, 2)), ["t"], distill.DistillSettings(), 8
        )
    with pytest.raises(InputError, match="holds 1 documents, at least 2"):
        distill.train(read, emb, ["a"], np.zeros((1, 1)), ["t"], distill.DistillSettings(), 8)

"""The hybrid ranker: its anchors and scores against independent computations, and in the
pipeline: the stored table is what NAG's and the embedding's stored work give, reruns are
identical, the embedding ranker's document cache is shared, and a new shard leaves the
other shards' tables alone."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from nag_assets.nag import build_profile, score_many
from nag_assets.nag.layers import restrict_profile
from nag_assets.pipeline import mixture, ranker_scores, shards, targets
from nag_assets.pipeline.common import NagSettings
from nag_assets.pipeline.layout import SHARD_SCORES, RankerScoresFooter
from nag_assets.pipeline.mixture import scored_shards
from nag_assets.pipeline.targets import load_profile
from nag_assets.rankers import Embedder, hybrid, registry
from nag_assets.rankers.embedding import centroid
from nag_assets.sources.files import InputError
from nag_assets.storage import Storage
from nag_assets_tests.tiny import tiny_backbone

TOPICS = {
    "plants": "leaf root seed flower grows water soil green",
    "stars": "star light sky planet orbit night space bright",
}
TARGETS = list(TOPICS)


def _nags(rng: np.random.Generator, n: int, layers: int, k: int, d_ff: int) -> np.ndarray:
    """n random NAGs: K distinct neurons per layer, skewed towards low indices."""
    p = 1.0 / np.arange(1, d_ff + 1)
    p /= p.sum()
    out = [[rng.choice(d_ff, size=k, replace=False, p=p) for _ in range(layers)] for _ in range(n)]
    return np.array(out, dtype=np.int16)


@pytest.mark.parametrize("layers", [None, (2, 3)])
def test_nag_anchor_is_the_examples_leave_one_out_mean_score(layers) -> None:
    rng = np.random.default_rng(0)
    n, n_layers, k, d_ff = 12, 4, 3, 20
    nags = _nags(rng, n, n_layers, k, d_ff)
    profile = restrict_profile(build_profile(nags, d_ff), layers)
    zero, one = hybrid.nag_anchor(profile, k, n)
    # independently: each example scored against the profile of the other n - 1
    loo = []
    for i in range(n):
        others = restrict_profile(build_profile(np.delete(nags, i, axis=0), d_ff), layers)
        loo.append(score_many(nags[i : i + 1], others[None])[0, 0])
    assert one == pytest.approx(np.mean(loo), rel=1e-5)
    assert zero == k / d_ff
    # zero: what a document of uniformly drawn neurons scores on average
    uniform = np.array([[rng.permutation(d_ff)[:k] for _ in range(n_layers)] for _ in range(4000)])
    random_mean = score_many(uniform.astype(np.int16), profile[None]).mean()
    assert random_mean == pytest.approx(zero, rel=0.05)


def test_cosine_anchor_is_the_leave_one_out_cosine() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(7, 5))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    expected = np.mean([x[i] @ centroid(np.delete(x, i, axis=0)) for i in range(7)])
    assert hybrid.cosine_anchor(x) == pytest.approx(expected)
    assert hybrid.cosine_anchor(x[:1]) == pytest.approx(1.0)  # alone: its own centroid


def test_scores_are_the_sigmoid_of_the_weighted_anchored_scores() -> None:
    nag = np.array([[0.05, 0.2], [0.1, 0.01], [0.3, 0.05]])
    emb = np.array([[0.6, 0.9], [0.8, 0.5], [0.55, 0.7]])
    anchors = hybrid.Anchors(np.array([0.01, 0.02]), np.array([0.2, 0.1]), np.array([0.5, 0.4]))
    got = hybrid.hybrid_scores(nag, emb, anchors, 0.7)
    assert got.shape == (3, 2) and got.dtype == np.float32
    for i in range(3):
        for t in range(2):
            n = (nag[i, t] - anchors.nag_zero[t]) / (anchors.nag_one[t] - anchors.nag_zero[t])
            e = (2 * emb[i, t] - 1) / anchors.cos_one[t]
            assert got[i, t] == pytest.approx(1 / (1 + np.exp(-(0.3 * n + 0.7 * e))), rel=1e-6)
    # the ends are each ranker's own order
    assert np.array_equal(
        np.argsort(hybrid.hybrid_scores(nag, emb, anchors, 0.0), 0), np.argsort(nag, 0)
    )
    assert np.array_equal(
        np.argsort(hybrid.hybrid_scores(nag, emb, anchors, 1.0), 0), np.argsort(emb, 0)
    )
    with pytest.raises(InputError, match=r"hybrid_weight 1\.5"):
        hybrid.hybrid_scores(nag, emb, anchors, 1.5)


class CountingEmbedder:
    """A deterministic bag-of-words embedder that records every text it encodes."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.embedder = Embedder("bag-of-words-test", self.encode)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), 16), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.split():
                out[i, hashlib.sha256(word.encode()).digest()[0] % 16] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)


def _write(root: Path, folder: str, name: str, texts: list[str]) -> None:
    (root / folder).mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"id": f"d{i}", "text": t}) for i, t in enumerate(texts)]
    (root / folder / name).write_text("\n".join(lines) + "\n")


def _add_shard(storage: Storage, root: Path, name: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    words = " ".join(TOPICS.values()).split()
    texts = [" ".join(rng.choice(words, size=rng.integers(3, 10))) for _ in range(30)]
    _write(root, "shards", f"{name}.jsonl", texts)
    shards.shard_nag(storage, name, BACKBONE, SETTINGS)
    shards.shard_scores(storage, name, TARGETS)


BACKBONE = tiny_backbone()
SETTINGS = NagSettings(top_k=4, layers="1-2")


@pytest.fixture
def store(tmp_path: Path) -> Storage:
    storage = Storage(str(tmp_path))
    for t, topic in TOPICS.items():
        _write(tmp_path, "targets", f"{t}.jsonl", [f"{topic} {i}" for i in range(8)])
        targets.target_dataset(storage, t, BACKBONE.count_tokens)
        targets.target_nag(storage, t, BACKBONE, SETTINGS)
    for i, s in enumerate(["s0", "s1"]):
        _add_shard(storage, tmp_path, s, i)
    return storage


def _run(storage: Storage, name: str, embedder: CountingEmbedder) -> dict:
    scored = scored_shards(storage, sorted(_shards(storage)), TARGETS)[0]
    return ranker_scores.ranker_scores(storage, name, scored, TARGETS, embedder=embedder.embedder)


def _shards(storage: Storage) -> list[str]:
    return [p.stem for p in Path(storage.root).joinpath("shards").glob("*.jsonl")]


def _texts(storage: Storage, shard: str) -> list[str]:
    lines = Path(storage.root, "shards", f"{shard}.jsonl").read_text().splitlines()
    return [json.loads(x)["text"] for x in lines]


def _table(storage: Storage, shard: str) -> pl.DataFrame:
    return storage.read_parquet(ranker_scores.score_folder("hybrid"), f"{shard}.parquet")


def test_the_stored_table_is_nag_and_embedding_combined(store: Storage) -> None:
    embedder = CountingEmbedder()
    _run(store, "hybrid", embedder)
    weight = registry.Options().hybrid_weight
    for s in ["s0", "s1"]:
        nag_table = store.read_parquet(SHARD_SCORES, f"{s}.parquet")
        texts = _texts(store, s)
        docs = embedder.encode(texts)
        got = _table(store, s)
        assert got.select("id", "tokens").equals(nag_table.select("id", "tokens"))
        for t in TARGETS:
            profile, footer = load_profile(store, t)
            examples = embedder.encode([f"{TOPICS[t]} {i}" for i in range(8)])
            zero, one = hybrid.nag_anchor(profile, footer.top_k, 8)
            cos_one = hybrid.cosine_anchor(examples)
            cos = docs.astype(np.float64) @ centroid(examples)
            n = (nag_table[t].to_numpy() - zero) / (one - zero)
            mixed = (1 - weight) * n + weight * cos / cos_one
            expected = 1 / (1 + np.exp(-mixed))
            np.testing.assert_allclose(got[t].to_numpy(), expected, rtol=2e-6)


def test_reruns_are_identical_and_the_embedding_cache_is_shared(store: Storage) -> None:
    embedder = CountingEmbedder()
    _run(store, "embedding", embedder)
    encoded = {x for call in embedder.calls for x in call}
    embedder.calls.clear()
    _run(store, "hybrid", embedder)  # the shards' embeddings come from embedding's cache
    shard_texts = set(_texts(store, "s0") + _texts(store, "s1"))
    now = {x for call in embedder.calls for x in call}
    assert shard_texts <= encoded and not (now & (shard_texts - _target_texts()))
    first = {s: _table(store, s) for s in ["s0", "s1"]}
    embedder.calls.clear()
    footers = _run(store, "hybrid", embedder)
    assert embedder.calls == []  # current: nothing read or encoded
    for s in ["s0", "s1"]:
        assert _table(store, s).equals(first[s])
        assert isinstance(footers[s], RankerScoresFooter)
    # computed afresh (the tables removed, the caches too): the same scores
    for path in Path(store.root).rglob("*"):
        if "baseline_scores" in path.parts and path.is_file():
            path.unlink()
    _run(store, "hybrid", CountingEmbedder())
    for s in ["s0", "s1"]:
        assert _table(store, s).equals(first[s])


def _target_texts() -> set[str]:
    return {f"{topic} {i}" for topic in TOPICS.values() for i in range(8)}


def test_a_new_shard_scores_only_itself(store: Storage) -> None:
    assert not registry.get("hybrid").whole_pool
    embedder = CountingEmbedder()
    before = _run(store, "hybrid", embedder)
    tables = {s: _table(store, s) for s in ["s0", "s1"]}
    _add_shard(store, Path(store.root), "s2", 7)
    embedder.calls.clear()
    after = _run(store, "hybrid", embedder)
    for s in ["s0", "s1"]:
        assert after[s].version == before[s].version  # not rewritten
        assert _table(store, s).equals(tables[s])
    s2_texts = set(_texts(store, "s2"))
    encoded = {x for call in embedder.calls for x in call}
    assert encoded - _target_texts() == s2_texts  # only the new shard's documents


def test_the_weight_setting_reaches_the_scores_and_their_version(store: Storage) -> None:
    embedder = CountingEmbedder()
    scored = scored_shards(store, ["s0", "s1"], TARGETS)[0]
    run = ranker_scores.ranker_scores
    default = run(store, "hybrid", scored, TARGETS, embedder=embedder.embedder)["s0"]
    nag_only = run(store, "hybrid", scored, TARGETS, embedder=embedder.embedder, hybrid_weight=0.0)
    assert nag_only["s0"].version != default.version  # a new weight rescores
    got = _table(store, "s0")
    nag = store.read_parquet(SHARD_SCORES, "s0.parquet")
    for t in TARGETS:  # weight 0: NAG's own order (a higher NAG score never scores lower)
        a, b = nag[t].to_numpy(), got[t].to_numpy()
        assert ((a[:, None] > a[None, :]) <= (b[:, None] >= b[None, :])).all()
        assert len(set(b)) > 1
    with pytest.raises(InputError, match="hybrid_weight"):
        run(store, "hybrid", scored, TARGETS, embedder=embedder.embedder, hybrid_weight=-0.1)
    with pytest.raises(InputError, match="hybrid_weight"):
        mixture.MixtureSettings(ranker="hybrid", hybrid_weight=1.5)

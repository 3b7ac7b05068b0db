"""`hybrid` (beyond the paper): NAG's score and the embedding ranker's, averaged with a weight
after each is put on a scale anchored by the target's own examples.

The two scores live on unrelated scales (a NAG score is a share of profile mass, ~0.003 to
~0.1; the embedding score is (1 + cosine) / 2), so neither can be added to the other as it
is. Ranks over the pool would fix that but make every shard's scores depend on every other
shard's. Instead each score is mapped, per target, by a line through two anchors that need
no pool at all:

- NAG: 0 at the score of a document whose neurons were drawn at random (K / d_ff: the
  profile's mass per layer is 1 over d_ff neurons, K of them per layer), 1 at the mean
  leave-one-out score of the target's own examples, which follows from the profile alone
  (`nag_anchor`).
- embedding: 0 at cosine 0 (unrelated text), 1 at the mean leave-one-out cosine of the
  target's example embeddings to the centroid of the others (`cosine_anchor`).

    hybrid = sigmoid((1 - weight) * nag' + weight * embedding')

(the sigmoid only keeps the score in (0, 1); it is monotone, so the selection is that of the
weighted sum). A document's score depends on its own two scores and the target alone: a new
shard scores only itself. Both inputs are reused: NAG's are the shard's `shard_scores`
columns, the embedding ranker's document embeddings come from its own per-shard cache
(`embedding.RANKER`'s `_docs/`), so running both rankers encodes each document once. The
weight (`Options.hybrid_weight`) was chosen on the dev targets of benchmarks/hybrid.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nag_assets.rankers import embedding
from nag_assets.rankers.registry import DEFAULT_HYBRID_WEIGHT, Options, Ranker
from nag_assets.sources.files import InputError


@dataclass(frozen=True)
class Anchors:
    """Per target (arrays of length T): where each score maps to 0 and to 1."""

    nag_zero: np.ndarray
    nag_one: np.ndarray
    cos_one: np.ndarray


def nag_anchor(profile: np.ndarray, top_k: int, n_examples: int) -> tuple[float, float]:
    """(random-document score, mean leave-one-out score of the examples) of one target's
    profile, (L, d_ff) as `build_profile` (possibly `restrict_profile`d) makes it from
    `n_examples` NAGs of `top_k` neurons per layer.

    With w the per-layer frequency profile and p = scale * w on the kept layers (scale =
    L / kept layers), the examples' mean score is K / (L * scale) * sum(p^2), and removing an
    example from the profile turns its score s into (n * s - 1) / (n - 1)."""
    p = np.asarray(profile, dtype=np.float64)
    n_layers, d_ff = p.shape
    kept = int((p.sum(axis=1) > 0).sum())
    if kept == 0 or n_examples < 1:
        raise InputError("hybrid: a target profile without examples has no anchor")
    scale = n_layers / kept
    mean = top_k / (n_layers * scale) * float((p * p).sum())
    if n_examples > 1:
        mean = (n_examples * mean - 1.0) / (n_examples - 1)
    return top_k / d_ff, mean


def cosine_anchor(example_embeddings: np.ndarray) -> float:
    """Mean cosine of each example's (L2-normalised) embedding to the normalised mean of the
    others' (to the mean of all, itself included, when there is one example)."""
    x = np.asarray(example_embeddings, dtype=np.float64)
    if len(x) == 0:
        raise InputError("hybrid: a target without examples has no anchor")
    total = x.sum(axis=0)
    others = total[None, :] - x if len(x) > 1 else total[None, :]
    norms = np.linalg.norm(others, axis=1)
    cos = np.einsum("ij,ij->i", x, others) / np.where(norms > 0, norms, 1.0)
    return float(cos.mean())


def hybrid_scores(nag: np.ndarray, emb: np.ndarray, anchors: Anchors, weight: float) -> np.ndarray:
    """(n, T) float32 in (0, 1) from NAG scores and embedding scores ((1 + cos) / 2), both
    (n, T): sigmoid of the weighted mean of the two anchored scores."""
    check_weight(weight)
    nag = np.asarray(nag, dtype=np.float64)
    cos = 2.0 * np.asarray(emb, dtype=np.float64) - 1.0
    nag_span = np.maximum(anchors.nag_one - anchors.nag_zero, 1e-12)
    nag_scaled = (nag - anchors.nag_zero) / nag_span
    emb_scaled = cos / np.maximum(anchors.cos_one, 1e-12)
    mixed = (1.0 - weight) * nag_scaled + weight * emb_scaled
    return (1.0 / (1.0 + np.exp(-np.clip(mixed, -30.0, 30.0)))).astype(np.float32)


def check_weight(weight: float) -> None:
    if not 0.0 <= weight <= 1.0:
        raise InputError(f"hybrid_weight {weight} must be in [0, 1] (0: NAG alone)")


def fit_anchors(
    profiles: Sequence[np.ndarray],
    top_k: int,
    examples: Sequence[np.ndarray],
) -> tuple[Anchors, list[np.ndarray]]:
    """(anchors, centroids) of T targets from their profiles and their examples' embeddings."""
    nags = [nag_anchor(p, top_k, len(x)) for p, x in zip(profiles, examples, strict=True)]
    anchors = Anchors(
        np.array([a for a, _ in nags]),
        np.array([b for _, b in nags]),
        np.array([cosine_anchor(x) for x in examples]),
    )
    return anchors, [embedding.centroid(x) for x in examples]


def _fit(inputs) -> tuple[Anchors, list[np.ndarray]]:
    profiles, top_k = inputs.target_profiles()
    encode = inputs.embedder().encode
    return fit_anchors(profiles, top_k, [encode(inputs.target_texts(t)) for t in inputs.targets])


def _score(inputs, state: tuple[Anchors, list[np.ndarray]], shard: str) -> np.ndarray:
    anchors, centroids = state
    score = embedding.RANKER.score
    assert score is not None  # the embedding ranker stores its scores
    emb = score(inputs, centroids, shard)  # its cache, its scores
    return hybrid_scores(inputs.nag_scores(shard), emb, anchors, inputs.options.hybrid_weight)


def _version(options: Options) -> list:
    check_weight(options.hybrid_weight)
    return [*embedding.RANKER.version_inputs(options), options.hybrid_weight]


RANKER = Ranker(
    "hybrid",
    "NAG and embedding similarity, each anchored on the target's examples, weighted",
    fit=_fit,
    score=_score,
    version_inputs=_version,
    order=5,
)

__all__ = ["DEFAULT_HYBRID_WEIGHT", "Anchors", "cosine_anchor", "hybrid_scores", "nag_anchor"]

"""Target profiles: how often each neuron is in a target example's NAG."""

from __future__ import annotations

import numpy as np


def build_profile(nags: np.ndarray, d_ff: int) -> np.ndarray:
    """(L, d_ff) float64 with w_l[k] = #examples whose NAG has (l, k) / (n * K); rows sum to 1.

    NAGs of texts without tokens (all -1) are ignored.
    """
    nags = _valid(np.asarray(nags))
    if nags.ndim != 3:
        raise ValueError(f"NAGs must have shape (n, L, K), got {nags.shape}")
    n, n_layers, k = nags.shape
    if n == 0:
        raise ValueError("a profile needs at least one NAG")
    if nags.max() >= d_ff:
        raise ValueError(f"NAG holds neuron {int(nags.max())}, outside d_ff={d_ff}")
    flat = nags.astype(np.int64) + (np.arange(n_layers, dtype=np.int64) * d_ff)[None, :, None]
    counts = np.bincount(flat.ravel(), minlength=n_layers * d_ff)
    return counts.reshape(n_layers, d_ff) / (n * k)


def _valid(nags: np.ndarray) -> np.ndarray:
    if nags.ndim != 3:
        return nags
    empty = (nags == -1).all(axis=(1, 2))
    if (nags[~empty] < 0).any():
        raise ValueError(f"NAG holds neuron {int(nags[~empty].min())}, a negative index")
    return nags[~empty]


def top_neurons(profile: np.ndarray, n: int = 5) -> np.ndarray:
    """(L, n) the most frequent neurons per layer, ties by neuron index."""
    return np.argsort(-profile, axis=1, kind="stable")[:, :n]


def concentration(profile: np.ndarray, k: int) -> float:
    """Share of a layer's NAG slots taken by its K most frequent neurons, averaged over layers.

    1.0 means every example has the same NAG; K/d_ff is the floor for a spread-out profile.
    """
    return float(layer_concentration(profile, k).mean())


def layer_concentration(profile: np.ndarray, k: int) -> np.ndarray:
    """Per layer, the share of its NAG slots taken by its K most frequent neurons."""
    return np.sort(profile, axis=1)[:, ::-1][:, :k].sum(axis=1)


def contrastive_profile(target: np.ndarray, pool: np.ndarray, pool_docs: int, k: int) -> np.ndarray:
    """A variant beyond the paper: each neuron's target frequency relative to its pool
    frequency, w_l[k] ~ target_l[k] / (pool_l[k] + 1 / (pool_docs * K)) (the pool profile
    smoothed by one pseudo-document holding every neuron), renormalised so each layer sums
    to 1 (scores stay in [0, 1]). Always-on neurons, frequent in the pool too, lose weight."""
    target = np.asarray(target, dtype=np.float64)
    pool = np.asarray(pool, dtype=np.float64)
    if target.shape != pool.shape:
        raise ValueError(f"target profile {target.shape} and pool profile {pool.shape} differ")
    ratio = target / (pool + 1.0 / (max(pool_docs, 1) * max(k, 1)))
    sums = ratio.sum(axis=1, keepdims=True)
    return np.divide(ratio, sums, out=np.zeros_like(ratio), where=sums > 0)


def contrastive_profiles(profiles: list[np.ndarray], pool: list[np.ndarray], k: int) -> np.ndarray:
    """(T, L, d_ff) the targets' contrastive profiles against the pool's NAG frequencies
    (`pool`: the NAGs of each shard, or of the pool in one array)."""
    pool_nags = np.concatenate(pool)
    pool_profile = build_profile(pool_nags, profiles[0].shape[1])
    return np.stack([contrastive_profile(p, pool_profile, len(pool_nags), k) for p in profiles])


def neuron_use(nags: np.ndarray) -> dict:
    """How many distinct neurons the NAGs use per layer (mean, min), and the share of texts
    whose NAG holds the layer's most common neuron (mean over layers): with a small backbone
    a few always-on neurons can take most slots, and then a NAG says little about its text."""
    valid = _valid(np.asarray(nags))
    if len(valid) == 0:
        return {}
    distinct, top_share = [], []
    for layer in range(valid.shape[1]):
        _, counts = np.unique(valid[:, layer], return_counts=True)
        distinct.append(len(counts))
        top_share.append(counts.max() / len(valid))
    return {
        "distinct_neurons_per_layer": round(float(np.mean(distinct)), 1),
        "distinct_neurons_per_layer_min": int(np.min(distinct)),
        "top_neuron_share": round(float(np.mean(top_share)), 4),
    }

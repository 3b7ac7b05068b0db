"""Scores: how much a document's NAG overlaps a target profile.

score(c, D) = (1/L) * sum_l sum_{k in NAG_l(c)} w_l[k], the mean pairwise Dice similarity of
c's NAG with the target's NAGs. Scoring many documents against many targets is one
`embedding_bag` call: each document is a bag of L*K row ids into a (L*d_ff, T) weight table.
"""

from __future__ import annotations

import numpy as np
import torch

CHUNK = 1 << 16  # documents per call: bounds the int64 index copy


def score_nags(nags: np.ndarray, profile: np.ndarray) -> np.ndarray:
    """(n,) score of each NAG against one (L, d_ff) profile."""
    return score_many(nags, np.asarray(profile)[None])[:, 0]


def score_many(nags: np.ndarray, profiles: np.ndarray) -> np.ndarray:
    """(n, T) float32 scores of each NAG against T stacked (T, L, d_ff) profiles.

    NAGs of texts without tokens (all -1) score 0.
    """
    nags = np.asarray(nags)
    profiles = np.asarray(profiles)
    n, n_layers, k = nags.shape
    t, p_layers, d_ff = profiles.shape
    if p_layers != n_layers:
        raise ValueError(f"NAGs have {n_layers} layers but the profiles have {p_layers}")
    if n and int(nags.max()) >= d_ff:
        raise ValueError(f"NAGs hold neuron {int(nags.max())}, outside the profiles' d_ff={d_ff}")
    # float64 sums: float32 ones drift past 1 and depend on the order of a NAG's neurons
    table = torch.from_numpy(
        np.ascontiguousarray(profiles.reshape(t, -1).T, dtype=np.float64) / n_layers
    )
    table = torch.cat([table, torch.zeros((1, t), dtype=table.dtype)])  # "no neuron" (-1)
    offsets = torch.arange(n_layers, dtype=torch.int64).repeat_interleave(k) * d_ff
    out = np.empty((n, t), dtype=np.float32)
    for s in range(0, n, CHUNK):
        idx = torch.from_numpy(nags[s : s + CHUNK].reshape(-1, n_layers * k).astype(np.int64))
        idx = torch.where(idx < 0, table.shape[0] - 1, idx + offsets)
        out[s : s + CHUNK] = torch.nn.functional.embedding_bag(idx, table, mode="sum").numpy()
    return out

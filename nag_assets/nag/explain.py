"""Why a document scored what it did: its score split over the layers and neurons of its NAG.

score(c, D) = (1/L) * sum_l sum_{k in NAG_l(c)} w_l[k], so each (layer, neuron) of the NAG
contributes w_l[k] / L, and the contributions add up to the score exactly: the
interpretability the method promises (which neurons tie the document to the target).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Contribution:
    layer: int
    neuron: int
    share: float  # of the score: w_l[k] / L


@dataclass(frozen=True)
class Explanation:
    score: float
    layers: list[tuple[int, float]]  # (layer, its part of the score), largest first
    neurons: list[Contribution]  # the largest contributions first (ties: layer, neuron)


def explain(nag: np.ndarray, profile: np.ndarray, top: int = 5) -> Explanation:
    """The (L, K) NAG of one document against an (L, d) profile: per-layer parts and the
    `top` neurons that gave the most (a -1 slot is no neuron)."""
    nag = np.asarray(nag, dtype=np.int64)
    n_layers = nag.shape[0]
    rows = np.repeat(np.arange(n_layers), nag.shape[1])
    cols = nag.ravel()
    real = cols >= 0
    rows, cols = rows[real], cols[real]
    shares = np.asarray(profile, dtype=np.float64)[rows, cols] / n_layers
    per_layer = np.bincount(rows, weights=shares, minlength=n_layers)
    order = np.lexsort((cols, rows, -shares))[:top]
    layers = sorted(((int(i), float(v)) for i, v in enumerate(per_layer) if v > 0),
                    key=lambda x: (-x[1], x[0]))  # fmt: skip
    return Explanation(
        float(shares.sum()),
        layers,
        [Contribution(int(rows[i]), int(cols[i]), float(shares[i])) for i in order],
    )

"""Uniform random ranking, seeded and independent of how the pool is sharded."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from nag_assets.rankers.registry import Ranker


def random_scores(keys: Sequence[str], targets: Sequence[str], seed: int = 0) -> np.ndarray:
    """(n, T) float32 in [0, 1): a hash of (seed, target, key) per document and target.

    `keys` should name documents uniquely across the pool (the mixture passes "shard/id")."""
    out = np.empty((len(keys), len(targets)), dtype=np.float32)
    for t, target in enumerate(targets):
        prefix = f"{seed}\x00{target}\x00".encode()
        for i, key in enumerate(keys):
            h = hashlib.blake2b(prefix + str(key).encode(), digest_size=8).digest()
            out[i, t] = (int.from_bytes(h, "little") >> 40) / float(1 << 24)  # exact in f32
    return out


def _score(inputs, _state, shard: str) -> np.ndarray:
    return random_scores(inputs.doc_keys(shard), inputs.targets, inputs.seed)


RANKER = Ranker(
    "random",
    "seeded uniform, independent of how the pool is sharded",
    score=_score,
    version_inputs=lambda options: [options.seed],
    uses_seed=True,
    order=20,
)

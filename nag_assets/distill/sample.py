"""The training sample: which documents the backbone reads so the distilled scorer can learn.

A document is in the sample by a hash of (seed, shard, id) alone, so the draw is the same
however the pool is sharded or ordered, and adding a shard never changes who is sampled in
the others (with a fraction). With a count, the `size` documents of smallest hash are taken
over the whole pool: exact in size, but a new shard can displace some of the old picks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from nag_assets.sources.files import InputError


@dataclass(frozen=True)
class SampleSettings:
    """`fraction` of the pool (each document independently), or exactly `size` documents."""

    fraction: float | None = 0.1
    size: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.fraction is None) == (self.size is None):
            raise InputError(
                f"sample: set exactly one of sample_fraction ({self.fraction!r}) and "
                f"sample_size ({self.size!r})"
            )
        if self.fraction is not None and not (
            isinstance(self.fraction, (int, float)) and 0 < self.fraction <= 1
        ):
            raise InputError(f"sample_fraction {self.fraction!r} must be in (0, 1]")
        if self.size is not None and not (isinstance(self.size, int) and self.size > 0):
            raise InputError(f"sample_size {self.size!r} must be a whole number > 0")


def sample_keys(shard: str, ids: Sequence[str], seed: int = 0) -> np.ndarray:
    """(n,) float64 in [0, 1): each document's place in the draw, from (seed, shard, id)."""
    prefix = f"{seed}\x00{shard}\x00".encode()
    out = np.empty(len(ids), dtype=np.float64)
    for i, doc_id in enumerate(ids):
        h = hashlib.blake2b(prefix + str(doc_id).encode(), digest_size=8).digest()
        out[i] = (int.from_bytes(h, "little") >> 11) / float(1 << 53)
    return out


def draw(pool: Mapping[str, Sequence[str]], settings: SampleSettings) -> dict[str, np.ndarray]:
    """shard -> (n,) bool mask over its ids (in their order): in the sample or not."""
    keys = {s: sample_keys(s, ids, settings.seed) for s, ids in pool.items()}
    if settings.fraction is not None:
        return {s: k < settings.fraction for s, k in keys.items()}
    everything = np.concatenate([k for k in keys.values()] or [np.zeros(0)])
    if settings.size >= len(everything):
        return {s: np.ones(len(k), dtype=bool) for s, k in keys.items()}
    # the size-th smallest key; keys are distinct up to a 2^-53 collision
    threshold = np.partition(everything, settings.size - 1)[settings.size - 1]
    return {s: k <= threshold for s, k in keys.items()}

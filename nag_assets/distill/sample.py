"""The training sample: which documents the backbone reads so the distilled scorer can learn.

A document is in the sample by a hash of (seed, shard, id) alone, so the draw is the same
however the pool is sharded or ordered, and adding a shard never changes who is sampled in
the others (with a fraction). With a count, the `size` documents of smallest hash are taken
over the whole pool: exact in size, but a new shard can displace some of the old picks.
`shards` (name patterns) limits the draw to the shards that match: a shard outside them adds
nothing to the sample, so it never needs the backbone.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from nag_assets.sources.files import InputError

ALL_SHARDS = ("*",)


@dataclass(frozen=True)
class SampleSettings:
    """`fraction` of the pool (each document independently), or exactly `size` documents,
    drawn from the shards whose names match one of `shards` (fnmatch patterns; all by
    default)."""

    fraction: float | None = 0.1
    size: int | None = None
    seed: int = 0
    shards: tuple[str, ...] = ALL_SHARDS

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
        if not self.shards or not all(isinstance(p, str) and p.strip() for p in self.shards):
            raise InputError(
                f"sample_shards {list(self.shards)!r} must be one or more shard names or "
                "patterns (e.g. 'train-*')"
            )

    def covers(self, shard: str) -> bool:
        """Whether the shard's documents may be drawn (its name matches a pattern)."""
        return any(fnmatch.fnmatchcase(shard, p) for p in self.shards)


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
    keys = {s: sample_keys(s, ids, settings.seed) for s, ids in pool.items() if settings.covers(s)}
    if settings.size is None:  # then a fraction: SampleSettings holds exactly one
        picked = {s: k < settings.fraction for s, k in keys.items()}
    else:
        everything = np.concatenate([k for k in keys.values()] or [np.zeros(0)])
        # the size-th smallest key; keys are distinct up to a 2^-53 collision
        size = min(settings.size, len(everything))
        threshold = np.partition(everything, size - 1)[size - 1] if size else -1.0
        picked = {s: k <= threshold for s, k in keys.items()}
    return {s: picked.get(s, np.zeros(len(ids), dtype=bool)) for s, ids in pool.items()}

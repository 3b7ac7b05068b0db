"""Quality blend (the paper's NAG + FineWeb-Edu experiment): a document's NAG score combined
with a per-document quality score, both min-max normalised over the pool.

    blended = (1 - weight) * minmax(score) + weight * minmax(quality)

with `minmax(quality)` flipped to 1 - minmax(quality) when lower quality values are better.
weight 0.5 ranks exactly as the paper's sum of the two normalised signals; weight 0 is NAG
alone. The pool's ranges are passed in (`Range`), so shards can be blended one at a time
with the whole pool's minimum and maximum, as a global min-max would give.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

DIRECTIONS = ("higher", "lower")  # which quality values are better


@dataclass(frozen=True)
class Range:
    lo: float
    hi: float

    @classmethod
    def of(cls, parts: Iterable[np.ndarray]) -> Range:
        """The finite minimum and maximum over arrays (e.g. one per shard)."""
        lo, hi = np.inf, -np.inf
        for p in parts:
            p = np.asarray(p, dtype=np.float64)
            p = p[np.isfinite(p)]
            if p.size:
                lo, hi = min(lo, float(p.min())), max(hi, float(p.max()))
        if lo > hi:
            raise ValueError("no finite value to take a range of")
        return cls(lo, hi)


def minmax(x: np.ndarray, r: Range) -> np.ndarray:
    """(x - lo) / (hi - lo) in float64; all zeros when the range is a single value."""
    x = np.asarray(x, dtype=np.float64)
    if r.hi == r.lo:
        return np.zeros_like(x)
    return (x - r.lo) / (r.hi - r.lo)


def check_blend(weight: float, direction: str) -> None:
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"quality weight {weight} must be in [0, 1]")
    if direction not in DIRECTIONS:
        raise ValueError(f"quality direction {direction!r} must be one of {list(DIRECTIONS)}")


def blend(
    scores: np.ndarray,
    score_ranges: list[Range],
    quality: np.ndarray,
    quality_range: Range,
    weight: float = 0.5,
    direction: str = "higher",
) -> np.ndarray:
    """(n, T) blended scores in [0, 1] for (n, T) `scores` and (n,) `quality`; a document
    without a quality value (NaN) gets the pool's worst quality."""
    check_blend(weight, direction)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != len(score_ranges):
        raise ValueError(f"scores {scores.shape} need one range per column")
    q = minmax(quality, quality_range)
    if direction == "lower":
        q = 1.0 - q
    q = np.nan_to_num(q, nan=0.0)
    nag = np.stack([minmax(scores[:, c], r) for c, r in enumerate(score_ranges)], axis=1)
    return np.clip((1.0 - weight) * nag + weight * q[:, None], 0.0, 1.0)

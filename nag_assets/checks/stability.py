"""stability: does the selection hold when the target has fewer examples?"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nag_assets.checks.common import jaccard, pool_nags, ready, selections, target_meta, target_nags
from nag_assets.nag import build_profile, score_many
from nag_assets.storage import Storage


def stability(
    storage: Storage,
    sizes: Sequence[int] = (25, 50, 100, 200),
    seeds: int = 3,
    fraction: float = 0.2,
    targets: list[str] | None = None,
) -> dict:
    """Jaccard of the selection from n examples (mean, min over seeds) with the one from all
    examples, per target. A size >= a target's example count is reported as `all`."""
    targets, usable = ready(storage, targets)
    nags, tokens, ids = pool_nags(storage, sorted(usable))
    by_target = {t: target_nags(storage, t) for t in targets}
    d_ff = target_meta(storage, targets[0]).d_ff

    def select(subsets: dict[str, np.ndarray]) -> dict[str, set]:
        profiles = np.stack([build_profile(subsets[t], d_ff) for t in targets])
        return selections(score_many(nags, profiles), tokens, ids, targets, fraction)

    full = select(by_target)
    out: dict = {t: {"examples": len(by_target[t])} for t in targets}
    for n in sizes:
        runs = [select(subsample(by_target, n, seed)) for seed in range(seeds)]
        for t in targets:
            key = str(n) if n < len(by_target[t]) else "all"
            js = [jaccard(r[t], full[t]) for r in runs]
            out[t][key] = {"mean": round(float(np.mean(js)), 4), "min": round(min(js), 4)}
    return {
        "check": "stability",
        "fraction": fraction,
        "seeds": seeds,
        "pool_documents": len(ids),
        "jaccard_with_all_examples": out,
    }


def subsample(by_target: dict[str, np.ndarray], n: int, seed: int) -> dict[str, np.ndarray]:
    """n random rows of each target's array (all of them when it has n or fewer)."""
    rng = np.random.default_rng(seed)
    return {t: x[rng.permutation(len(x))[:n]] if n < len(x) else x for t, x in by_target.items()}

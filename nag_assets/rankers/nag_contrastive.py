"""`nag_contrastive` (beyond the paper): NAG scores against the contrastive profile, each
neuron's target frequency relative to its frequency in the whole pool's NAGs
(`nag.profile.contrastive_profile`), so always-on neurons lose their weight. From the stored
NAGs: no backbone. The checks call this profile variant `contrastive`."""

from __future__ import annotations

import numpy as np

from nag_assets.nag import score_many
from nag_assets.nag.profile import contrastive_profiles
from nag_assets.rankers.registry import Ranker


def _fit(inputs) -> np.ndarray:
    profiles, top_k = inputs.target_profiles()
    pool = [inputs.shard_nags(s) for s in inputs.shards]
    return contrastive_profiles(profiles, pool, top_k)


RANKER = Ranker(
    "nag_contrastive",
    "NAG against each neuron's target frequency relative to the pool's",
    fit=_fit,
    score=lambda inputs, profiles, shard: score_many(inputs.shard_nags(shard), profiles),
    whole_pool=True,
    order=10,
)

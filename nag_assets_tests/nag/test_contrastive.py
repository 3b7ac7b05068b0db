"""The contrastive profile variant (beyond the paper)."""

import numpy as np
import pytest

from nag_assets.nag import build_profile
from nag_assets.nag.profile import contrastive_profile, top_neurons


def test_contrastive_profile_demotes_always_on_neurons() -> None:
    # neuron 0 is in every NAG, pool and target alike; neuron 3 only in the target's
    target = build_profile(np.array([[[0, 3]], [[0, 3]], [[0, 2]]]), 6)
    pool = build_profile(np.array([[[0, 1]], [[0, 2]], [[0, 4]], [[0, 5]], [[0, 3]]]), 6)
    c = contrastive_profile(target, pool, pool_docs=5, k=2)
    assert c.shape == target.shape
    assert c.sum(axis=1) == pytest.approx([1.0])
    assert top_neurons(target, 1)[0, 0] == 0  # the paper's profile: the always-on neuron
    assert top_neurons(c, 1)[0, 0] == 3  # contrastive: the target's own neuron
    assert c[0, 1] == 0 and c[0, 4] == 0  # never in the target: no weight
    with pytest.raises(ValueError):
        contrastive_profile(target, pool[:, :3], 5, 2)

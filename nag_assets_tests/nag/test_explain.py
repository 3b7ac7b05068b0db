"""A document's explanation adds up to its score, contribution by contribution."""

import numpy as np

from nag_assets.nag import build_profile, score_nags
from nag_assets.nag.explain import explain


def test_contributions_add_up_to_the_score() -> None:
    rng = np.random.default_rng(2)
    targets = np.stack([[rng.choice(10, 3, replace=False) for _ in range(4)] for _ in range(7)])
    profile = build_profile(targets.astype(np.int16), 10)
    doc = np.stack([rng.choice(10, 3, replace=False) for _ in range(4)]).astype(np.int16)
    doc[1, 2] = -1  # an empty slot gives nothing
    ex = explain(doc, profile, top=100)
    want = float(score_nags(np.maximum(doc, -1)[None], profile)[0])
    assert abs(ex.score - want) < 1e-6
    assert abs(sum(v for _, v in ex.layers) - ex.score) < 1e-12
    assert abs(sum(c.share for c in ex.neurons) - ex.score) < 1e-12
    by_hand = {
        (layer, int(k)): profile[layer, k] / 4 for layer in range(4) for k in doc[layer] if k >= 0
    }
    assert {(c.layer, c.neuron): c.share for c in ex.neurons} == by_hand
    shares = [c.share for c in ex.neurons]
    assert shares == sorted(shares, reverse=True)
    assert len(explain(doc, profile, top=2).neurons) == 2

"""Layer subsets: the spec grammar, and scores equal to the paper's score of sliced NAGs."""

import numpy as np
import pytest

from nag_assets.nag import build_profile, score_many
from nag_assets.nag.layers import LayerSpecError, parse_layers, restrict_profile


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("all", tuple(range(30))),
        ("last", (29,)),
        ("LAST:3", (27, 28, 29)),
        ("from:0.5", tuple(range(15, 30))),
        ("from:0", tuple(range(30))),
        ("20-22, 5,5", (5, 20, 21, 22)),
        ("0", (0,)),
    ],
)
def test_parse_layers(spec, expected):
    assert parse_layers(spec, 30) == expected


@pytest.mark.parametrize("spec", ["", "lats", "last:0", "last:31", "from:1", "3-x", "30", "-1"])
def test_bad_layer_specs_name_the_spec(spec):
    with pytest.raises(LayerSpecError, match="layers"):
        parse_layers(spec, 30)


def _dice_by_hand(doc: np.ndarray, targets: np.ndarray, layers) -> float:
    """Mean over the kept layers of the mean Dice of the doc's layer NAG with each target's."""
    k = doc.shape[1]
    per_layer = []
    for layer in layers:
        a = set(doc[layer].tolist())
        per_layer.append(np.mean([len(a & set(t[layer].tolist())) / k for t in targets]))
    return float(np.mean(per_layer))


@pytest.mark.parametrize("spec", ["all", "last", "1-2", "0,3"])
def test_restricted_profile_scores_the_sliced_nags(spec):
    rng = np.random.default_rng(0)
    n_layers, d, k = 4, 12, 3
    nags = np.stack(
        [np.stack([rng.choice(d, k, replace=False) for _ in range(n_layers)]) for _ in range(9)]
    ).astype(np.int16)
    docs, targets = nags[:4], nags[4:]
    layers = parse_layers(spec, n_layers)
    profile = restrict_profile(build_profile(targets, d), layers)
    got = score_many(docs, profile[None])[:, 0]
    want = [_dice_by_hand(doc, targets, layers) for doc in docs]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # the same as the paper's method on NAGs sliced to the subset
    sliced = score_many(docs[:, list(layers)], build_profile(targets[:, list(layers)], d)[None])
    np.testing.assert_allclose(got, sliced[:, 0], rtol=1e-6)

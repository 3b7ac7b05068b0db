"""Target profiles: w_l[k] = #target NAGs holding (l, k) / (|D| * K)."""

from __future__ import annotations

from collections import Counter
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given

from nag_assets.nag import build_profile
from nag_assets_tests.nag.strategies import nag_arrays


def reference_profile(nags: list, d_ff: int) -> list[list[Fraction]]:
    """Pure-Python count over the NAGs that are not all -1."""
    kept = [nag for nag in nags if any(k != -1 for layer in nag for k in layer)]
    n_layers, k = len(kept[0]), len(kept[0][0])
    counts = [Counter() for _ in range(n_layers)]
    for nag in kept:
        for layer, neurons in enumerate(nag):
            counts[layer].update(neurons)
    return [
        [Fraction(counts[layer][j], len(kept) * k) for j in range(d_ff)]
        for layer in range(n_layers)
    ]


def test_small_example_by_hand() -> None:
    # 3 texts, 2 layers, K=2, d_ff=4
    nags = np.array(
        [
            [[0, 1], [2, 3]],
            [[1, 2], [2, 0]],
            [[3, 1], [3, 2]],
        ],
        dtype=np.int16,
    )
    # layer 0: neuron 1 in all three NAGs, 0, 2 and 3 in one each; 6 slots in all
    # layer 1: neuron 2 in all three, 3 in two, 0 in one, 1 in none
    expected = np.array([[1, 3, 1, 1], [1, 0, 3, 2]]) / 6
    profile = build_profile(nags, d_ff=4)
    assert profile.shape == (2, 4)
    np.testing.assert_allclose(profile, expected, rtol=0, atol=1e-15)


def test_all_minus_one_nags_are_ignored() -> None:
    nags = np.array([[[0, 1], [2, 3]], [[1, 2], [2, 0]]], dtype=np.int16)
    empty = np.full((1, 2, 2), -1, dtype=np.int16)
    with_empty = np.concatenate([empty, nags[:1], empty, nags[1:]])
    np.testing.assert_array_equal(build_profile(with_empty, 4), build_profile(nags, 4))
    # the divisor is the 2 real NAGs, not 4 rows: neuron 1 of layer 0 is in both -> 2/(2*2)
    assert build_profile(with_empty, 4)[0, 1] == pytest.approx(0.5)


@given(nag_arrays())
def test_matches_pure_python_count(case: tuple[np.ndarray, int]) -> None:
    nags, d_ff = case
    profile = build_profile(nags, d_ff)
    expected = reference_profile(nags.tolist(), d_ff)
    assert profile.shape == (nags.shape[1], d_ff)
    np.testing.assert_allclose(profile, np.array(expected, dtype=np.float64), atol=1e-12)
    np.testing.assert_allclose(profile.sum(axis=1), 1.0, atol=1e-12)


@given(nag_arrays(min_n=2))
def test_empty_rows_do_not_change_the_profile(case: tuple[np.ndarray, int]) -> None:
    nags, d_ff = case
    padded = nags.copy()
    padded[0] = -1
    np.testing.assert_allclose(build_profile(padded, d_ff), build_profile(nags[1:], d_ff))


@pytest.mark.parametrize(
    "nags",
    [
        np.zeros((3, 2), dtype=np.int16),  # one layer too few
        np.zeros((1, 2, 2, 2), dtype=np.int16),  # one too many
        np.zeros((0, 2, 2), dtype=np.int16),  # no NAG at all
        np.full((2, 2, 2), -1, dtype=np.int16),  # only texts without tokens
    ],
    ids=["2d", "4d", "empty", "all-minus-one"],
)
def test_bad_shapes_raise(nags: np.ndarray) -> None:
    with pytest.raises(ValueError):
        build_profile(nags, d_ff=4)


@pytest.mark.parametrize("bad", [4, 100, -2], ids=["d_ff", "far", "negative"])
def test_out_of_range_neuron_raises(bad: int) -> None:
    nags = np.array([[[0, 1], [2, 3]], [[1, 2], [2, 0]]], dtype=np.int16)
    nags[1, 0, 1] = bad
    with pytest.raises(ValueError, match="neuron"):
        build_profile(nags, d_ff=4)


def test_partial_minus_one_nag_raises() -> None:
    # only an all -1 NAG means "no tokens"; a -1 next to real neurons is corrupt data
    nags = np.array([[[0, 1], [2, 3]], [[1, -1], [2, 0]]], dtype=np.int16)
    with pytest.raises(ValueError, match="neuron"):
        build_profile(nags, d_ff=4)


def test_neuron_use_counts_distinct_neurons_and_the_top_share() -> None:
    from nag_assets.nag.profile import neuron_use

    nags = np.array(
        [
            [[0, 1], [5, 6]],
            [[0, 2], [5, 7]],
            [[0, 3], [8, 9]],
            [[-1, -1], [-1, -1]],  # a text without tokens is left out
        ]
    )
    # layer 0: {0,1,2,3} -> 4 distinct, neuron 0 in 3/3; layer 1: {5..9} -> 5, neuron 5 in 2/3
    assert neuron_use(nags) == {
        "distinct_neurons_per_layer": 4.5,
        "distinct_neurons_per_layer_min": 4,
        "top_neuron_share": round((1 + 2 / 3) / 2, 4),
    }

"""Scores: the mean pairwise Dice similarity of a candidate NAG with the target NAGs."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nag_assets.nag import build_profile, score_many, score_nags
from nag_assets_tests.nag.strategies import nag_arrays


def dice(a: list[int], b: list[int]) -> Fraction:
    sa, sb = set(a), set(b)
    return Fraction(2 * len(sa & sb), len(sa) + len(sb))


def mean_dice(candidate: list[list[int]], targets: list[list[list[int]]]) -> Fraction:
    """Per layer Dice, mean over layers, then mean over targets; pure Python, with sets."""
    per_target = [
        sum((dice(c, t) for c, t in zip(candidate, target)), Fraction(0)) / len(candidate)
        for target in targets
    ]
    return sum(per_target, Fraction(0)) / len(per_target)


@st.composite
def scoring_cases(draw: st.DrawFn, n_profiles: int = 1):
    """Candidate NAGs and `n_profiles` target NAG sets sharing L, K and d_ff."""
    d_ff = draw(st.integers(1, 10))
    k = draw(st.integers(1, d_ff))
    n_layers = draw(st.integers(1, 4))
    same = dict(n_layers=n_layers, k=k, d_ff=d_ff)
    candidates, _ = draw(nag_arrays(**same, max_n=5))
    targets = [draw(nag_arrays(**same, max_n=5))[0] for _ in range(n_profiles)]
    return candidates, targets, d_ff


def test_small_example_by_hand() -> None:
    targets = np.array([[[0, 1], [2, 3]], [[1, 2], [2, 0]]], dtype=np.int16)
    candidate = np.array([[[1, 3], [2, 3]]], dtype=np.int16)
    # target 0: layer Dice 1/2 and 1 -> 3/4; target 1: 1/2 and 1/2 -> 1/2; mean 5/8
    score = score_nags(candidate, build_profile(targets, 4))
    assert score.shape == (1,)
    assert score[0] == pytest.approx(5 / 8, abs=1e-6)


@given(scoring_cases())
def test_score_is_mean_pairwise_dice(case) -> None:
    candidates, (targets,), d_ff = case
    scores = score_nags(candidates, build_profile(targets, d_ff))
    expected = [float(mean_dice(c, targets.tolist())) for c in candidates.tolist()]
    assert scores.shape == (len(candidates),)
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-6)
    assert ((scores >= 0) & (scores <= 1)).all()


@given(scoring_cases(n_profiles=3))
def test_score_many_columns_equal_score_nags(case) -> None:
    candidates, target_sets, d_ff = case
    profiles = np.stack([build_profile(t, d_ff) for t in target_sets])
    many = score_many(candidates, profiles)
    assert many.shape == (len(candidates), len(target_sets))
    for t, profile in enumerate(profiles):
        np.testing.assert_array_equal(many[:, t], score_nags(candidates, profile))


@given(st.integers(1, 40), st.integers(1, 40))
def test_identical_nags_score_exactly_one_at_most(n_layers: int, k: int) -> None:
    nag = np.tile(np.arange(k, dtype=np.int16), (1, n_layers, 1))
    scores = score_nags(np.concatenate([nag, nag[:, :, ::-1]]), build_profile(nag, k + 3))
    # float rounding must neither push the score past 1 nor depend on the neurons' order
    assert scores.max() <= 1.0
    assert scores[0] == scores[1] == pytest.approx(1.0, abs=1e-6)


def test_minus_one_nag_scores_zero() -> None:
    targets = np.array([[[0, 1], [2, 3]], [[1, 2], [2, 0]]], dtype=np.int16)
    candidates = np.concatenate([np.full((1, 2, 2), -1, dtype=np.int16), targets])
    scores = score_nags(candidates, build_profile(targets, 4))
    assert scores[0] == 0.0
    assert (scores[1:] > 0).all()


def test_empty_candidate_set() -> None:
    profile = build_profile(np.array([[[0, 1]]], dtype=np.int16), 4)
    assert score_nags(np.zeros((0, 1, 2), dtype=np.int16), profile).shape == (0,)


def test_layer_count_mismatch_raises() -> None:
    profile = build_profile(np.array([[[0, 1], [2, 3]]], dtype=np.int16), 4)  # 2 layers
    with pytest.raises(ValueError, match="layers"):
        score_nags(np.array([[[0, 1], [2, 3], [1, 2]]], dtype=np.int16), profile)
    with pytest.raises(ValueError, match="layers"):
        score_many(np.array([[[0, 1]]], dtype=np.int16), profile[None])

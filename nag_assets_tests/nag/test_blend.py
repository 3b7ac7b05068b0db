"""Quality blend against an independent recomputation of the paper's rule."""

import numpy as np
import pytest

from nag_assets.nag.blend import Range, blend


def _paper_order(distance, quality, higher_is_better):
    """The reference's rule: min-max both (lower is better), flip a higher-is-better
    quality, add, rank ascending (ties by position)."""

    def mm(x):
        return (x - x.min()) / (x.max() - x.min())

    q = mm(quality)
    combined = mm(distance) + (1 - q if higher_is_better else q)
    return np.lexsort((np.arange(len(distance)), combined))


@pytest.mark.parametrize("direction", ["higher", "lower"])
def test_equal_weight_ranks_as_the_paper(direction):
    rng = np.random.default_rng(1)
    scores = rng.uniform(0.2, 0.7, size=(50, 1))
    quality = rng.normal(3, 1, size=50)
    parts = [scores[:20, 0], scores[20:, 0]]  # two shards: the pool's range, not a shard's
    got = blend(scores, [Range.of(parts)], quality, Range.of([quality]), 0.5, direction)
    order = np.lexsort((np.arange(50), -got[:, 0]))
    np.testing.assert_array_equal(
        order, _paper_order(1 - scores[:, 0], quality, direction == "higher")
    )


def test_weights_and_missing_quality():
    scores = np.array([[0.1, 0.5], [0.3, 0.5], [0.2, 0.9]])
    quality = np.array([10.0, np.nan, 0.0])
    ranges = [Range(0.1, 0.3), Range(0.5, 0.9)]
    q = Range(0.0, 10.0)
    np.testing.assert_allclose(blend(scores, ranges, quality, q, 0.0), [[0, 0], [1, 0], [0.5, 1]])
    np.testing.assert_allclose(blend(scores, ranges, quality, q, 1.0), [[1, 1], [0, 0], [0, 0]])
    w = blend(scores, ranges, quality, q, 0.25, "lower")
    np.testing.assert_allclose(w[:, 0], [0.0, 0.75, 0.75 * 0.5 + 0.25])


def test_bad_settings_are_named():
    s, r = np.zeros((2, 1)), [Range(0, 1)]
    with pytest.raises(ValueError, match="weight"):
        blend(s, r, np.zeros(2), Range(0, 1), 1.5)
    with pytest.raises(ValueError, match="direction"):
        blend(s, r, np.zeros(2), Range(0, 1), 0.5, "up")
    with pytest.raises(ValueError, match="no finite"):
        Range.of([np.array([np.nan])])

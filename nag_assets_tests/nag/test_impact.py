"""Every neuron's impact, the impact baseline and baseline-normalized NAGs (beyond the
paper), against the float64 recomputation from each MLP's input."""

from __future__ import annotations

import numpy as np
import pytest

from nag_assets.nag import extract_impacts, extract_nags, nags_from_impacts, neuron_baseline
from nag_assets_tests.nag.test_extract import LONG, TEXTS, reference_impact
from nag_assets_tests.tiny import tiny_backbone

K = 5


@pytest.fixture(scope="module")
def backbone():
    return tiny_backbone("llama", seed=0)


@pytest.fixture(scope="module")
def reference(backbone) -> np.ndarray:
    return np.stack([reference_impact(backbone.model, "llama", t) for t in [*TEXTS, LONG]])


def test_impacts_match_the_reference(backbone, reference: np.ndarray) -> None:
    impacts, lengths = extract_impacts(backbone, [*TEXTS, "", LONG], batch_size=2)
    assert impacts.shape == (7, backbone.num_layers, backbone.d_ff)
    np.testing.assert_allclose(np.delete(impacts, 5, axis=0), reference, rtol=1e-4, atol=1e-6)
    assert lengths[5] == 0 and not impacts[5].any()  # a text without tokens: zeros


def test_baseline_is_the_mean_impact_of_texts_with_tokens(backbone, reference) -> None:
    baseline = neuron_baseline(backbone, [*TEXTS, " ", LONG], batch_size=3)
    assert baseline.shape == (backbone.num_layers, backbone.d_ff)
    np.testing.assert_allclose(baseline, reference.mean(axis=0), rtol=1e-4)
    with pytest.raises(ValueError, match="at least one text"):
        neuron_baseline(backbone, ["", "  "])


def test_normalized_nags_rank_impact_over_baseline(backbone, reference) -> None:
    rng = np.random.default_rng(0)
    baseline = rng.uniform(0.01, 2.0, (backbone.num_layers, backbone.d_ff)).astype(np.float32)
    nags, _ = extract_nags(backbone, [*TEXTS, LONG], K, batch_size=4, baseline=baseline)
    for i, impact in enumerate(reference):
        expected = np.argsort(-(impact / baseline), axis=1, kind="stable")[:, :K]
        np.testing.assert_array_equal(nags[i], expected)
    raw, _ = extract_nags(backbone, [*TEXTS, LONG], K, batch_size=4)
    assert (raw != nags).any()  # the baseline changes which neurons are kept
    ones = np.ones_like(baseline)
    np.testing.assert_array_equal(
        extract_nags(backbone, [*TEXTS, LONG], K, batch_size=4, baseline=ones)[0], raw
    )


def test_nags_from_impacts_equal_extraction(backbone) -> None:
    texts = [*TEXTS, "", LONG]
    impacts, lengths = extract_impacts(backbone, texts, batch_size=4)
    baseline = neuron_baseline(backbone, TEXTS)
    for k, b in [(K, None), (K, baseline), (12, None), (12, baseline)]:
        expected, _ = extract_nags(backbone, texts, k, batch_size=3, baseline=b)
        np.testing.assert_array_equal(nags_from_impacts(impacts, lengths, k, b), expected)
    assert (nags_from_impacts(impacts, lengths, K)[5] == -1).all()


def test_baseline_of_the_wrong_shape_is_refused(backbone) -> None:
    with pytest.raises(ValueError, match="impact baseline has shape"):
        extract_nags(backbone, TEXTS, K, baseline=np.ones((2, 3)))

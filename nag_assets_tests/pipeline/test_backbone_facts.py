"""A step's backbone is a `BackboneFacts`: the loaded model, or, under Ray, the actors'
description of theirs. What only a loaded model can do says so when it is not here."""

from __future__ import annotations

import pytest

from nag_assets.executors.ray import BackboneInfo
from nag_assets.nag import Backbone, BackboneError, BackboneFacts, loaded
from nag_assets.pipeline.common import NagSettings
from nag_assets.pipeline.extractor import InProcessExtractor, extractor_for
from nag_assets.pipeline.impact import impact_baseline
from nag_assets.storage import Storage

INFO = BackboneInfo("remote-model", "f" * 16, 2, 8, "up_proj")


def _facts(b: BackboneFacts) -> tuple:
    return b.name, b.fingerprint, b.num_layers, b.d_ff, b.neuron_type


def test_both_backbones_are_facts(backbone: Backbone) -> None:
    assert _facts(INFO) == ("remote-model", "f" * 16, 2, 8, "up_proj")
    assert _facts(backbone)[2:] == (backbone.num_layers, backbone.d_ff, backbone.neuron_type)


def test_the_in_process_extractor_needs_the_model_here(backbone: Backbone) -> None:
    assert isinstance(extractor_for(backbone, None), InProcessExtractor)
    given = InProcessExtractor(backbone)
    assert extractor_for(INFO, given) is given
    with pytest.raises(BackboneError, match="'remote-model' loaded in this process"):
        extractor_for(INFO, None)
    assert loaded(backbone, "anything") is backbone


def test_a_missing_baseline_cannot_be_made_from_a_description(tmp_path) -> None:
    settings = NagSettings(impact="normalized")
    assert impact_baseline(Storage(str(tmp_path)), INFO, NagSettings())[0] is None  # raw
    with pytest.raises(BackboneError, match="the impact baseline needs the model"):
        impact_baseline(Storage(str(tmp_path)), INFO, settings)

"""`load_tokenizer`: a backbone's token counts without its weights (what target_dataset
needs), from the folder `load_backbone` would load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import transformers

import nag_assets.nag.backbone as backbone_module
from nag_assets.nag import BackboneError, load_backbone, load_tokenizer
from nag_assets_tests.tiny import save_tiny

TEXTS = ["The water boils at 100 degrees.", "", "  spaced   out  ", "ice\nmelts"]


def _no_weights(*args, **kwargs):
    raise AssertionError("model weights were loaded")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("tiny-tokenizer"))


def test_counts_equal_the_backbones_and_no_weights_load(
    tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = load_backbone(str(tiny_dir), device="cpu")
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", _no_weights)
    alone = load_tokenizer(str(tiny_dir))
    np.testing.assert_array_equal(alone.count_tokens(TEXTS), full.count_tokens(TEXTS))
    assert alone.count_tokens(TEXTS).dtype == np.int64
    assert alone.tokenize(TEXTS, 4) == full.tokenize(TEXTS, 4)
    assert alone.tokenize([]) == []


def test_embedded_is_the_converted_folders_tokenizer(
    tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backbone_module, "embedded_folder", lambda: tiny_dir)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", _no_weights)
    want = load_tokenizer(str(tiny_dir)).count_tokens(TEXTS)
    np.testing.assert_array_equal(load_tokenizer("embedded").count_tokens(TEXTS), want)


def test_a_missing_folder_is_named() -> None:
    with pytest.raises(BackboneError, match="'/no/such/model': no such folder"):
        load_tokenizer("/no/such/model")

"""The real embedded backbone (SmolLM2-135M), loaded once, offline.

The first load converts the packaged GGUF (~25 s) into a folder under NAG_ASSETS_CACHE
(default ~/.cache/nag_assets); later loads take a few seconds.
"""

from __future__ import annotations

import huggingface_hub.constants
import numpy as np
import pytest
import torch

from nag_assets.nag import Backbone, extract_nags, load_backbone
from nag_assets.nag.backbone import cpu_has_native_bf16

pytestmark = [pytest.mark.embedded, pytest.mark.slow]

TEXTS = [
    "The capital of France is Paris.",
    "A man is sitting on a roof. He starts pulling up roofing on a roof.",
    "def add(a, b):\n    return a + b",
]
K = 5


@pytest.fixture(scope="module")
def smollm() -> Backbone:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import
        return load_backbone()


def test_loaded_offline_on_cpu(smollm: Backbone) -> None:
    if torch.cuda.is_available():
        assert smollm.device.type == "cuda"
        assert smollm.dtype == torch.bfloat16
    else:
        assert smollm.device == torch.device("cpu")
        # dtype auto: bf16 where this CPU computes it natively, else fp32
        assert smollm.dtype == (torch.bfloat16 if cpu_has_native_bf16() else torch.float32)
    assert next(smollm.model.parameters()).dtype == smollm.dtype
    assert smollm.num_layers == 30
    assert smollm.d_ff == 1536


def test_greedy_generation_knows_paris(smollm: Backbone) -> None:
    tok = smollm.tokenizer
    inputs = tok("The capital of France is", return_tensors="pt").to(smollm.device)
    with torch.no_grad():
        out = smollm.model.generate(**inputs, max_new_tokens=3, do_sample=False)
    new = tok.decode(out[0, inputs["input_ids"].shape[1] :])
    assert "Paris" in new


def test_nags(smollm: Backbone) -> None:
    nags, n_tokens = extract_nags(smollm, TEXTS, top_k=K)
    assert nags.shape == (3, 30, K)
    assert nags.dtype == np.int16
    assert ((nags >= 0) & (nags < 1536)).all()
    assert all(len(set(layer)) == K for nag in nags.tolist() for layer in nag)
    expected_tokens = [
        len(smollm.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in TEXTS
    ]
    assert n_tokens.tolist() == expected_tokens
    # different texts activate different neurons somewhere
    assert len({nag.tobytes() for nag in nags}) == 3
    again, again_tokens = extract_nags(smollm, TEXTS, top_k=K)
    np.testing.assert_array_equal(again, nags)
    np.testing.assert_array_equal(again_tokens, n_tokens)

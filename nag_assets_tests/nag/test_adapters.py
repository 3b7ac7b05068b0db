"""The per-architecture adapters: they find each family's up-projections with their width, and
tapping or zeroing through them is what extraction and deactivation see."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nag_assets.nag import BackboneError, from_model
from nag_assets.nag.adapters import UP, adapter_for, tapped, zeroed
from nag_assets.nag.extract import right_padded
from nag_assets_tests.tiny import tiny_model, tiny_tokenizer

FAMILIES = {"llama": "llama", "gpt2": "gpt2", "neox": "gpt_neox"}


@pytest.mark.parametrize("arch", sorted(FAMILIES))
def test_adapter_finds_one_up_projection_per_layer(arch: str) -> None:
    model = tiny_model(arch)
    adapter = adapter_for(model)
    assert adapter.family == FAMILIES[arch]
    modules = adapter.modules(model, UP)
    assert len(modules) == model.config.num_hidden_layers == 3
    assert adapter.width(modules) == 64  # the tiny configs' intermediate size
    backbone = from_model(model, tiny_tokenizer())
    assert backbone.adapter is adapter and backbone.up_projs == modules


@pytest.mark.parametrize("arch", sorted(FAMILIES))
def test_zeroed_outputs_are_zero_and_hooks_go_away(arch: str) -> None:
    model = tiny_model(arch)
    modules = adapter_for(model).modules(model)
    seen: list[torch.Tensor] = []
    record = [lambda _m, _i, out: seen.append(out.detach().clone()) for _ in modules]
    ids = torch.tensor([[5, 6, 7, 8]])
    off = [np.array([1, 3]), np.array([], dtype=np.int64), np.array([0])]
    with zeroed(modules, off), tapped(modules, record):
        model(input_ids=ids, use_cache=False)
    assert torch.all(seen[0][..., [1, 3]] == 0) and torch.all(seen[2][..., 0] == 0)
    assert torch.any(seen[0][..., 0] != 0) and torch.any(seen[1] != 0)
    assert all(not m._forward_hooks for m in modules)


def test_unknown_architecture_is_named() -> None:
    class NoMlp(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(2, 2)

    with pytest.raises(BackboneError, match=r"NoMlp has no MLP up-projection.*\.mlp\.up_proj"):
        from_model(NoMlp(), tiny_tokenizer())


def test_right_padded_batch() -> None:
    ids, mask = right_padded([[4, 5, 6], [7]])
    assert ids.tolist() == [[4, 5, 6], [7, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]

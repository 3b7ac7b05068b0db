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


@pytest.mark.parametrize("arch", sorted(FAMILIES))
def test_down_projection_nags_match_a_per_text_recomputation(arch: str) -> None:
    """NAGs of the down-projection output (`fwd_down`): per text, unbatched, the top-K of
    mean |output| over its tokens of each layer's MLP down-projection, found by module name."""
    from nag_assets.nag import extract_nags
    from nag_assets.nag.adapters import DOWN

    model = tiny_model(arch)
    backbone = from_model(model, tiny_tokenizer(), neuron_type=DOWN)
    assert backbone.d_ff == 32 and backbone.num_layers == 3  # the hidden size, per layer
    assert backbone.fingerprint != from_model(model, tiny_tokenizer()).fingerprint
    texts = ["a longer text of several words", "short", "mid size text"]
    nags, _ = extract_nags(backbone, texts, top_k=4, batch_size=2)
    suffix = {"llama": "mlp.down_proj", "gpt2": "mlp.c_proj", "neox": "mlp.dense_4h_to_h"}[arch]
    mods = [m for n, m in model.named_modules() if n.endswith(suffix)]
    for row, text in enumerate(texts):
        seen: list[torch.Tensor] = []
        hooks = [m.register_forward_hook(lambda _m, _i, o, s=seen: s.append(o)) for m in mods]
        ids = torch.tensor([backbone.tokenize([text], 120)[0]])
        with torch.no_grad():
            model(input_ids=ids)
        for h in hooks:
            h.remove()
        impact = torch.stack([o[0].abs().mean(0) for o in seen])  # (L, d_model)
        want = impact.topk(4, dim=-1).indices.numpy()
        assert (np.sort(nags[row], axis=1) == np.sort(want, axis=1)).all()


def test_unknown_neuron_type_is_named() -> None:
    with pytest.raises(BackboneError, match="neuron type 'att_q' is not one of"):
        from_model(tiny_model("llama"), tiny_tokenizer(), neuron_type="att_q")

"""NAG extraction on tiny random models, against an independent computation."""

from __future__ import annotations

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from torch import nn

from nag_assets.nag import (
    BackboneError,
    extract_nags,
    from_model,
    load_backbone,
)
from nag_assets_tests.tiny import save_tiny, tiny_backbone, tiny_tokenizer

ARCHS = ["llama", "gpt2", "neox"]
# per architecture: the MLP's up-projection and down-projection attribute
PROJ = {
    "llama": ("up_proj", "down_proj"),
    "gpt2": ("c_fc", "c_proj"),
    "neox": ("dense_h_to_4h", "dense_4h_to_h"),
}
TEXTS = [
    "The cat sat on the mat.",
    "x",
    "Colourless green ideas sleep furiously, said Chomsky in 1957!",
    "a b",
    "Pack my box with five dozen liquor jugs.",
]
LONG = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, " * 4  # > 120 chars
K = 5


def mlps(model: nn.Module) -> list[nn.Module]:
    return [m for name, m in model.named_modules() if name.endswith(".mlp")]


def n_chars(text: str) -> int:
    """What the char-level tiny tokenizer makes of a text: one token per non-space char."""
    return sum(not c.isspace() for c in text)


def reference_nag(model: nn.Module, arch: str, text: str, k: int, max_tokens: int = 120):
    """Top-K |up-projection| neurons per layer, from each MLP's captured input, no padding."""
    impact = reference_impact(model, arch, text, max_tokens)
    return np.array([np.argsort(-row, kind="stable")[:k] for row in impact])


def reference_impact(model: nn.Module, arch: str, text: str, max_tokens: int = 120):
    """(L, d_ff) float64 mean |up-projection output| per neuron, from each MLP's input."""
    tok = tiny_tokenizer()
    ids = tok(text, add_special_tokens=False)["input_ids"][:max_tokens]
    inputs: list[torch.Tensor] = []

    def grab(_module, args, kwargs, _output):
        inputs.append((args[0] if args else next(iter(kwargs.values()))).detach())

    layers = mlps(model)
    handles = [m.register_forward_hook(grab, with_kwargs=True) for m in layers]
    try:
        with torch.no_grad():
            model(torch.tensor([ids]))  # a plain full forward, LM head included
    finally:
        for h in handles:
            h.remove()
    assert len(inputs) == len(layers)
    out = []
    for mlp, x in zip(layers, inputs):
        up = getattr(mlp, PROJ[arch][0])
        w = up.weight.detach().double()
        b = None if up.bias is None else up.bias.detach().double()
        x = x[0].double()  # (T, hidden)
        u = x @ w if arch == "gpt2" else x @ w.T  # GPT-2's Conv1D weight is (in, out)
        if b is not None:
            u = u + b
        out.append(u.abs().mean(dim=0).numpy())
    return np.array(out)


@pytest.fixture(scope="module", params=ARCHS)
def arch(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def backbone(arch: str):
    return tiny_backbone(arch, seed=0)


def test_matches_independent_computation(arch: str, backbone) -> None:
    texts = [*TEXTS, LONG]
    nags, n_tokens = extract_nags(backbone, texts, top_k=K, batch_size=4)
    assert nags.dtype == np.int16
    assert nags.shape == (len(texts), 3, K)
    assert backbone.num_layers == 3 and backbone.d_ff == 64
    for i, text in enumerate(texts):
        np.testing.assert_array_equal(nags[i], reference_nag(backbone.model, arch, text, K))
    assert n_tokens.tolist() == [min(n_chars(t), 120) for t in texts]
    # NAGs of different texts differ: the reference is not trivially equal to anything
    assert len({nags[i].tobytes() for i in range(len(texts))}) == len(texts)


def test_max_tokens_truncates(arch: str, backbone) -> None:
    nags, n_tokens = extract_nags(backbone, [LONG, "short"], top_k=K, max_tokens=7)
    assert n_tokens.tolist() == [7, 5]
    np.testing.assert_array_equal(nags[0], reference_nag(backbone.model, arch, LONG, K, 7))
    assert LONG.startswith("Lorem ip")  # its first 7 tokens
    np.testing.assert_array_equal(nags[0], reference_nag(backbone.model, arch, "Lorem ip", K))


def test_batch_independence(backbone) -> None:
    alone = np.stack([extract_nags(backbone, [t], top_k=K)[0][0] for t in TEXTS])
    batched, n_tokens = extract_nags(backbone, TEXTS, top_k=K, batch_size=4)
    one_by_one, _ = extract_nags(backbone, TEXTS, top_k=K, batch_size=1)
    with_long, _ = extract_nags(backbone, [LONG, *TEXTS, LONG * 2], top_k=K, batch_size=16)
    np.testing.assert_array_equal(batched, alone)
    np.testing.assert_array_equal(one_by_one, alone)
    np.testing.assert_array_equal(with_long[1:-1], alone)
    assert n_tokens.tolist() == [n_chars(t) for t in TEXTS]


def test_nothing_after_last_up_projection_runs(arch: str, backbone) -> None:
    model = backbone.model
    calls: list[str] = []
    watched = {
        "lm_head": model.get_output_embeddings(),
        "last down": getattr(mlps(model)[-1], PROJ[arch][1]),
        "first down": getattr(mlps(model)[0], PROJ[arch][1]),
        "last up": getattr(mlps(model)[-1], PROJ[arch][0]),
    }
    handles = [
        m.register_forward_pre_hook(lambda *_, n=name: calls.append(n))
        for name, m in watched.items()
    ]
    try:
        extract_nags(backbone, TEXTS, top_k=K, batch_size=2)
    finally:
        for h in handles:
            h.remove()
    # the hooks do fire (positive control), but never on the LM head or the last down-proj
    assert calls.count("first down") == calls.count("last up") == 3
    assert "lm_head" not in calls and "last down" not in calls
    # and the model is left as it was: no hook of the library remains
    assert all(not m._forward_hooks for m in backbone.up_projs)
    with torch.no_grad():
        logits = model(torch.tensor([[5, 6, 7]])).logits
    assert logits.shape == (1, 3, model.config.vocab_size)


def test_texts_without_tokens_get_minus_one() -> None:
    bb = tiny_backbone("llama")
    nags, n_tokens = extract_nags(bb, ["", "abc", " \t\n  "], top_k=K)
    assert n_tokens.tolist() == [0, 3, 0]
    assert (nags[[0, 2]] == -1).all()
    assert (nags[1] >= 0).all()
    np.testing.assert_array_equal(nags[1], extract_nags(bb, ["abc"], top_k=K)[0][0])
    empty, n = extract_nags(bb, [], top_k=K)
    assert empty.shape == (0, 3, K) and empty.dtype == np.int16 and n.shape == (0,)


@pytest.mark.parametrize(("texts", "row"), [(["ok", None], 1), ([3], 0), (["a", "b", b"c"], 2)])
def test_non_str_text_raises_naming_row(texts: list, row: int) -> None:
    with pytest.raises(TypeError, match=f"row {row}\\b"):
        extract_nags(tiny_backbone("llama"), texts, top_k=K)


@pytest.mark.parametrize("top_k", [0, -1, 65])
def test_bad_top_k_names_d_ff(top_k: int) -> None:
    with pytest.raises(ValueError, match="d_ff=64"):
        extract_nags(tiny_backbone("llama"), ["abc"], top_k=top_k)


def test_top_k_equal_to_d_ff_is_a_permutation() -> None:
    nags, _ = extract_nags(tiny_backbone("gpt2"), ["abc"], top_k=64)
    assert (np.sort(nags[0], axis=1) == np.arange(64)).all()


def test_unsupported_architecture_names_the_class() -> None:
    class PlainStack(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(4, 4)

    with pytest.raises(BackboneError, match="PlainStack"):
        from_model(PlainStack(), tiny_tokenizer())


def test_progress_callable() -> None:
    calls: list[tuple[int, int, int]] = []
    texts = [*TEXTS, "", "more text here", "and the last one"]
    _, n_tokens = extract_nags(
        tiny_backbone("llama"), texts, top_k=K, batch_size=3, progress=lambda *a: calls.append(a)
    )
    done = [c[0] for c in calls]
    with_tokens = sum(n > 0 for n in n_tokens)  # 7: the empty text never reaches the model
    assert done == sorted(set(done)) and done[-1] == with_tokens
    assert {c[1] for c in calls} == {with_tokens}
    assert len(calls) == -(-with_tokens // 3)
    assert [c[2] for c in calls] == sorted(c[2] for c in calls)
    assert calls[-1][2] == n_tokens.sum()


def test_fingerprint_follows_the_weights() -> None:
    a, b = tiny_backbone("llama", seed=0), tiny_backbone("llama", seed=0)
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint != tiny_backbone("llama", seed=1).fingerprint
    assert a.fingerprint != tiny_backbone("gpt2", seed=0).fingerprint


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads the variable once, at import
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.mark.usefixtures("offline")
def test_load_local_folder_offline(tmp_path) -> None:
    folder = save_tiny(tmp_path / "tiny", "llama", seed=0)
    loaded = load_backbone(str(folder), device="cpu", dtype="fp32")  # as the in-memory one
    assert loaded.name == str(folder)
    assert (loaded.device.type, loaded.dtype) == ("cpu", torch.float32)
    nags, n_tokens = extract_nags(loaded, TEXTS, top_k=K)
    expected, expected_tokens = extract_nags(tiny_backbone("llama", seed=0), TEXTS, top_k=K)
    np.testing.assert_array_equal(nags, expected)
    np.testing.assert_array_equal(n_tokens, expected_tokens)
    same = load_backbone(str(save_tiny(tmp_path / "copy", "llama", seed=0)), "cpu", "fp32")
    other = load_backbone(str(save_tiny(tmp_path / "other", "llama", seed=1)), "cpu", "fp32")
    assert loaded.fingerprint == same.fingerprint != other.fingerprint


@pytest.mark.usefixtures("offline")
def test_load_unknown_name_offline_raises() -> None:
    with pytest.raises(BackboneError, match="no-such-org/no-such-model"):
        load_backbone("no-such-org/no-such-model", device="cpu")


def test_given_full_token_ids_give_the_same_nags() -> None:
    """nag_table tokenizes once for the NAG and the budget: the NAG cuts the full ids itself."""
    backbone = tiny_backbone("llama")
    texts = [LONG, *TEXTS, ""]
    full = backbone.tokenize(texts)
    got = extract_nags(backbone, texts, top_k=K, max_tokens=7, token_ids=full)
    expected = extract_nags(backbone, texts, top_k=K, max_tokens=7)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert max(len(x) for x in full) > 7
    with pytest.raises(ValueError, match="2 token id lists for 3 texts"):
        extract_nags(backbone, texts[:3], top_k=K, token_ids=full[:2])

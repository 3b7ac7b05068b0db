"""The written-out trunk (`nag.trunk`) and the opt-in `compile` setting that runs it."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from nag_assets.nag import BackboneError, extract_impacts, extract_nags, from_model, trunk
from nag_assets.nag.adapters import DOWN
from nag_assets.nag.extract import _batch_impact, _NeuronTaps, right_padded
from nag_assets.pipeline.extractor import BackboneSpec
from nag_assets_tests.tiny import LLAMA_LIKE, VOCAB, WINDOW, save_tiny, tiny_model, tiny_tokenizer

FAMILIES = ["llama", *LLAMA_LIKE]
LENGTHS = [11, 1, 7, 11, 5, 2]  # right-padded: 0-9 pads per row, windows of 6 exceeded
TEXTS = [
    "The cat sat on the mat.",
    "x",
    "",
    "Colourless green ideas sleep furiously, said Chomsky in 1957!",
    "a b",
    "Pack my box with five dozen liquor jugs.",
    "   ",
    "ok",
]


def model_of(arch: str, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """A tiny random model whose norm weights are not all ones, so every norm counts."""
    model = tiny_model(arch).to(dtype)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def hook_impacts(model: torch.nn.Module, batch: list[list[int]]) -> torch.Tensor:
    backbone = from_model(model, tiny_tokenizer())
    with torch.inference_mode(), _NeuronTaps(backbone) as taps:
        return _batch_impact(backbone, taps, batch)


def random_batch(lengths: list[int], seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(2, VOCAB, (n,), generator=g).tolist() for n in lengths]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("arch", FAMILIES)
def test_eager_trunk_gives_the_hook_path_impacts_bit_for_bit(arch: str, dtype) -> None:
    model = model_of(arch, dtype)
    for lengths in (LENGTHS, [4, 4, 3], [1]):
        batch = random_batch(lengths)
        ids, mask = right_padded(batch)
        with torch.inference_mode():
            got = trunk.llama_trunk(model)(ids, (mask / mask.sum(1, keepdim=True))[:, None])
        want = hook_impacts(model, batch)
        assert got.dtype == torch.float32 and got.shape == want.shape
        assert torch.equal(got, want), (arch, lengths)


@pytest.mark.parametrize("arch", LLAMA_LIKE)
def test_the_sliding_window_is_needed(arch: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The exact match above covers the windows: without them the impacts differ."""
    model, batch = model_of(arch), random_batch(LENGTHS)
    assert max(LENGTHS) > WINDOW
    want = hook_impacts(model, batch)
    monkeypatch.setattr(trunk, "_window", lambda _model, _att: None)
    ids, mask = right_padded(batch)
    with torch.inference_mode():
        got = trunk.llama_trunk(model)(ids, (mask / mask.sum(1, keepdim=True))[:, None])
    assert not torch.allclose(got, want)


def eager_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    """`compile=True` backbones run the trunk eagerly: the extraction plumbing, without the
    minutes of inductor (the compiled kernels themselves: the slow test below)."""
    monkeypatch.setattr(
        "nag_assets.nag.backbone.compiled_trunk", lambda model: trunk.llama_trunk(model)
    )


@pytest.mark.parametrize("batch_size", [1, 3, 32])
@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_extraction_through_the_trunk_equals_the_hook_path(arch, batch_size, monkeypatch) -> None:
    """Texts without tokens, a last short batch: the same impacts and NAGs, exactly; a batch
    of one text or of one-token texts is padded to 2 x 2 for the compiled graph, which moves
    the matmuls' rounding (as a batch's shape does on the hook path): the same NAGs."""
    eager_compiled(monkeypatch)
    model = model_of(arch)
    hook = from_model(model, tiny_tokenizer())
    via_trunk = from_model(model, tiny_tokenizer(), compile=True)
    want, want_len = extract_impacts(hook, TEXTS, batch_size=batch_size)
    got, got_len = extract_impacts(via_trunk, TEXTS, batch_size=batch_size)
    np.testing.assert_array_equal(got_len, want_len)
    if batch_size > 1:
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    nags, _ = extract_nags(via_trunk, TEXTS, 5, batch_size=batch_size)
    np.testing.assert_array_equal(nags, extract_nags(hook, TEXTS, 5, batch_size=batch_size)[0])
    assert (nags[want_len == 0] == -1).all()


def test_a_failed_compilation_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """No C++ compiler on a CPU worker, say: the first batch fails, saying what to turn off."""

    def broken(fn, **_options):
        def run(*_args):
            raise RuntimeError("InductorError: CppCompileError: C++ compile error\nmore lines")

        return run

    monkeypatch.setattr(torch, "compile", broken)
    backbone = from_model(tiny_model("llama"), tiny_tokenizer(), compile=True)
    with pytest.raises(trunk.CompileFailed, match=r"compile=True.*CppCompileError.*NAG_COMPILE=0"):
        extract_nags(backbone, TEXTS, 5)


def test_compile_has_its_own_fingerprint() -> None:
    model = tiny_model("llama")
    off = from_model(model, tiny_tokenizer())
    on = from_model(model, tiny_tokenizer(), compile=True)
    assert on.fingerprint != off.fingerprint
    assert from_model(model, tiny_tokenizer(), compile=True).fingerprint == on.fingerprint


@pytest.mark.parametrize("arch", ["gpt2", "neox", "gemma"])
def test_compile_on_an_architecture_without_trunk_names_the_setting(arch: str) -> None:
    model = tiny_model(arch)  # gemma: scaled embeddings, 1 + weight norms, GELU
    kind = model.config.model_type
    with pytest.raises(BackboneError, match=rf"compile=True.*'{kind}'.*NAG_COMPILE=0"):
        from_model(model, tiny_tokenizer(), compile=True)
    from_model(model, tiny_tokenizer())  # compile off: the hook path takes it


def test_compile_with_down_projection_neurons_names_both() -> None:
    with pytest.raises(BackboneError, match=rf"compile=True.*'{DOWN}'"):
        from_model(tiny_model("llama"), tiny_tokenizer(), neuron_type=DOWN, compile=True)


def test_the_spec_carries_compile_to_where_it_loads(tmp_path) -> None:
    """A Ray actor loads `BackboneSpec.load()`: the setting, and so the fingerprint, travel."""
    folder = str(save_tiny(tmp_path / "tiny"))
    on, off = BackboneSpec(folder, "cpu", None, compile=True), BackboneSpec(folder, "cpu", None)
    assert on.load().compile and not off.load().compile
    assert on.load() is on.load()  # once per process: the model and its compiled trunk
    assert on.load().fingerprint != off.load().fingerprint


@pytest.mark.slow
def test_compiled_trunk_gives_the_hook_path_nags(caplog: pytest.LogCaptureFixture) -> None:
    """The real torch.compile (inductor) on a tiny fp32 Llama: impacts to rounding, the same
    NAGs, one compilation for every batch shape, its time logged."""
    torch._dynamo.reset()
    model = model_of("llama")
    hook = from_model(model, tiny_tokenizer())
    compiled = from_model(model, tiny_tokenizer(), compile=True)
    frames = torch._dynamo.utils.counters["frames"]  # process-wide: reset() leaves it
    before = frames["ok"]
    with caplog.at_level(logging.INFO, logger=trunk.__name__):
        for batch_size in (3, 1, 8):  # batch shapes (B, T) from (1, 2) to (8, 61)
            got, _ = extract_impacts(compiled, TEXTS, batch_size=batch_size)
            want, _ = extract_impacts(hook, TEXTS, batch_size=batch_size)
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
            assert (extract_nags(compiled, TEXTS, 5)[0] == extract_nags(hook, TEXTS, 5)[0]).all()
    logged = [r.getMessage() for r in caplog.records if r.name == trunk.__name__]
    assert len(logged) == 2 and logged[1].startswith("compiled the llama trunk in "), logged
    assert compiled.compiled_impacts() is compiled.compiled_impacts()
    assert frames["ok"] - before == 1, dict(frames)  # no recompilation for another shape

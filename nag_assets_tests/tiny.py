"""Tiny random causal LMs built from configs (no download), for fast tests."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    PreTrainedTokenizerFast,
)

from nag_assets.nag import Backbone, from_model

VOCAB = 300


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Character-level tokenizer over printable ASCII; whitespace is dropped."""
    vocab = {"[UNK]": 0, "[PAD]": 1}
    vocab.update({chr(c): i + 2 for i, c in enumerate(range(33, 127))})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split("", behavior="isolated")]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")


def tiny_config(arch: str = "llama"):
    common = dict(vocab_size=VOCAB, bos_token_id=0, eos_token_id=0)
    if arch == "llama":
        return LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            **common,
        )
    if arch == "gpt2":
        return GPT2Config(n_embd=32, n_inner=64, n_layer=3, n_head=4, n_positions=256, **common)
    if arch == "neox":
        return GPTNeoXConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=4,
            max_position_embeddings=256,
            **common,
        )
    if arch in (*LLAMA_LIKE, "gemma"):
        return llama_like_config(arch)
    raise ValueError(arch)


# The other families of `nag.trunk` (model_type -> config class), each with what sets it
# apart from Llama switched on: sliding windows shorter than the test texts (layers 2-3),
# Qwen3's q/k norms, SmolLM3's layers without rotary.
LLAMA_LIKE = ("mistral", "qwen2", "qwen3", "smollm3")
WINDOW = 6


def llama_like_config(arch: str):
    from transformers import GemmaConfig, MistralConfig, Qwen2Config, Qwen3Config, SmolLM3Config

    common = dict(
        vocab_size=VOCAB,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=1,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        sliding_window=WINDOW,
    )
    windowed = dict(use_sliding_window=True, max_window_layers=2)
    if arch == "mistral":
        return MistralConfig(**common)
    if arch == "qwen2":
        return Qwen2Config(**windowed, **common)
    if arch == "qwen3":
        return Qwen3Config(head_dim=8, **windowed, **common)
    if arch == "gemma":  # Llama-like to the adapter, not to the trunk (test_trunk's refusal)
        return GemmaConfig(head_dim=8, **common)
    return SmolLM3Config(no_rope_layer_interval=2, use_sliding_window=True, **common)


def tiny_model(arch: str = "llama", seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(tiny_config(arch)).eval()


def tiny_backbone(arch: str = "llama", seed: int = 0) -> Backbone:
    return from_model(tiny_model(arch, seed), tiny_tokenizer(), name=f"tiny-{arch}")


def save_tiny(folder: Path, arch: str = "llama", seed: int = 0) -> Path:
    """A tiny model as a local folder, loadable by `load_backbone(str(folder))`."""
    tiny_model(arch, seed).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder

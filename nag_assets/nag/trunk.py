"""The Llama family's trunk written out as one function, for the opt-in `compile` setting.

The hook path (`nag.extract`) runs transformers' model and taps each up-projection; Python
hooks and the model's many small modules keep `torch.compile` from seeing one graph. Here
the same computation (embeddings, rotary, RMSNorm, SDPA attention, the MLP, the per-text
mean |activation| of each up-projection, stopping after the last one) is one function of
(input_ids, weights), which inductor compiles whole and fuses (norms, rotary, SiLU-times-up,
the |act| mean). Eager, it gives the hook path's impacts bit for bit; compiled, the fused
kernels round differently, so compiled NAGs carry their own fingerprint (`Backbone`).

Families: transformers' `model_type` values in `FAMILIES`, each checked against the hook path
(nag_assets_tests/nag/test_trunk.py): Qwen3's q/k norms, SmolLM3's layers without rotary, and
the sliding windows of Mistral / Qwen2 / Qwen3 / SmolLM3 are handled as transformers does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

# transformers model_type -> what its layers add to Llama's (verified against the hook path)
FAMILIES = {
    "llama": "Llama, SmolLM / SmolLM2",
    "mistral": "sliding window (config.sliding_window)",
    "qwen2": "q/k/v biases, per-layer sliding windows",
    "qwen3": "q/k RMSNorm on the head dimension, per-layer sliding windows",
    "smollm3": "layers without rotary (no_rope_layers), per-layer sliding windows",
}

Impacts = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""impacts(input_ids (B, T) long, weights (B, 1, T) float32: 1/len on real tokens, 0 on
padding) -> (B, L, d_ff) float32, each text's mean |up-projection output| per layer."""


class NoTrunk(ValueError):
    """This model has no written-out trunk (its architecture is not in `FAMILIES`)."""


class CompileFailed(RuntimeError):
    """torch.compile could not compile the trunk on this machine."""


def model_type(model: nn.Module) -> str:
    return str(getattr(getattr(model, "config", None), "model_type", type(model).__name__))


def check_supported(model: nn.Module) -> None:
    """Raise `NoTrunk` naming the architecture unless `llama_trunk` can run `model`."""
    kind = model_type(model)
    if kind not in FAMILIES or not hasattr(getattr(model, "model", None), "layers"):
        raise NoTrunk(
            f"compile=True needs the written-out trunk, which exists for the model types "
            f"{sorted(FAMILIES)}; this model is {kind!r} ({type(model).__name__}): "
            "turn compile off (NAG_COMPILE=0) for it"
        )


def _window(model: nn.Module, att: Any) -> int | None:
    """The layer's sliding window, where transformers keeps it (Mistral: the config)."""
    if hasattr(att, "sliding_window"):
        return att.sliding_window
    return getattr(model.config, "sliding_window", None) if model_type(model) == "mistral" else None


def _norm(h: torch.Tensor, mod: Any) -> torch.Tensor:
    """transformers' Llama RMSNorm, op for op (the fp32 upcast, then back)."""
    x = h.float()
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + mod.variance_epsilon)
    return mod.weight * x.to(h.dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, -1)
    return x * cos + torch.cat((-x2, x1), -1) * sin


def _attend(q, k, v, window: int | None, groups: int, gqa: bool) -> torch.Tensor:
    """Causal SDPA; a sliding window as transformers' SDPA path: a boolean band mask once the
    text reaches the window (shorter ones need none), and then repeated k/v heads. `gqa` is
    a Python bool of its own: under dynamic shapes `groups > 1` would be symbolic."""
    t = q.shape[2]
    if window is None or t < window:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    pos = torch.arange(t, device=q.device)
    band = (pos[None, :] <= pos[:, None]) & (pos[None, :] > pos[:, None] - window)
    k, v = (x.repeat_interleave(groups, dim=1) for x in (k, v))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=band[None, None])


def llama_trunk(model: nn.Module) -> Impacts:
    """The impact function of a model of `FAMILIES` (eager: the hook path's numbers)."""
    check_supported(model)
    # transformers' config and submodules, not typed as such (nn.Module.__getattr__)
    cfg: Any = model.config
    body: Any = model.model
    heads, kv = cfg.num_attention_heads, cfg.num_key_value_heads
    dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    groups, gqa = heads // kv, bool(heads != kv)
    plans = [
        (getattr(layer.self_attn, "use_rope", True), _window(model, layer.self_attn))
        for layer in body.layers
    ]

    def project(att: Any, x: torch.Tensor, b: int, t: int):
        q = att.q_proj(x).view(b, t, heads, dim)
        k = att.k_proj(x).view(b, t, kv, dim)
        if hasattr(att, "q_norm"):  # Qwen3: RMSNorm per head, before rotary
            q, k = att.q_norm(q), att.k_norm(k)
        v = att.v_proj(x).view(b, t, kv, dim)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    def impacts(ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        b, t = ids.shape
        h = body.embed_tokens(ids)
        cos, sin = body.rotary_emb(h, torch.arange(t, device=ids.device)[None])
        cos, sin = cos[:, None], sin[:, None]
        out = []
        for i, (layer, (rope, window)) in enumerate(zip(body.layers, plans)):
            att, mlp = layer.self_attn, layer.mlp
            x = _norm(h, layer.input_layernorm)
            q, k, v = project(att, x, b, t)
            if rope:
                q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
            o = _attend(q, k, v, window, groups, gqa)
            h = h + att.o_proj(o.transpose(1, 2).reshape(b, t, heads * dim))
            x = _norm(h, layer.post_attention_layernorm)
            up = mlp.up_proj(x)
            # the hook's |act| mean: bf16 upcast once, abs in place (the same values)
            u = up.abs() if up.dtype == torch.float32 else up.float().abs_()
            out.append(torch.bmm(weights, u).squeeze(1))
            if i == len(body.layers) - 1:
                break
            h = h + mlp.down_proj(mlp.act_fn(mlp.gate_proj(x)) * up)
        return torch.stack(out, 1)

    return impacts


def compiled_trunk(model: nn.Module, **options) -> Impacts:
    """`llama_trunk` through `torch.compile(dynamic=True)` (one graph for every batch shape;
    `options` go to torch.compile). Compilation happens on the first call, whose time is
    logged: minutes for a ~100M-parameter model on a CPU with a cold inductor cache."""
    fn = torch.compile(llama_trunk(model), dynamic=True, **options)
    first = [True]

    def impacts(ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if not first[0]:
            return fn(ids, weights)
        kind, start = model_type(model), time.perf_counter()
        log.info("compiling the %s trunk (torch.compile: minutes on a CPU, cold cache)", kind)
        try:
            out = fn(ids, weights)
        except Exception as e:  # inductor's errors: no C++ compiler, an unsupported op, ...
            raise CompileFailed(
                f"compile=True: torch.compile of the {kind} trunk failed ({type(e).__name__}: "
                f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}); turn compile "
                "off (NAG_COMPILE=0), or give inductor what it needs (a C++ compiler on a CPU)"
            ) from e
        first[0] = False
        log.info("compiled the %s trunk in %.1f s (its first batch included)", kind, _since(start))
        return out

    return impacts


def _since(start: float) -> float:
    return time.perf_counter() - start

"""Would `torch.compile` close the distance to the bf16 FLOP bound? The experiment, measured.

Prints one JSON object. Side by side in one process, on the same length-sorted batches of
Wikipedia leads (one torch thread, CPU seconds, interleaved rounds):
  hook_fp32  the same in fp32 (what the default was before bf16), for the ratio
  hook       what `extract_nags` runs in bf16: transformers' model with forward hooks on each
             up-projection, stopped after the last one
  trunk      the same computation written out for the Llama family (embeddings, rotary,
             RMSNorm, SDPA attention, MLP up to the last up-projection, the |act| mean
             inside), eager: bit-identical to `hook` (checked here)
  compiled   `trunk` through `torch.compile(dynamic=True)` (one graph for every batch
             shape; inductor fuses the norms, rotary, SiLU-times-up and the |act| mean)
  frozen     the same with inductor's `freezing` (weights folded in as constants)
with the compile seconds of each, the share of the bf16 FLOP bound (matmul FLOP/s at the
model's shapes / 2 x parameters per token), how far the compiled NAGs agree with the fp32
ones (mean share of each (text, layer) top-K set kept, beside the eager bf16 figure), and
a profile of one pass of each (top operators by self CPU time). This is a measurement, not
a code path of the package: nothing here changes how NAGs are made.

    python benchmarks/compiled.py [--docs 96] [--rounds 3] [--no-frozen] [--quick]

--quick: a tiny random model on 16 texts (the smoke test; compiles a tiny graph).
"""

from __future__ import annotations

import argparse
import time

import _bench
import torch
import torch.nn.functional as F

from nag_assets.nag import load_backbone
from nag_assets.nag.extract import _batch_impact, _NeuronTaps, right_padded
from nag_assets.sources.wiki import load_wiki_leads


def llama_trunk(model):
    """impacts(input_ids, weights) -> (B, L, d_ff) fp32: the hook path's numbers, written out."""
    cfg, body = model.config, model.model
    heads, kv = cfg.num_attention_heads, cfg.num_key_value_heads
    dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads

    def norm(h, mod):
        x = h.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + mod.variance_epsilon)
        return mod.weight * x.to(h.dtype)

    def rotate(x, cos, sin):
        x1, x2 = x.chunk(2, -1)
        return x * cos + torch.cat((-x2, x1), -1) * sin

    def impacts(ids, weights):
        b, t = ids.shape
        h = body.embed_tokens(ids)
        cos, sin = body.rotary_emb(h, torch.arange(t, device=ids.device)[None])
        cos, sin = cos[:, None], sin[:, None]
        out = []
        for i, layer in enumerate(body.layers):
            att, mlp = layer.self_attn, layer.mlp
            x = norm(h, layer.input_layernorm)
            q = att.q_proj(x).view(b, t, heads, dim).transpose(1, 2)
            k = att.k_proj(x).view(b, t, kv, dim).transpose(1, 2)
            v = att.v_proj(x).view(b, t, kv, dim).transpose(1, 2)
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            h = h + att.o_proj(o.transpose(1, 2).reshape(b, t, heads * dim))
            x = norm(h, layer.post_attention_layernorm)
            up = mlp.up_proj(x)
            out.append(torch.bmm(weights, up.float().abs()).squeeze(1))
            if i == len(body.layers) - 1:
                break
            h = h + mlp.down_proj(mlp.act_fn(mlp.gate_proj(x)) * up)
        return torch.stack(out, 1)

    return impacts


def batches_of(backbone, texts, max_tokens, batch_size):
    ids = backbone.tokenize(texts, max_tokens)
    order = sorted((i for i in range(len(ids)) if ids[i]), key=lambda i: -len(ids[i]))
    out = []
    for s in range(0, len(order), batch_size):
        x, mask = right_padded([ids[i] for i in order[s : s + batch_size]])
        out.append((x, (mask / mask.sum(1, keepdim=True))[:, None, :]))
    return out, sum(len(x) for x in ids)


def overlap(a: list[torch.Tensor], b: list[torch.Tensor], k: int) -> float:
    """Mean share of each (text, layer) top-k neuron set that both keep."""
    kept = total = 0
    for x, y in zip(a, b):
        ix, iy = x.topk(k).indices, y.topk(k).indices
        kept += int((ix[..., :, None] == iy[..., None, :]).any(-1).sum())
        total += ix.numel()
    return round(kept / total, 4)


def profile_top(run, n: int = 8) -> list[dict]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as p:
        run()
    rows = sorted(p.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in rows)
    return [{"op": e.key[:60], "share": round(e.self_cpu_time_total / total, 3)} for e in rows[:n]]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-tokens", type=int, default=120)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--model", default="embedded")
    p.add_argument("--no-frozen", action="store_true", help="skip the freezing variant")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.docs, args.rounds, args.batch_size, args.no_frozen = 16, 1, 4, True
        args.model = _bench.tiny_model_dir()
    with _bench.clock_for("cpu") as clock, torch.no_grad():
        return run(args, clock)


def run(args, clock) -> dict:
    import torch._inductor.config as inductor

    started = time.perf_counter()
    bf16, fp32 = (load_backbone(args.model, dtype=d) for d in ("bf16", "fp32"))
    texts = load_wiki_leads(args.docs)["text"].to_list()
    batches, tokens = batches_of(bf16, texts, args.max_tokens, args.batch_size)
    trunk = llama_trunk(bf16.model)

    def via_hooks(backbone):
        out = []
        with _NeuronTaps(backbone) as taps:
            for x, w in batches:
                rows = [r[: int((wr > 0).sum())].tolist() for r, wr in zip(x, w[:, 0])]
                out.append(_batch_impact(backbone, taps, rows))
        return out

    methods = {
        "hook_fp32": lambda: via_hooks(fp32),
        "hook": lambda: via_hooks(bf16),
        "trunk": lambda: [trunk(x, w) for x, w in batches],
    }
    compile_s = {}
    for name, frozen in [("compiled", False), ("frozen", True)][: 1 if args.no_frozen else 2]:
        inductor.freezing = frozen
        start = time.perf_counter()
        fn = torch.compile(llama_trunk(bf16.model), dynamic=True)
        [fn(x, w) for x, w in batches]  # every batch shape once: compile and any recompile
        compile_s[name] = round(time.perf_counter() - start, 1)
        methods[name] = lambda fn=fn: [fn(x, w) for x, w in batches]
    inductor.freezing = False
    reference = via_hooks(fp32)  # the NAGs' reference (and, timed below, hook_fp32's speed)
    outs = {m: f() for m, f in methods.items() if m != "hook_fp32"}
    exact = all(torch.equal(a, b) for a, b in zip(outs["hook"], outs["trunk"]))
    seconds = _bench.interleaved(
        {m: (lambda _p, f=f: f()) for m, f in methods.items()}, [0], args.rounds, clock
    )
    width = bf16.model.config.hidden_size
    shapes = [(args.batch_size * args.max_tokens, width, bf16.d_ff)]
    shapes.append((args.batch_size * args.max_tokens, bf16.d_ff, width))
    if not args.quick:
        shapes.append((2048, 2048, 2048))  # as extraction.py: the best of these is the bound
    from extraction import matmul_flops, nag, params_used

    flops = matmul_flops(bf16.device, bf16.dtype, shapes, 5, clock)
    bound = flops / (2 * params_used(bf16, nag, texts[0]))
    rate = {m: tokens / s for m, s in seconds.items()}
    return _bench.emit(
        {
            "benchmark": "compiled",
            "model": "tiny (quick)" if args.quick else args.model,
            "docs": len(texts),
            "tokens": tokens,
            "batch_size": args.batch_size,
            "rounds": args.rounds,
            "trunk_equals_hook": exact,
            "compile_s": compile_s,
            "tokens_per_s": {m: round(r, 1) for m, r in rate.items()},
            "vs_hook": {m: round(r / rate["hook"], 3) for m, r in rate.items()},
            "matmul_gflops": round(flops / 1e9, 1),
            "flop_bound_tokens_per_s": round(bound, 1),
            "share_of_flop_bound": {  # of the bf16 bound: the bf16 methods
                m: round(r / bound, 3) for m, r in rate.items() if m != "hook_fp32"
            },
            "top5_overlap_with_fp32": {m: overlap(o, reference, 5) for m, o in outs.items()},
            "profile": {m: profile_top(methods[m]) for m in ("hook", "compiled")},
            "wall_s": round(time.perf_counter() - started, 1),
            "machine": _bench.machine(),
        }
    )


if __name__ == "__main__":
    main()

"""The `compile` backbone setting measured: the package's extraction with it on beside off.

Prints one JSON object. Side by side in one process, on the same Wikipedia leads (one torch
thread, CPU seconds, interleaved rounds):
  hook_fp32  `extract_nags` in fp32 (the default before bf16), for the ratio
  hook       `extract_nags` in bf16, compile off (the default here): transformers' model with
             forward hooks on each up-projection, stopped after the last one
  trunk      `nag.trunk.llama_trunk` eager on the same batches: bit-identical to `hook`
             (checked here)
  compiled   `extract_nags` in bf16 with `compile=True`: the package's compiled path (the
             trunk through torch.compile(dynamic=True), one graph for every batch shape)
and with --variants, the trunk compiled other ways, on the same batches (`fn(ids, weights)`):
  autotune   mode="max-autotune-no-cudagraphs" with freezing: inductor times its own C++
             GEMM kernels (AMX/AVX512 micro-kernels, epilogues fused) against oneDNN's; on a
             CPU that template needs the weights frozen as constants
  frozen     torch._inductor.config.freezing (weights folded in as constants)
  fullgraph  fullgraph=True (an error on any graph break; the same graph when there is none)
  static16   dynamic=False, each batch's length padded to a multiple of 16 (a graph per shape)
  batch64    the package's compiled path at batch_size 64 (the same graph, no new compile)
  math_attention  attention as matmuls, a causal mask and softmax in fp32, in the graph
             (inductor fuses the mask and softmax) instead of SDPA's flash kernel
with the compile seconds of each (wall: the first pass over every batch, compilation
included), the graphs compiled, the share of the bf16 FLOP bound (matmul FLOP/s at the
model's shapes / 2 x parameters per token), how far each one's NAGs agree with the fp32 ones
(mean share of each (text, layer) top-K set kept), and a profile of one pass of hook and
compiled (top operators by self CPU time).

    TORCHINDUCTOR_CACHE_DIR=$(mktemp -d) TORCHINDUCTOR_COMPILE_THREADS=1 \\
      python benchmarks/compiled.py [--docs 96] [--rounds 3] [--variants autotune,static16]

--quick: a tiny random model on 16 texts (the smoke test; compiles a tiny graph per variant).
"""

from __future__ import annotations

import argparse
import time
import types

import _bench
import numpy as np
import torch

from nag_assets.nag import extract_nags, load_backbone
from nag_assets.nag.extract import _batch_impact, _NeuronTaps, right_padded
from nag_assets.nag.trunk import llama_trunk
from nag_assets.sources.wiki import load_wiki_leads

K = 5
VARIANTS = ("autotune", "frozen", "fullgraph", "static16", "batch64", "math_attention")


def math_attend(q, k, v, window, _groups, _gqa):
    """`nag.trunk._attend` as plain matmuls: q's heads grouped over their k/v head."""
    b, h, t, d = q.shape
    kv = k.shape[1]
    q = q.view(b, kv, h // kv, t, d)
    scores = (q @ k[:, :, None].transpose(-1, -2)).float() * d**-0.5
    pos = torch.arange(t, device=q.device)
    keep = pos[None, :] <= pos[:, None]
    if window is not None:
        keep = keep & (pos[None, :] > pos[:, None] - window)
    probs = scores.masked_fill(~keep, float("-inf")).softmax(-1).to(v.dtype)
    return (probs @ v[:, :, None]).view(b, h, t, d)


def batches_of(backbone, texts, max_tokens, batch_size, multiple: int = 1):
    """(batches of (ids, weights) in length order, that order, positions computed): each
    batch right-padded to its longest text, rounded up to `multiple`."""
    ids = backbone.tokenize(texts, max_tokens)
    order = sorted((i for i in range(len(ids)) if ids[i]), key=lambda i: -len(ids[i]))
    out, positions = [], 0
    for s in range(0, len(order), batch_size):
        rows = [ids[i] for i in order[s : s + batch_size]]
        width = -(-max(len(r) for r in rows) // multiple) * multiple
        x, mask = right_padded(rows, min_width=width)
        out.append((x, (mask / mask.sum(1, keepdim=True))[:, None, :]))
        positions += x.numel()
    return out, order, positions


def nags_of(impacts: list[torch.Tensor], order: list[int], n: int) -> np.ndarray:
    """Batch-order impacts back to text order as NAGs (n, L, K); -1 for texts without tokens."""
    flat = torch.cat(impacts)
    out = np.full((n, flat.shape[1], K), -1, dtype=np.int16)
    out[order] = flat.topk(K, dim=-1).indices.numpy()
    return out


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of each (text, layer) top-K neuron set that both keep."""
    used = (a >= 0).all(axis=(1, 2)) & (b >= 0).all(axis=(1, 2))
    a, b = a[used], b[used]
    kept = (a[..., :, None] == b[..., None, :]).any(-1).sum()
    return round(float(kept / a.size), 4)


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
    p.add_argument("--variants", default="", help=f"comma-separated, of {', '.join(VARIANTS)}")
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    if unknown := set(args.variants) - set(VARIANTS):
        p.error(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    if args.quick:
        args.docs, args.rounds, args.batch_size = 16, 1, 4
        args.model = _bench.tiny_model_dir()
    # every variant compiles the same function (its own guards): room for all of them
    torch._dynamo.config.recompile_limit = 64
    with _bench.clock_for("cpu") as clock, torch.no_grad():
        return run(args, clock)


def timed_first(run) -> tuple[object, float]:
    """(result, wall seconds) of a first pass: compilation (inductor's C++ compiler runs in
    child processes, which a CPU clock of this thread would miss) included."""
    start = time.perf_counter()
    out = run()
    return out, round(time.perf_counter() - start, 1)


def graphs() -> int:
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def fresh(fn, name: str, **replaced):
    """`fn` with a code object of its own: dynamo caches compiled graphs per code object,
    so without it a variant whose guards match an earlier one (freezing is a global inductor
    setting, not a guard) would run the earlier graph instead of compiling its own.
    `replaced`: module globals it sees in place of the trunk's (e.g. `_attend`)."""
    code = fn.__code__.replace(co_name=f"impacts_{name}")
    scope = fn.__globals__ | replaced if replaced else fn.__globals__
    return types.FunctionType(code, scope, code.co_name, fn.__defaults__, fn.__closure__)


def variant(name: str, model, batches, static_batches):
    """(run, compile_s, graphs compiled) of one trunk variant (not batch64: see `run`)."""
    import torch._inductor.config as inductor

    options = {"dynamic": name != "static16"}
    if name == "autotune":
        options["mode"] = "max-autotune-no-cudagraphs"
    if name == "fullgraph":
        options["fullgraph"] = True
    use = static_batches if name == "static16" else batches
    inductor.freezing = name in ("frozen", "autotune")
    try:
        before = graphs()
        swap = {"_attend": math_attend} if name == "math_attention" else {}
        fn = torch.compile(fresh(llama_trunk(model), name, **swap), **options)
        _, seconds = timed_first(lambda: [fn(x, w) for x, w in use])
    finally:
        inductor.freezing = False
    return (lambda: [fn(x, w) for x, w in use]), seconds, graphs() - before


def via_hooks(backbone, batches) -> list[torch.Tensor]:
    """The hook path's impacts on the given batches (for the bit-identity check)."""
    out = []
    with _NeuronTaps(backbone) as taps:
        for x, w in batches:
            rows = [r[: int((wr > 0).sum())].tolist() for r, wr in zip(x, w[:, 0])]
            out.append(_batch_impact(backbone, taps, rows))
    return out


def run(args, clock) -> dict:
    started = time.perf_counter()
    bf16, fp32 = (load_backbone(args.model, dtype=d) for d in ("bf16", "fp32"))
    compiled = load_backbone(args.model, dtype="bf16", compile=True)
    texts = load_wiki_leads(args.docs)["text"].to_list()
    full = bf16.tokenize(texts)  # extract_nags truncates them: no tokenizer in the timings
    batches, order, positions = batches_of(bf16, texts, args.max_tokens, args.batch_size)
    static, _, static_positions = batches_of(bf16, texts, args.max_tokens, args.batch_size, 16)
    trunk = llama_trunk(bf16.model)

    def package(backbone, batch_size=args.batch_size):
        return lambda: extract_nags(
            backbone, texts, K, args.max_tokens, batch_size, token_ids=full
        )[0]

    methods = {"hook_fp32": package(fp32), "hook": package(bf16)}
    methods["trunk"] = lambda: [trunk(x, w) for x, w in batches]
    before = graphs()
    methods["compiled"] = package(compiled)
    _, first = timed_first(methods["compiled"])
    compile_s, made = {"compiled": first}, {"compiled": graphs() - before}
    for name in args.variants:
        if name == "batch64":
            methods[name] = package(compiled, 64)
        else:
            methods[name], compile_s[name], made[name] = variant(name, bf16.model, batches, static)
    outs = {m: f() for m, f in methods.items()}
    exact = all(torch.equal(a, b) for a, b in zip(outs["trunk"], via_hooks(bf16, batches)))
    nags = {
        m: o if isinstance(o, np.ndarray) else nags_of(o, order, len(texts))
        for m, o in outs.items()
    }
    seconds = _bench.interleaved(
        {m: (lambda _p, f=f: f()) for m, f in methods.items()}, [0], args.rounds, clock
    )
    bound = flop_bound(args, bf16, texts[0], clock)
    tokens = sum(min(len(x), args.max_tokens) for x in full)
    rate = {m: tokens / s for m, s in seconds.items()}
    shown = [m for m in ("hook", "compiled", "autotune", "math_attention") if m in methods]
    profiles = {} if args.no_profile else {m: profile_top(methods[m]) for m in shown}
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
            "graphs_compiled": made,
            "padding": {  # positions computed per real token
                "to_longest": round(positions / tokens, 4),
                "to_multiple_of_16": round(static_positions / tokens, 4),
            },
            "tokens_per_s": {m: round(r, 1) for m, r in rate.items()},
            "vs_hook": {m: round(r / rate["hook"], 3) for m, r in rate.items()},
            "matmul_gflops": round(bound["flops"] / 1e9, 1),
            "flop_bound_tokens_per_s": round(bound["tokens_per_s"], 1),
            "share_of_flop_bound": {  # of the bf16 bound: the bf16 methods
                m: round(r / bound["tokens_per_s"], 3) for m, r in rate.items() if m != "hook_fp32"
            },
            "top5_overlap_with_fp32": {
                m: overlap(n, nags["hook_fp32"]) for m, n in nags.items() if m != "hook_fp32"
            },
            "profile": profiles,
            "wall_s": round(time.perf_counter() - started, 1),
            "machine": _bench.machine(),
        }
    )


def flop_bound(args, backbone, text: str, clock) -> dict:
    """The bf16 bound: the best matmul FLOP/s at the model's shapes (and 2048^3, as in
    extraction.py) over 2 x the parameters a token goes through."""
    from extraction import matmul_flops, nag, params_used

    width, rows = backbone.model.config.hidden_size, args.batch_size * args.max_tokens
    shapes = [(rows, width, backbone.d_ff), (rows, backbone.d_ff, width)]
    if not args.quick:
        shapes.append((2048, 2048, 2048))
    flops = matmul_flops(backbone.device, backbone.dtype, shapes, 5, clock)
    return {"flops": flops, "tokens_per_s": flops / (2 * params_used(backbone, nag, text))}


if __name__ == "__main__":
    main()

"""NAG extraction speed beside what users would run instead, on the same real texts.

Prints one JSON object: tokens/s (real tokens, padding not counted) of
  nag        extract_nags (length-sorted, right-padded, stops at the last up-projection)
  naive      transformers' full causal LM `model(**batch)`, left padding, no sorting
  trunk      the bare decoder trunk (no LM head), length-sorted batches: the floor
on Wikipedia leads (the demo pool), and the FLOP-bound limit of each: this machine's
measured matmul FLOP/s in that dtype / (2 x the non-embedding parameters a token goes
through, found by watching which modules run). Every method runs in each of --dtypes (fp32
and bf16 by default) in the same interleaved rounds; the top-level figures are the default
dtype's (auto: bf16 on a CPU with native bf16), `by_dtype` has each. The texts are cut
into pieces of --piece texts; the methods alternate piece by piece and round by round,
each piece keeping its fastest round. By default (--clock cpu) everything, the matmuls
too, runs on one torch thread timed by its CPU seconds: rates per core, which other
processes on a shared machine barely move (two threads timed by the wall clock there lose
up to 2x to whoever else runs). On a dedicated machine, --clock wall times torch's own
thread count.

    python benchmarks/extraction.py [--docs 160] [--rounds 2] [--clock cpu|wall]
        [--dtypes fp32,bf16] [--quick]

--quick: a tiny random model on 24 texts, a few seconds (the smoke test).
"""

from __future__ import annotations

import argparse
import time

import _bench
import numpy as np
import torch

from nag_assets.nag import extract_nags, load_backbone
from nag_assets.sources.wiki import load_wiki_leads


def naive(backbone, texts, max_tokens, batch_size):
    tok = backbone.tokenizer
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            enc = tok(
                texts[i : i + batch_size],
                add_special_tokens=False,
                truncation=True,
                max_length=max_tokens,
                padding=True,
                return_tensors="pt",
            )
            backbone.model(**enc.to(backbone.device))


def trunk(backbone, texts, max_tokens, batch_size):
    ids = backbone.tokenize(texts, max_tokens)
    order = [i for i in np.argsort([-len(x) for x in ids], kind="stable") if ids[i]]
    body = backbone.model.get_decoder()
    with torch.inference_mode():
        for i in range(0, len(order), batch_size):
            batch = [ids[j] for j in order[i : i + batch_size]]
            x = torch.zeros((len(batch), len(batch[0])), dtype=torch.long)
            for r, row in enumerate(batch):
                x[r, : len(row)] = torch.tensor(row)
            body(input_ids=x.to(backbone.device), use_cache=False)


def nag(backbone, texts, max_tokens, batch_size, top_k=5):
    extract_nags(backbone, texts, top_k, max_tokens, batch_size)


METHODS = {"nag": nag, "naive": naive, "trunk": trunk}


def params_used(backbone, method, text: str) -> int:
    """Parameters of the modules that run when `method` processes one text, embeddings
    (a lookup, not a matmul) left out; a tied LM head counts, it is a matmul."""
    ran: set[int] = set()
    leaves = [
        m
        for m in backbone.model.modules()
        if not list(m.children()) and not isinstance(m, torch.nn.Embedding)
    ]
    hooks = [m.register_forward_pre_hook(lambda m, _a: ran.add(id(m))) for m in leaves]
    try:
        method(backbone, [text], 8, 1)
    finally:
        for h in hooks:
            h.remove()
    return sum(p.numel() for m in leaves if id(m) in ran for p in m.parameters(recurse=False))


def matmul_flops(device, dtype, shapes, reps: int, clock=time.perf_counter) -> float:
    """Best FLOP/s of plain matmuls at the model's own shapes (and a square one)."""
    best = 0.0
    for m, k, n in shapes:
        a = torch.randn(m, k, device=device, dtype=dtype)
        b = torch.randn(k, n, device=device, dtype=dtype)
        a @ b
        for _ in range(reps):
            start = clock()
            for _ in range(3):
                a @ b
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = max(best, 3 * 2 * m * k * n / (clock() - start))
    return best


def padded(lengths: list[int], piece: int, batch_size: int, sort: bool) -> int:
    """Token positions the model computes, piece by piece: every batch is as wide as its
    longest text."""
    total = 0
    for i in range(0, len(lengths), piece):
        part = [x for x in lengths[i : i + piece] if x]
        if sort:
            part.sort(reverse=True)
        for j in range(0, len(part), batch_size):
            total += len(part[j : j + batch_size]) * max(part[j : j + batch_size])
    return total


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=160)
    p.add_argument("--piece", type=int, default=80, help="texts per interleaved piece")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-tokens", type=int, default=120)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--model", default="embedded")
    p.add_argument(
        "--dtypes",
        default="fp32,bf16",
        help="dtypes measured side by side; the top-level figures are those of the default "
        "(dtype auto) on this machine, which must be among them",
    )
    _bench.add_clock_option(p)
    p.add_argument("--quick", action="store_true", help="tiny model, few texts: smoke test")
    args = p.parse_args(argv)
    if args.quick:
        args.docs, args.piece, args.rounds, args.batch_size = 24, 12, 1, 4
        args.model = _bench.tiny_model_dir()
    with _bench.clock_for(args.clock) as clock:
        return run(args, clock)


def run(args, clock) -> dict:
    started = time.perf_counter()
    dtypes = args.dtypes.split(",")
    backbones = {d: load_backbone(args.model, dtype=d) for d in dtypes}
    default = load_backbone(args.model)  # dtype auto: what a user gets
    auto = next(d for d, b in backbones.items() if b.dtype == default.dtype)
    del default
    first = backbones[dtypes[0]]
    texts = load_wiki_leads(args.docs)["text"].to_list()
    lengths = [len(x) for x in first.tokenize(texts, args.max_tokens)]
    tokens = sum(lengths)
    pieces = [texts[i : i + args.piece] for i in range(0, len(texts), args.piece)]
    for b in backbones.values():
        nag(b, texts[:4], args.max_tokens, 4)  # warm-up
    methods = {
        f"{m}_{d}": (lambda piece, f=f, b=b: f(b, piece, args.max_tokens, args.batch_size))
        for d, b in backbones.items()
        for m, f in METHODS.items()
    }
    seconds = _bench.interleaved(methods, pieces, args.rounds, clock)
    params = {m: params_used(first, f, texts[0]) for m, f in METHODS.items()}
    width = first.model.config.hidden_size
    tokens_per_batch = args.batch_size * args.max_tokens
    shapes = [(tokens_per_batch, width, first.d_ff), (tokens_per_batch, first.d_ff, width)]
    if not args.quick:
        shapes.append((2048, 2048, 2048))
    by_dtype = {}
    for d, b in backbones.items():
        flops = matmul_flops(b.device, b.dtype, shapes, 2 if args.quick else 5, clock)
        rate = {m: tokens / seconds[f"{m}_{d}"] for m in METHODS}
        bound = {m: flops / (2 * n) for m, n in params.items()}
        by_dtype[d] = {
            "dtype": str(b.dtype),
            "tokens_per_s": {m: round(r, 1) for m, r in rate.items()},
            "matmul_gflops": round(flops / 1e9, 1),
            "flop_bound_tokens_per_s": {m: round(x, 1) for m, x in bound.items()},
            "share_of_flop_bound": {m: round(rate[m] / bound[m], 3) for m in METHODS},
        }
    mine = by_dtype[auto]
    rate = mine["tokens_per_s"]
    return _bench.emit(
        {
            "benchmark": "extraction",
            "model": "tiny (quick)" if args.quick else args.model,
            "device": str(first.device),
            "dtype": mine["dtype"],  # the default (auto) on this machine; by_dtype has all
            "docs": len(texts),
            "tokens": tokens,
            "batch_size": args.batch_size,
            "max_tokens": args.max_tokens,
            "rounds": args.rounds,
            "clock": args.clock,
            "threads": torch.get_num_threads(),
            "tokens_per_s": rate,
            "nag_vs_naive": round(rate["nag"] / rate["naive"], 3),
            "nag_vs_trunk": round(rate["nag"] / rate["trunk"], 3),
            "default_nag_vs_fp32_nag": round(
                rate["nag"] / by_dtype.get("fp32", mine)["tokens_per_s"]["nag"], 3
            ),
            "padded_tokens_per_token": {  # positions computed / real tokens
                "sorted": round(padded(lengths, args.piece, args.batch_size, True) / tokens, 3),
                "unsorted": round(padded(lengths, args.piece, args.batch_size, False) / tokens, 3),
            },
            "matmul_gflops": mine["matmul_gflops"],
            "params_per_token": params,
            "flop_bound_tokens_per_s": mine["flop_bound_tokens_per_s"],
            "share_of_flop_bound": mine["share_of_flop_bound"],
            "by_dtype": by_dtype,
            "wall_s": round(time.perf_counter() - started, 1),
            "machine": _bench.machine(),
        }
    )


if __name__ == "__main__":
    main()

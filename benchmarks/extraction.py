"""NAG extraction speed beside what users would run instead, on the same real texts.

Prints one JSON object: tokens/s of
  nag        extract_nags (length-sorted, right-padded, stops at the last up-projection)
  naive      transformers' full causal LM `model(**batch)`, left padding, no sorting
  trunk      the bare decoder trunk (no LM head), length-sorted batches: the floor
and the FLOP-bound limit: this machine's measured matmul FLOP/s / (2 x non-embedding
parameters used per token). Methods alternate per round so machine noise hits all alike.

    python benchmarks/extraction.py [--docs 256] [--batch-size 32] [--rounds 2] [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

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
    order = np.argsort([-len(x) for x in ids], kind="stable")
    body = backbone.model.get_decoder()
    with torch.inference_mode():
        for i in range(0, len(ids), batch_size):
            batch = [ids[j] for j in order[i : i + batch_size] if ids[j]]
            width = max(len(x) for x in batch)
            x = torch.zeros((len(batch), width), dtype=torch.long)
            for r, row in enumerate(batch):
                x[r, : len(row)] = torch.tensor(row)
            body(input_ids=x.to(backbone.device), use_cache=False)


def nag(backbone, texts, max_tokens, batch_size, top_k=5):
    extract_nags(backbone, texts, top_k, max_tokens, batch_size)


def matmul_flops(device, dtype, n=1024, reps=8) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - start)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--docs", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-tokens", type=int, default=120)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--model", default="embedded")
    p.add_argument("--quick", action="store_true", help="tiny run for the smoke test")
    args = p.parse_args(argv)
    if args.quick:
        args.docs, args.rounds = 16, 1
    backbone = load_backbone(args.model)
    texts = load_wiki_leads(args.docs)["text"].to_list()
    tokens = int(sum(len(x) for x in backbone.tokenize(texts, args.max_tokens)))
    methods = {"nag": nag, "naive": naive, "trunk": trunk}
    nag(backbone, texts[:4], args.max_tokens, 4)  # warm-up
    times = {m: [] for m in methods}
    for _ in range(args.rounds):
        for name, fn in methods.items():
            start = time.perf_counter()
            fn(backbone, texts, args.max_tokens, args.batch_size)
            times[name].append(time.perf_counter() - start)
    rate = {m: tokens / min(t) for m, t in times.items()}
    params = sum(
        p.numel()
        for n, p in backbone.model.named_parameters()
        if "embed" not in n and "lm_head" not in n
    )
    flops = matmul_flops(backbone.device, backbone.dtype)
    out = {
        "benchmark": "extraction",
        "model": args.model,
        "device": str(backbone.device),
        "dtype": str(backbone.dtype),
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "docs": len(texts),
        "tokens": tokens,
        "batch_size": args.batch_size,
        "max_tokens": args.max_tokens,
        "tokens_per_s": {m: round(r, 1) for m, r in rate.items()},
        "nag_vs_naive": round(rate["nag"] / rate["naive"], 3),
        "nag_vs_trunk": round(rate["nag"] / rate["trunk"], 3),
        "matmul_gflops": round(flops / 1e9, 1),
        "non_embedding_params": params,
        "flop_bound_tokens_per_s": round(flops / (2 * params), 1),
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

"""The CUDA path of NAG extraction, in one short run on a machine with a GPU.

Prints one JSON object:
- tokens/s of `extract_nags` with device auto (CUDA) and dtype auto (bf16) on the embedded
  model, and on a model of Qwen3-1.7B's shape built from its config with random weights
  (throughput only: nothing is downloaded; the embedded tokenizer feeds it);
- the embedded model's NAGs on the GPU against CPU fp32 NAGs of the same texts: the mean
  share of each (text, layer) neuron set the two have in common.

    python benchmarks/gpu_check.py [--docs 512] [--batch-size 64] [--cpu-docs 64]

Exits with an error where no GPU is visible.
"""

from __future__ import annotations

import argparse
import time

import _bench
import numpy as np
import torch

from nag_assets.nag import extract_nags, from_model, load_backbone
from nag_assets.sources.wiki import load_wiki_leads


def rate(backbone, texts: list[str], batch_size: int, rounds: int = 2) -> float:
    """Best tokens/s over `rounds` (after a warm-up), real tokens only."""
    extract_nags(backbone, texts[:batch_size], 5, batch_size=batch_size)
    best = float("inf")
    for _ in range(rounds):
        torch.cuda.synchronize()
        start = time.perf_counter()
        _, used = extract_nags(backbone, texts, 5, batch_size=batch_size)
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return float(used.sum()) / best


def qwen3_shaped(tokenizer):
    from transformers import AutoModelForCausalLM, Qwen3Config

    config = Qwen3Config(**_bench.QWEN3_1_7B)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    return from_model(model, tokenizer, name="qwen3-1.7b-shaped (random)", device="cuda",
                      identity="random:qwen3-1.7b-shape")  # fmt: skip


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    k = a.shape[-1]
    return float(np.mean([len(set(x) & set(y)) / k for p, q in zip(a, b) for x, y in zip(p, q)]))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--cpu-docs", type=int, default=64, help="texts compared against CPU fp32")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible: this check needs a GPU")
    started = time.perf_counter()
    texts = load_wiki_leads(args.docs)["text"].to_list()
    gpu = load_backbone("embedded")  # device auto, dtype auto: CUDA, bf16
    result = {
        "benchmark": "gpu_check",
        "gpu": torch.cuda.get_device_name(0),
        "dtype": str(gpu.dtype),
        "docs": len(texts),
        "batch_size": args.batch_size,
        "tokens_per_s": {"embedded": round(rate(gpu, texts, args.batch_size), 1)},
    }
    few = texts[: args.cpu_docs]
    on_gpu, _ = extract_nags(gpu, few, 5)
    on_cpu, _ = extract_nags(load_backbone("embedded", device="cpu", dtype="fp32"), few, 5)
    result["nag_overlap_gpu_bf16_vs_cpu_fp32"] = round(overlap(on_gpu, on_cpu), 4)
    big = qwen3_shaped(gpu.tokenizer)
    result["tokens_per_s"]["qwen3_1.7b_shaped"] = round(rate(big, texts, args.batch_size), 1)
    result["peak_gpu_mib"] = _bench.mib(torch.cuda.max_memory_allocated())
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["machine"] = _bench.machine()
    return _bench.emit(result)


if __name__ == "__main__":
    main()

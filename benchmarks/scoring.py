"""Scoring speed and memory: documents x targets scored per second from stored NAGs.

Prints one JSON object. Synthetic NAGs shaped like the embedded backbone's (30 layers,
d_ff 1536, K 5; each layer's neurons drawn from a skewed, Zipf-like popularity, as real
NAGs are), scored against 1, 8 and 64 target profiles built from synthetic target NAGs, by
  score_many      the library: float32 embedding_bag over an exact integer-split table
  float64_bag     the same gather in float64 (the previous implementation)
  numpy_loop      a per-target, per-layer numpy gather and sum
The baselines run on a slice of the documents (--baseline-docs); all methods alternate
round by round in one process, timed (--clock cpu, the default) by one torch thread's CPU
seconds, or (--clock wall) by the wall clock with torch's threads. Memory: peak resident
bytes above the NAGs themselves while score_many runs. Agreement: score_many against both
baselines on the slice.

    python benchmarks/scoring.py [--docs 1000000] [--targets 1,8,64] [--clock cpu|wall] [--quick]
"""

from __future__ import annotations

import argparse
import time

import _bench
import numpy as np
import torch

from nag_assets.nag import build_profile, score_many

LAYERS, D_FF, TOP_K = 30, 1536, 5


def synthetic_nags(n: int, rng: np.random.Generator, layer_perm: np.ndarray) -> np.ndarray:
    """(n, L, K) int16: per layer, neurons by a Zipf(1.1) popularity over a per-layer order
    (`layer_perm`, (L, d_ff))."""
    popularity = 1.0 / np.arange(1, D_FF + 1) ** 1.1
    cdf = np.cumsum(popularity) / popularity.sum()
    out = np.empty((n, LAYERS, TOP_K), dtype=np.int16)
    layer = np.arange(LAYERS)[None, :, None]
    for s in range(0, n, 1 << 16):
        rank = np.searchsorted(cdf, rng.random((min(1 << 16, n - s), LAYERS, TOP_K)))
        rank = np.minimum(rank, D_FF - 1)
        out[s : s + len(rank)] = layer_perm[layer, rank]
    return out


def profiles_for(n_targets: int, rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    """(T, L, d_ff) profiles, each from 200 target examples that share part of the pool's
    neuron popularity (so documents score like real ones, mostly 0.1-0.5) and part their own."""
    out = []
    for _ in range(n_targets):
        own = np.stack([rng.permutation(D_FF) for _ in range(LAYERS)])
        examples = np.concatenate([synthetic_nags(100, rng, base), synthetic_nags(100, rng, own)])
        out.append(build_profile(examples, D_FF))
    return np.stack(out)


def float64_bag(nags: np.ndarray, profiles: np.ndarray) -> np.ndarray:
    """The previous score_many: embedding_bag over a float64 (L*d_ff+1, T) table."""
    n, n_layers, k = nags.shape
    t, _, d_ff = profiles.shape
    table = torch.from_numpy(
        np.ascontiguousarray(profiles.reshape(t, -1).T, dtype=np.float64) / n_layers
    )
    table = torch.cat([table, torch.zeros((1, t), dtype=table.dtype)])
    offsets = torch.arange(n_layers, dtype=torch.int64).repeat_interleave(k) * d_ff
    out = np.empty((n, t), dtype=np.float32)
    for s in range(0, n, 1 << 16):
        idx = torch.from_numpy(nags[s : s + (1 << 16)].reshape(-1, n_layers * k).astype(np.int64))
        idx = torch.where(idx < 0, table.shape[0] - 1, idx + offsets)
        out[s : s + (1 << 16)] = torch.nn.functional.embedding_bag(idx, table, mode="sum").numpy()
    return out


def numpy_loop(nags: np.ndarray, profiles: np.ndarray) -> np.ndarray:
    """What one writes first: for each target and layer, gather the K weights and add."""
    n, n_layers, _ = nags.shape
    t = len(profiles)
    out = np.zeros((n, t), dtype=np.float64)
    for j in range(t):
        for layer in range(n_layers):
            w = np.append(profiles[j, layer] / n_layers, 0.0)  # index -1: no neuron
            out[:, j] += w[nags[:, layer]].sum(axis=1)
    return out.astype(np.float32)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=1_000_000)
    p.add_argument("--baseline-docs", type=int, default=20_000)
    p.add_argument("--targets", default="1,8,64")
    p.add_argument("--rounds", type=int, default=3)
    _bench.add_clock_option(p)
    p.add_argument("--quick", action="store_true", help="20k documents, 1 and 8 targets")
    args = p.parse_args(argv)
    if args.quick:
        args.docs, args.baseline_docs, args.targets, args.rounds = 20_000, 2_000, "1,8", 1
    with _bench.clock_for(args.clock) as clock:
        return run(args, clock)


def run(args, clock) -> dict:
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    base = np.stack([rng.permutation(D_FF) for _ in range(LAYERS)])
    nags = synthetic_nags(args.docs, rng, base)
    nags[:: max(1, args.docs // 100)] = -1  # a few texts without tokens, as real shards have
    sub = nags[: args.baseline_docs]
    results = {}
    for n_targets in (int(x) for x in args.targets.split(",")):
        profiles = profiles_for(n_targets, rng, base)
        seconds = _bench.interleaved(
            {
                "score_many": lambda _, pr=profiles: score_many(nags, pr),
                "float64_bag": lambda _, pr=profiles: float64_bag(sub, pr),
                "numpy_loop": lambda _, pr=profiles: numpy_loop(sub, pr),
            },
            [None],
            args.rounds,
            clock,
        )
        with _bench.PeakRSS() as mem:
            ours = score_many(nags, profiles)
        docs = {"score_many": len(nags), "float64_bag": len(sub), "numpy_loop": len(sub)}
        rate = {m: docs[m] * n_targets / s for m, s in seconds.items()}
        exact, loop = float64_bag(sub, profiles), numpy_loop(sub, profiles)
        results[str(n_targets)] = {
            "scores_per_s": {m: round(r) for m, r in rate.items()},
            "vs_float64_bag": round(rate["score_many"] / rate["float64_bag"], 1),
            "vs_numpy_loop": round(rate["score_many"] / rate["numpy_loop"], 1),
            "seconds_for_all_docs": round(seconds["score_many"], 3),
            "peak_extra_mib": _bench.mib(mem.extra),
            "output_mib": _bench.mib(ours.nbytes),
            "identical_to_float64_bag": float(np.mean(ours[: len(sub)] == exact)),
            "max_abs_diff_numpy_loop": float(np.abs(ours[: len(sub)] - loop).max()),
            "score_range": [float(ours.min()), float(ours.max())],
            "mean_score": round(float(ours.mean()), 4),
        }
    return _bench.emit(
        {
            "benchmark": "scoring",
            "clock": args.clock,
            "threads": torch.get_num_threads(),
            "docs": len(nags),
            "baseline_docs": len(sub),
            "layers": LAYERS,
            "d_ff": D_FF,
            "top_k": TOP_K,
            "nag_mib": _bench.mib(nags.nbytes),
            "rounds": args.rounds,
            "targets": results,
            "wall_s": round(time.perf_counter() - started, 1),
            "machine": _bench.machine(),
        }
    )


if __name__ == "__main__":
    main()

"""What bf16 does to the demo's selection, against fp32: Jaccard of the documents selected
per target, and the overlap of the NAGs themselves.

Prints one JSON object. The demo's pool (Wikipedia leads spread over the alphabet) and
targets (HellaSwag, ARC-Easy), as `nag_assets.demo` builds them, go through the library
steps the graph runs (extract_nags, build_profile, score_many, select_under_budget with
the demo's 20% budget) once per dtype; nothing else differs between the two runs.

    python benchmarks/dtype_selection.py [--docs 1200] [--examples 200] [--quick]

--quick: a tiny random model on 60 documents and 10 examples per target (the smoke test).
"""

from __future__ import annotations

import argparse
import time

import _bench
import numpy as np
import torch

from nag_assets.demo import DEMO_TARGETS
from nag_assets.nag import build_profile, extract_nags, load_backbone, score_many
from nag_assets.nag.select import select_under_budget
from nag_assets.sources.benchmarks import load_benchmark
from nag_assets.sources.wiki import load_wiki_leads, spread

DTYPES = ("fp32", "bf16")


def selection(backbone, pool, targets: dict, top_k: int) -> tuple[dict, np.ndarray]:
    """({target: selected document ids}, pool NAGs) for one backbone."""
    nags, _ = extract_nags(backbone, pool["text"].to_list(), top_k)
    tokens = backbone.count_tokens(pool["text"].to_list())
    profiles = [
        build_profile(extract_nags(backbone, t["text"].to_list(), top_k)[0], backbone.d_ff)
        for t in targets.values()
    ]
    scores = score_many(nags, np.stack(profiles))
    ids = pool["id"].to_list()
    _, rows, cols = select_under_budget(scores, tokens, ids, list(targets), fraction=0.2)
    chosen = {t: {ids[r] for r, c in zip(rows, cols) if c == j} for j, t in enumerate(targets)}
    return chosen, nags


def nag_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over texts and layers of |A & B| / K of the (layer) neuron sets."""
    k = a.shape[-1]
    same = [len(set(x) & set(y)) / k for ta, tb in zip(a, b) for x, y in zip(ta, tb) if x[0] >= 0]
    return float(np.mean(same))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=1200)
    p.add_argument("--examples", type=int, default=200)
    p.add_argument("--model", default="embedded")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.docs, args.examples, args.model = 60, 10, _bench.tiny_model_dir()
    started = time.perf_counter()
    pool = spread(load_wiki_leads(), args.docs)
    targets = {t: load_benchmark(t, limit=args.examples) for t in DEMO_TARGETS}
    runs = {
        d: selection(load_backbone(args.model, dtype=d), pool, targets, args.top_k) for d in DTYPES
    }
    (a, nags_a), (b, nags_b) = runs["fp32"], runs["bf16"]
    jaccard = {t: round(len(a[t] & b[t]) / max(1, len(a[t] | b[t])), 4) for t in targets}
    return _bench.emit(
        {
            "benchmark": "dtype_selection",
            "model": "tiny (quick)" if args.quick else args.model,
            "docs": pool.height,
            "examples_per_target": args.examples,
            "selected": {d: {t: len(s) for t, s in runs[d][0].items()} for d in DTYPES},
            "jaccard_bf16_vs_fp32": jaccard,
            "nag_overlap_bf16_vs_fp32": round(nag_overlap(nags_a, nags_b), 4),
            "threads": torch.get_num_threads(),
            "wall_s": round(time.perf_counter() - started, 1),
            "machine": _bench.machine(),
        }
    )


if __name__ == "__main__":
    main()

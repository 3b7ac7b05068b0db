"""How close can anything short of the full backbone pass get to full NAG's selection? On the
pool that benchmarks/distilled.py caches (run that first; this reads its stored NAGs and never
runs the backbone's forward pass), three measurements:

  layers     the exact NAG score from only some of the backbone's layers (a prefix, the even
             ones, the odd ones): what a scorer that reproduced those layers exactly would
             get. Spearman with the full score and Jaccard of the budgeted selection (fraction
             0.2, as distilled.py): how much rank agreement a Jaccard needs.
  targets    NAG's own stability under a change that should not matter: the profile built
             from two disjoint halves of the target's examples.
  cascade    the distilled scorer as a filter (`distill: {rerank: X}`, pipeline.rerank): per
             shard, exact NAG scores for each target's distilled top X, the rest ranked
             below them. Jaccard with full NAG and the share of the pool the backbone reads
             (the sample included).

    PYTHONPATH=. .venv/bin/python benchmarks/distilled_ceiling.py [--fraction 0.1] [--quick]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import _bench
import distilled as bench
import numpy as np
from scipy.stats import spearmanr

from nag_assets import distill
from nag_assets.checks.common import jaccard, pool_nags, selections, target_meta, target_nags
from nag_assets.nag import build_profile, load_backbone
from nag_assets.nag.backbone import cache_dir
from nag_assets.pipeline.common import NagSettings
from nag_assets.storage import Storage

PREFIXES = (5, 10, 15, 20, 25, 28)
CASCADE = (0.2, 0.3, 0.4, 0.5, 0.6)


def per_layer(nags: np.ndarray, profiles: list[np.ndarray]) -> np.ndarray:
    """(n, L, T): each layer's term of each target's score (the score is their mean)."""
    layers = np.arange(nags.shape[1])[None, :, None]
    return np.stack([p[layers, nags].sum(-1) for p in profiles], -1)


def agreement(pool, scores: np.ndarray, full: dict, targets: list[str]) -> dict:
    picked = selections(scores, pool.tokens, pool.rank, targets, 0.2)
    return {
        t: {
            "spearman": round(float(spearmanr(scores[:, j], pool.nag[:, j])[0]), 3),
            "jaccard": round(jaccard(full[t], picked[t]), 3),
        }
        for j, t in enumerate(targets)
    }


def layer_subsets(pool, terms: np.ndarray, full: dict, targets: list[str]) -> dict:
    subsets = {f"first_{m}": slice(0, m) for m in PREFIXES if m < terms.shape[1]}
    subsets |= {"even": slice(0, None, 2), "odd": slice(1, None, 2)}
    out = {name: agreement(pool, terms[:, s].mean(1), full, targets) for name, s in subsets.items()}
    even, odd = terms[:, 0::2].mean(1), terms[:, 1::2].mean(1)
    a, b = (selections(s, pool.tokens, pool.rank, targets, 0.2) for s in (even, odd))
    out["even_vs_odd_jaccard"] = {t: round(jaccard(a[t], b[t]), 3) for t in targets}
    out["adjacent_layer_correlation"] = {}  # Pearson, of the layers' terms over documents
    for j, t in enumerate(targets):
        r = np.diag(np.corrcoef(terms[:, :, j].T), 1)
        quartiles = np.nanpercentile(r, [0, 25, 50, 75, 100]).round(2).tolist()
        out["adjacent_layer_correlation"][t] = dict(
            zip(("min", "q1", "median", "q3", "max"), quartiles)
        )
    return out


def target_halves(storage, pool, nags, full: dict, targets: list[str]) -> dict:
    """Jaccard of the selections from profiles of two disjoint halves of the examples."""
    halves = [[], []]
    for t in targets:
        examples, d_ff = target_nags(storage, t), target_meta(storage, t).d_ff
        mid = len(examples) // 2
        halves[0].append(build_profile(examples[:mid], d_ff))
        halves[1].append(build_profile(examples[mid:], d_ff))
    a, b = (
        selections(per_layer(nags, h).mean(1), pool.tokens, pool.rank, targets, 0.2) for h in halves
    )
    return {t: round(jaccard(a[t], b[t]), 3) for t in targets}


def cascade(pool, distilled: np.ndarray, mask: np.ndarray, full: dict, targets) -> dict:
    """`distill: {rerank: X}` as the graph runs it (distilled.py's `rerank_scores`)."""
    out = {}
    for share in CASCADE:
        scores, read = bench.rerank_scores(pool, distilled, share)
        picked = selections(scores, pool.tokens, pool.rank, targets, 0.2)
        out[str(share)] = {
            "backbone_share": round(float((read | mask).mean()), 3),  # the sample read too
            **{t: round(jaccard(full[t], picked[t]), 3) for t in targets},
        }
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", default=str(cache_dir() / "bench_distilled"))
    p.add_argument("--fraction", type=float, default=0.1, help="the distilled sample's share")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a tiny pool built with a tiny model")
    args = p.parse_args(argv)
    start = time.perf_counter()
    targets = bench.TARGETS
    if args.quick:  # distilled.py's quick pool, in a temporary cache
        quick = bench.parse(["--quick"])
        backbone = load_backbone(quick.model, device="cpu", dtype=quick.dtype)
        storage = bench.build_pool(Path(quick.cache) / "pool", quick, backbone)
        args.fraction = 0.5
    else:  # the cached pool: the tokenizer and input embeddings only
        backbone = load_backbone("embedded", device="cpu", dtype="bf16")
        storage = Storage(f"{args.cache}/pool")
    pool = bench.load_pool(storage, targets)
    nags = pool_nags(storage, list(dict.fromkeys(pool.shard)))[0]
    profiles = [bench.load_profile(storage, t)[0] for t in targets]
    terms = per_layer(nags, profiles)
    assert np.allclose(terms.mean(1), pool.nag, atol=1e-6), "stored NAGs and scores differ"
    full = selections(pool.nag, pool.tokens, pool.rank, targets, 0.2)
    read = distill.hf_reader(backbone.tokenizer, NagSettings().max_tokens)
    emb = backbone.model.get_input_embeddings().weight.detach().float().numpy()
    mask = bench.sample_mask(pool, args.fraction, args.seed)
    predicted = bench.distilled_scores(pool, read, emb, mask, distill.DistillSettings(), targets)
    distilled = {"sample_fraction": args.fraction, **agreement(pool, predicted, full, targets)}
    return _bench.emit(
        {
            "benchmark": "distilled_ceiling",
            "machine": _bench.machine(),
            "documents": len(pool.ids),
            "layers": nags.shape[1],
            "distilled": distilled,
            "layer_subsets": layer_subsets(pool, terms, full, targets),
            "target_halves_jaccard": target_halves(storage, pool, nags, full, targets),
            "cascade": cascade(pool, predicted, mask, full, targets),
            "seconds": round(time.perf_counter() - start, 1),
        }
    )


if __name__ == "__main__":
    main()

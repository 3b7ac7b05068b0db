"""The hybrid ranker (NAG + embedding) and the cheap scorer, by benchmarks/quality.py's topic
lift, on two pools.

Pool a is quality.py's (1,600 Wikipedia leads, every 6th; 7 dev and 7 held-out targets);
pool b (`quality.py --pool-set b`) is the 1,600 leads between them with 9 MMLU subjects used
nowhere in pool a, two of them on topics no dev target has (Geography, Technology): held out
whole. Per pool: NAG with the default `tuned` preset, `embedding`, `dsir`, `random` (mean of
seeds) and, per weight w (the embedding's share), three ways to combine NAG and embedding:

  anchored  the `hybrid` ranker: each score mapped per target by anchors from the target's
            own examples (`rankers.hybrid`), no pool-wide state
  rank      mean of the two ranks over the pool (whole pool: every shard rescored by any)
  pool_z    mean of the two z-scores over the pool (whole pool)

The weight of each is chosen on pool a's dev targets only; pool a's held-out targets and
pool b report it. `nag_distilled` (the cheap scorer) is trained on NAG scores of a sample
(10% of the pool, as the graph does; and, beside it, all 1,600 leads of the other pool) and
selects from its own predictions. Cost: CPU seconds per document on one thread of each
ranker's per-document work (NAG: the bf16 backbone pass to its last needed layer; embedding:
MiniLM; distilled: tokenize + two sparse products).

    .venv/bin/python benchmarks/hybrid.py [--quick]

prints JSON (the backbone pass of each pool is quality.py's cache: ~10 min a pool the first
time on 2 shared cores, then ~2 min in all).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import _bench
import numpy as np
import quality
import torch
from scipy.stats import rankdata

from nag_assets import distill
from nag_assets.nag import load_backbone, score_many
from nag_assets.nag.extract import extract_nags
from nag_assets.nag.layers import parse_layers
from nag_assets.rankers import dsir, embedding, hybrid, random_scores
from nag_assets.rankers.nag_distilled import SETTINGS as DISTILL_SETTINGS

METHODS = ("anchored", "rank", "pool_z")


class Pool:
    """One pool's data, its tuned NAG parts and every ranker's scores (n, T)."""

    def __init__(self, data: quality.Data, args) -> None:
        self.data = data
        scorer = quality.Scorer(data)
        v = quality.TUNED
        nags, profiles = scorer.profiles(v, "up")
        keep = list(parse_layers(v.layers, nags.shape[1]))
        self.nags, self.profiles = nags[:, keep], profiles[:, keep]
        self.nag = score_many(self.nags, self.profiles).astype(np.float64)
        rows = quality.embedding_rows(data, args)
        n = len(data.texts)
        self.doc_emb = rows[:n]
        self.examples = [rows[a:b] for a, b in list(data.spans.values())[1:]]
        anchors, centroids = hybrid.fit_anchors(self.profiles, v.top_k, self.examples)
        self.anchors = anchors
        self.emb = embedding.embedding_scores(self.doc_emb, centroids).astype(np.float64)

    def lifts(self, scores: np.ndarray, fraction: float) -> dict[str, float]:
        return quality.lifts(self.data, scores, fraction)

    def summary(self, per_target: dict[str, float]) -> dict:
        return quality.summary(per_target, self.data.targets)


def combined(pool: Pool, method: str, weight: float) -> np.ndarray:
    """(n, T) the combination `method` of NAG and embedding at the embedding's share `weight`."""
    if method == "anchored":
        return hybrid.hybrid_scores(pool.nag, pool.emb, pool.anchors, weight).astype(np.float64)
    if method == "rank":
        a, b = rankdata(pool.nag, axis=0), rankdata(pool.emb, axis=0)
    else:
        a, b = (_z(pool.nag), _z(pool.emb))
    return (1.0 - weight) * a + weight * b


def _z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-12)


def weight_curves(pools: dict[str, Pool], weights: list[float], fraction: float) -> dict:
    """method -> weight -> {pool: summary}, and the per-target lifts of every point."""
    out: dict = {}
    for method in METHODS:
        out[method] = {}
        for w in weights:
            point = {}
            for name, pool in pools.items():
                per = pool.lifts(combined(pool, method, w), fraction)
                point[name] = {**pool.summary(per), "per_target": per}
            out[method][w] = point
    return out


def chosen(curves: dict) -> dict[str, float]:
    """method -> its weight with the best mean lift on pool a's dev targets (ties: smaller)."""
    return {
        m: max(sorted(c), key=lambda w, c=c: (c[w]["a"]["dev_mean"], -w)) for m, c in curves.items()
    }


def distilled_scores(
    pool: Pool, train_on: Pool, rows: np.ndarray, backbone, max_tokens: int
) -> np.ndarray:
    """(n, T) the distilled scorer's scores of `pool`, trained on the tuned NAG scores (for
    `pool`'s targets) of the documents `rows` of `train_on`."""
    labels = score_many(train_on.nags[rows], pool.profiles)
    texts = [train_on.data.texts[i] for i in rows]
    read = distill.hf_reader(backbone.tokenizer, max_tokens)
    emb = backbone.model.get_input_embeddings().weight.detach().float().cpu().numpy()
    targets = list(pool.data.examples)
    scorer = distill.train(read, emb, texts, labels, targets, DISTILL_SETTINGS, max_tokens)
    return scorer.score(read, pool.data.texts).astype(np.float64)


def sample_rows(pool: Pool, fraction: float, seed: int = 0) -> np.ndarray:
    """The graph's sample: documents whose hash of (seed, shard, id) falls below `fraction`."""
    keys = distill.sample_keys("pool", list(pool.data.ids), seed)
    return np.flatnonzero(keys < fraction)


def ranker_table(pools: dict[str, Pool], args, backbone) -> dict[str, dict[str, dict]]:
    """ranker -> pool -> per-target lifts, for the single rankers and the cheap scorer."""
    out: dict[str, dict[str, dict]] = {}
    for name, pool in pools.items():
        d, f = pool.data, args.fraction
        rand = [pool.lifts(random_scores(d.ids, list(d.examples), s), f) for s in range(args.seeds)]
        raw = dsir.NgramModel.fit(dsir.bucket_counts(d.texts))
        models = [dsir.NgramModel.fit(dsir.bucket_counts(x)) for x in d.examples.values()]
        singles = {
            "nag (tuned, the default)": pool.nag,
            "embedding": pool.emb,
            "dsir": dsir.dsir_scores(d.texts, models, raw),
            **cheap_scores(pools, name, backbone, args.max_tokens),
        }
        out.setdefault("random", {})[name] = {
            t: round(float(np.mean([r[t] for r in rand])), 3) for t in rand[0]
        }
        for ranker, scores in singles.items():
            out.setdefault(ranker, {})[name] = pool.lifts(scores, f)
    return out


def cheap_scores(pools: dict[str, Pool], name: str, backbone, max_tokens: int) -> dict:
    """The distilled scorer's scores of pool `name`: trained on 10% of it (as the graph), and
    on every lead of the other pool (a larger sample, none of it selected from)."""
    pool, other = pools[name], pools["b" if name == "a" else "a"]
    every = np.arange(len(other.data.texts))
    return {
        "nag_distilled (10% sample)": distilled_scores(
            pool, pool, sample_rows(pool, 0.1), backbone, max_tokens
        ),
        "nag_distilled (1,600 other leads)": distilled_scores(
            pool, other, every, backbone, max_tokens
        ),
    }


def _cpu_seconds(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def costs(pool: Pool, backbone, args) -> dict[str, float]:
    """Documents per CPU second (one torch thread) of each ranker's per-document work, on the
    pool's first `--cost-docs` leads (NAG on a quarter of them: it is slow)."""
    texts = pool.data.texts[: args.cost_docs]
    few = texts[: max(1, len(texts) // 4)]
    embedder = embedding.load_embedder()
    embedder.encode(few[:8])  # warm
    read = distill.hf_reader(backbone.tokenizer, args.max_tokens)
    scorer_rows = np.arange(len(pool.data.texts))
    emb = backbone.model.get_input_embeddings().weight.detach().float().cpu().numpy()
    labels = pool.nag[scorer_rows]
    targets = list(pool.data.examples)
    scorer = distill.train(
        read, emb, pool.data.texts, labels, targets, DISTILL_SETTINGS, args.max_tokens
    )
    k = quality.TUNED.top_k
    seconds = {
        "nag": _cpu_seconds(lambda: extract_nags(backbone, few, k, args.max_tokens)) / len(few),
        "embedding": _cpu_seconds(lambda: embedder.encode(texts)) / len(texts),
        "nag_distilled": _cpu_seconds(lambda: scorer.score(read, texts)) / len(texts),
    }
    seconds["hybrid"] = seconds["nag"] + seconds["embedding"]
    return {r: round(1.0 / s, 1) for r, s in seconds.items()}


def report(table: dict, curves: dict, picks: dict[str, float]) -> dict:
    """ranker -> pool -> {mean, worst, per target}, the combinations at their dev weights."""
    rows = dict(table)
    for method, w in picks.items():
        name = f"hybrid/{method} w={w}"
        rows[name] = {p: x["per_target"] for p, x in curves[method][w].items()}
    out = {}
    for name, by_pool in rows.items():
        out[name] = {}
        for p, per in by_pool.items():
            targets = quality.POOLS[p][1]
            out[name][p] = {**quality.summary(per, targets), "per_target": per}
    return out


def curve_table(curves: dict) -> dict:
    """method -> weight -> 'dev / held-out a / b' means (the per-target lifts dropped)."""
    out: dict = {}
    for method, points in curves.items():
        out[method] = {}
        for w, p in points.items():
            a, b = p["a"], p["b"]
            out[method][w] = [a["dev_mean"], a["heldout_mean"], b["heldout_mean"]]
    return out


def load_pools(args, backbone) -> dict[str, Pool]:
    pools = {}
    for name in ("a", "b"):
        args.pool_set = name
        pools[name] = Pool(quality.load_data(args, backbone), args)
        print(f"pool {name} ready", file=sys.stderr, flush=True)
    return pools


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pool", type=int, default=1600, help="Wikipedia leads per pool")
    p.add_argument("--examples", type=int, default=100, help="target examples per benchmark")
    p.add_argument("--fraction", type=float, default=0.1, help="of pool tokens, per target")
    p.add_argument("--max-tokens", type=int, default=120)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: best when shared)")
    p.add_argument("--seeds", type=int, default=5, help="random ranker seeds")
    p.add_argument("--weights", default=",".join(f"{w / 20:g}" for w in range(21)))
    p.add_argument("--cost-docs", type=int, default=256)
    p.add_argument("--cache", default=None, help="quality.py's impact cache folder")
    p.add_argument("--quick", action="store_true", help="a tiny random model, 60 leads: smoke")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.quick:
        from nag_assets_tests.tiny import tiny_backbone

        args.pool, args.examples, args.seeds, args.cost_docs = 60, 4, 2, 16
        args.cache = args.cache or tempfile.mkdtemp(prefix="hybrid-")
        backbone = tiny_backbone()
    else:
        backbone = load_backbone("embedded", device="cpu", dtype="bf16")
    pools = load_pools(args, backbone)
    weights = [float(w) for w in args.weights.split(",")]
    curves = weight_curves(pools, weights, args.fraction)
    picks = chosen(curves)
    out = {
        "benchmark": "hybrid",
        "settings": vars(args),
        "machine": _bench.machine(),
        "chosen_on_dev": picks,
        "rankers": report(ranker_table(pools, args, backbone), curves, picks),
        "weight_curves (dev a, held-out a, b)": curve_table(curves),
        "documents_per_cpu_second": costs(pools["a"], backbone, args),
    }
    out["seconds"] = round(time.perf_counter() - start, 1)
    return _bench.emit(out)


if __name__ == "__main__":
    main()

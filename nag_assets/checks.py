"""Sanity checks of a selection, over a storage root's stored NAGs and scores (no Dagster).

    python -m nag_assets.checks stability    --root demo_root
    python -m nag_assets.checks agreement    --root demo_root
    python -m nag_assets.checks deactivation --root demo_root
    python -m nag_assets.checks variants     --root demo_root

Each prints one JSON object. The same functions back the `selection_checks` asset.

- stability: per target, the selection made from a random subset of n target examples
  (several seeds) against the one from all of them: Jaccard of the chosen documents.
- agreement: Jaccard of the NAG selection with each baseline ranker's (nag_assets.rankers),
  per target, beside the Jaccard two independent random selections would have on average.
- deactivation: zero the up-projection outputs of a target's K most frequent neurons per
  layer and measure the backbone's loss on held-out examples of that benchmark (not among the
  target's examples), beside zeroing K random neurons per layer (several seeds) and another
  target's top neurons. A working NAG raises the loss much more for its own neurons. Also
  reported: the same with the contrastive profile's top-K neurons.
- variants (beyond the paper): the paper's profile beside the contrastive one (a neuron's
  target frequency relative to its pool frequency): distinct top-K neurons per layer over all
  targets, top-K neurons shared between targets, and the Jaccard of the targets' selections.

Selections use the mixture's rule (`select_under_budget`: all targets at once, `fraction` of
the pool's tokens split equally), over every shard scored against the current targets.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence

import numpy as np
import polars as pl
import torch

from nag_assets.nag import Backbone, build_profile, score_many, select_under_budget, top_neurons
from nag_assets.nag.profile import contrastive_profile
from nag_assets.pipeline import baselines
from nag_assets.pipeline.common import nags_of
from nag_assets.pipeline.mixture import RANK_SEP, scored_shards
from nag_assets.pipeline.shards import NAG as SHARD_NAG
from nag_assets.pipeline.targets import DATASET
from nag_assets.pipeline.targets import NAG as TARGET_NAG
from nag_assets.rankers import BASELINES, Embedder
from nag_assets.sources.benchmarks import BENCHMARK_PREFIX, load_benchmark
from nag_assets.sources.files import InputError
from nag_assets.storage import Storage

CHECKS = ("stability", "agreement", "deactivation", "variants")
VARIANTS = ("paper", "contrastive")


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _ready(storage: Storage, targets: list[str] | None):
    """(targets with a target_nag, {shard: shard_scores meta} of shards scored against them)."""
    if targets is None:
        targets = sorted(
            f.name.removesuffix(".parquet")
            for f in storage.list_files(TARGET_NAG)
            if f.name.endswith(".parquet")
        )
    targets = [t for t in targets if storage.read_meta(TARGET_NAG, f"{t}.parquet")]
    if not targets:
        raise InputError(f"no target_nag under {storage.url(TARGET_NAG)}: run the graph first")
    shards = sorted(
        f.name.removesuffix(".parquet")
        for f in storage.list_files(SHARD_NAG)
        if f.name.endswith(".parquet")
    )
    usable, _, _ = scored_shards(storage, shards, targets)
    if not usable:
        raise InputError("no shard is scored against the current targets: run the graph first")
    return targets, usable


def _pool(storage: Storage, shards: Sequence[str]):
    """(NAGs (n, L, K), tokens, rank ids "id<SEP>shard") of the pool, shard by shard."""
    nags, tokens, ids = [], [], []
    for s in shards:
        meta = storage.read_meta(SHARD_NAG, f"{s}.parquet")
        df = storage.read_parquet(SHARD_NAG, f"{s}.parquet")
        nags.append(nags_of(df, meta))
        tokens.append(df["tokens"].to_numpy())
        ids.append((df["id"] + f"{RANK_SEP}{s}").to_numpy())
    return np.concatenate(nags), np.concatenate(tokens), np.concatenate(ids)


def _target_nags(storage: Storage, target: str) -> np.ndarray:
    meta = storage.read_meta(TARGET_NAG, f"{target}.parquet")
    return nags_of(storage.read_parquet(TARGET_NAG, f"{target}.parquet"), meta)


def profiles(
    storage: Storage, targets: list[str], variant: str = "paper", pool_nags=None
) -> dict[str, np.ndarray]:
    """Each target's profile: the paper's, or the contrastive variant (relative to the pool
    profile built from `pool_nags`, every shard's NAGs)."""
    meta = storage.read_meta(TARGET_NAG, f"{targets[0]}.parquet")
    d_ff, k = meta["d_ff"], meta["top_k"]
    out = {t: build_profile(_target_nags(storage, t), d_ff) for t in targets}
    if variant == "paper":
        return out
    if variant != "contrastive":
        raise ValueError(f"unknown profile variant {variant!r}; choose from {list(VARIANTS)}")
    pool = build_profile(pool_nags, d_ff)
    return {t: contrastive_profile(p, pool, len(pool_nags), k) for t, p in out.items()}


def variants(storage: Storage, fraction: float = 0.2, targets: list[str] | None = None) -> dict:
    """The paper's profile beside the contrastive one: how many distinct neurons the
    targets' top-K take per layer (all targets together; T*K when no two share one), how
    many a target shares with the others, how far apart the targets' selections are, and how
    much each variant's selection overlaps the paper's."""
    targets, usable = _ready(storage, targets)
    nags, tokens, ids = _pool(storage, sorted(usable))
    k = storage.read_meta(TARGET_NAG, f"{targets[0]}.parquet")["top_k"]
    out: dict = {}
    picks = {}
    for variant in VARIANTS:
        profs = profiles(storage, targets, variant, nags)
        tops = {t: top_neurons(p, k) for t, p in profs.items()}
        union = [
            len(set().union(*(set(tops[t][layer]) for t in targets)))
            for layer in range(nags.shape[1])
        ]
        shared = {
            t: float(
                np.mean(
                    [
                        len(
                            set(tops[t][layer])
                            & set().union(*(set(tops[o][layer]) for o in targets if o != t))
                        )
                        for layer in range(nags.shape[1])
                    ]
                )
            )
            if len(targets) > 1
            else 0.0
            for t in targets
        }
        scores = score_many(nags, np.stack([profs[t] for t in targets]))
        picks[variant] = selections(scores, tokens, ids, targets, fraction)
        out[variant] = {
            "distinct_top_k_neurons_per_layer": round(float(np.mean(union)), 2),
            "of_possible": len(targets) * k,
            "top_k_shared_with_other_targets": {t: round(v, 2) for t, v in shared.items()},
            "between_targets_jaccard": round(
                jaccard(picks[variant][targets[0]], picks[variant][targets[1]]), 4
            )
            if len(targets) > 1
            else None,
        }
    for variant in VARIANTS[1:]:
        out[variant]["jaccard_with_paper"] = {
            t: round(jaccard(picks[variant][t], picks["paper"][t]), 4) for t in targets
        }
    return {"check": "variants", "fraction": fraction, "top_k": k, "targets": targets, **out}


def selections(
    scores: np.ndarray, tokens: np.ndarray, ids: np.ndarray, targets: list[str], fraction: float
) -> dict[str, set]:
    """target -> the rank ids the budgeted selection keeps for it."""
    _, rows, cols = select_under_budget(scores, tokens, ids, targets, fraction)
    out: dict[str, set] = {t: set() for t in targets}
    for r, c in zip(rows, cols):
        out[targets[c]].add(ids[r])
    return out


def stability(
    storage: Storage,
    sizes: Sequence[int] = (25, 50, 100, 200),
    seeds: int = 3,
    fraction: float = 0.2,
    targets: list[str] | None = None,
) -> dict:
    """Jaccard of the selection from n examples (mean, min, max over seeds) with the one from
    all examples, per target. A size >= a target's example count is reported as `all`."""
    targets, usable = _ready(storage, targets)
    nags, tokens, ids = _pool(storage, sorted(usable))
    target_nags = {t: _target_nags(storage, t) for t in targets}
    d_ff = storage.read_meta(TARGET_NAG, f"{targets[0]}.parquet")["d_ff"]

    def select(subsets: dict[str, np.ndarray]) -> dict[str, set]:
        profiles = np.stack([build_profile(subsets[t], d_ff) for t in targets])
        return selections(score_many(nags, profiles), tokens, ids, targets, fraction)

    full = select(target_nags)
    out: dict = {t: {"examples": len(target_nags[t])} for t in targets}
    for n in sizes:
        runs = []
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            subsets = {
                t: x[rng.permutation(len(x))[:n]] if n < len(x) else x
                for t, x in target_nags.items()
            }
            runs.append(select(subsets))
        for t in targets:
            key = str(n) if n < len(target_nags[t]) else "all"
            js = [jaccard(r[t], full[t]) for r in runs]
            out[t][key] = {"mean": round(float(np.mean(js)), 4), "min": round(min(js), 4)}
    return {
        "check": "stability",
        "fraction": fraction,
        "seeds": seeds,
        "pool_documents": len(ids),
        "jaccard_with_all_examples": out,
    }


def agreement(
    storage: Storage,
    fraction: float = 0.2,
    rankers: Sequence[str] = BASELINES,
    targets: list[str] | None = None,
    embedder: Embedder | None = None,
    seed: int = 0,
) -> dict:
    """Jaccard of the NAG selection with each baseline's, per target; `random_expected` is the
    mean Jaccard of two independent random selections of the same size (the floor)."""
    targets, usable = _ready(storage, targets)
    keys = sorted(usable)
    picks: dict[str, dict[str, set]] = {}
    for ranker in ("nag", *rankers):
        metas = baselines.baseline_scores(storage, ranker, usable, targets, seed, embedder)
        folder = baselines.score_folder(ranker)
        frames = [
            storage.read_parquet(folder, f"{s}.parquet").with_columns(
                rank=pl.col("id") + f"{RANK_SEP}{s}"
            )
            for s in keys
            if metas[s]
        ]
        df = pl.concat(frames)
        picks[ranker] = selections(
            df.select(targets).to_numpy(),
            df["tokens"].to_numpy(),
            df["rank"].to_numpy(),
            targets,
            fraction,
        )
    pool = sum(len(storage.read_parquet(baselines.SCORES, f"{s}.parquet")) for s in keys)
    out: dict = {}
    for t in targets:
        row = {"documents": {r: len(p[t]) for r, p in picks.items()}}
        for r in rankers:
            row[f"nag_vs_{r}"] = round(jaccard(picks["nag"][t], picks[r][t]), 4)
        p = len(picks["nag"][t]) / pool
        row["random_expected"] = round(p / (2 - p), 4)  # E|A&B| / E|A|B| for two p-samples
        out[t] = row
    between = {
        r: round(jaccard(picks[r][targets[0]], picks[r][targets[1]]), 4)
        for r in picks
        if len(targets) > 1
    }
    return {
        "check": "agreement",
        "fraction": fraction,
        "pool_documents": pool,
        "jaccard": out,
        # how different two targets' selections are, per ranker (first two targets)
        "between_targets": {"targets": targets[:2], **between} if between else {},
    }


def _benchmark_of(storage: Storage, target: str) -> str | None:
    """The built-in benchmark a target comes from (a JSON spec or a bench__ partition)."""
    if target.startswith(BENCHMARK_PREFIX):
        return target.removeprefix(BENCHMARK_PREFIX)
    try:
        spec = json.loads(storage.read_bytes("targets", f"{target}.json"))
    except (FileNotFoundError, ValueError):
        return None
    return spec.get("benchmark") if isinstance(spec, dict) else None


def held_out(storage: Storage, target: str, n: int) -> list[str]:
    """Up to `n` examples of the target's benchmark that are not among its target examples."""
    bench = _benchmark_of(storage, target)
    if bench is None:
        raise InputError(f"target {target!r} is not a built-in benchmark: no held-out examples")
    used = storage.read_parquet(DATASET, f"{target}.parquet")
    df = load_benchmark(bench, limit=used.height + n)
    return df.filter(~pl.col("id").is_in(used["id"].implode()))["text"].head(n).to_list()


class _Zeroed:
    """Zero chosen outputs of each layer's up-projection: the same as zeroing those rows of
    its weight (and bias), for every architecture (GPT-2's Conv1D stores it transposed)."""

    def __init__(self, backbone: Backbone, neurons: list[np.ndarray]):
        self.pairs = [
            (m, torch.as_tensor(np.asarray(n, dtype=np.int64)))
            for m, n in zip(backbone.up_projs, neurons)
        ]
        self.handles: list = []

    def __enter__(self):
        def hook(idx):
            def run(_m, _i, out):
                out = out.clone()
                out[..., idx.to(out.device)] = 0
                return out

            return run

        self.handles = [m.register_forward_hook(hook(i)) for m, i in self.pairs if len(i)]
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


@torch.inference_mode()
def lm_loss(backbone: Backbone, texts: list[str], max_tokens: int = 120, batch: int = 16) -> float:
    """Mean next-token cross-entropy (nats per token) of the full causal LM over `texts`."""
    ids = [x for x in backbone.tokenize(texts, max_tokens) if len(x) > 1]
    total, count = 0.0, 0
    for s in range(0, len(ids), batch):
        rows = ids[s : s + batch]
        width = max(len(x) for x in rows)
        inp = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        for r, x in enumerate(rows):
            inp[r, : len(x)] = torch.tensor(x)
            labels[r, : len(x)] = torch.tensor(x)
        # right padding and causal attention: real tokens never see a pad
        logits = backbone.model(input_ids=inp.to(backbone.device), use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]),
            labels[:, 1:].reshape(-1).to(logits.device),
            ignore_index=-100,
            reduction="sum",
        )
        total += float(loss)
        count += int((labels[:, 1:] != -100).sum())
    return total / max(count, 1)


def deactivation(
    storage: Storage,
    backbone: Backbone,
    neurons: Sequence[int] = (5, 20),
    seeds: int = 5,
    examples: int = 100,
    targets: list[str] | None = None,
    max_tokens: int = 120,
    log=None,
) -> dict:
    """Loss on held-out examples with no neuron off, the target's own top-K per layer off,
    K random per layer off (mean and max over seeds), and each other target's top-K off."""
    targets, usable = _ready(storage, targets)
    tmeta = storage.read_meta(TARGET_NAG, f"{targets[0]}.parquet")
    if (tmeta["d_ff"], tmeta["layers"]) != (backbone.d_ff, backbone.num_layers):
        raise InputError("the stored NAGs were made with another backbone")
    pool_nags = _pool(storage, sorted(usable))[0]
    profs = profiles(storage, targets)
    contrast = profiles(storage, targets, "contrastive", pool_nags)
    texts = {t: held_out(storage, t, examples) for t in targets}
    out: dict = {}
    for t in targets:
        base = lm_loss(backbone, texts[t], max_tokens)
        row: dict = {"held_out_examples": len(texts[t]), "loss_intact": round(base, 4)}
        for k in neurons:
            own = top_neurons(profs[t], k)
            with _Zeroed(backbone, list(own)):
                own_loss = lm_loss(backbone, texts[t], max_tokens)
            with _Zeroed(backbone, list(top_neurons(contrast[t], k))):
                contrast_loss = lm_loss(backbone, texts[t], max_tokens)
            rand = []
            for seed in range(seeds):
                rng = np.random.default_rng(seed)
                pick = [rng.choice(backbone.d_ff, k, replace=False) for _ in own]
                with _Zeroed(backbone, pick):
                    rand.append(lm_loss(backbone, texts[t], max_tokens))
            others = {}
            for o in targets:
                if o != t:
                    with _Zeroed(backbone, list(top_neurons(profs[o], k))):
                        others[o] = round(lm_loss(backbone, texts[t], max_tokens) - base, 4)
            if log:
                log(f"deactivation {t} k={k}: own {own_loss - base:+.4f}, random {rand}")
            row[f"k={k}"] = {
                "rise_own_neurons": round(own_loss - base, 4),
                "rise_random_mean": round(float(np.mean(rand)) - base, 4),
                "rise_random_max": round(float(np.max(rand)) - base, 4),
                "rise_other_targets_neurons": others,
                "rise_own_neurons_contrastive_profile": round(contrast_loss - base, 4),
            }
        out[t] = row
    return {
        "check": "deactivation",
        "backbone": backbone.name,
        "max_tokens": max_tokens,
        "random_seeds": seeds,
        "loss": "mean next-token cross-entropy, nats/token, on held-out benchmark examples",
        "targets": out,
    }


def summary_md(results: dict) -> str:
    """The headline figures of the checks run, as a Markdown table."""
    rows = []
    for t, r in results.get("stability", {}).get("jaccard_with_all_examples", {}).items():
        sizes = ", ".join(f"{n}: {v['mean']:.2f}" for n, v in r.items() if n != "examples")
        rows.append(f"| stability | {t} | Jaccard with all {r['examples']} examples: {sizes} |")
    for t, r in results.get("agreement", {}).get("jaccard", {}).items():
        pairs = ", ".join(f"{k[8:]}: {v:.2f}" for k, v in r.items() if k.startswith("nag_vs_"))
        rows.append(f"| agreement | {t} | NAG vs {pairs} (random floor {r['random_expected']}) |")
    for t, r in results.get("deactivation", {}).get("targets", {}).items():
        for k, v in r.items():
            if k.startswith("k="):
                rows.append(
                    f"| deactivation | {t} | {k}: loss +{v['rise_own_neurons']:.3f} own neurons "
                    f"(contrastive +{v['rise_own_neurons_contrastive_profile']:.3f}), "
                    f"+{v['rise_random_mean']:.3f} random (max +{v['rise_random_max']:.3f}), "
                    f"base {r['loss_intact']:.3f} |"
                )
    v = results.get("variants", {})
    for variant in VARIANTS:
        if variant in v:
            r = v[variant]
            rows.append(
                f"| variants | {variant} | {r['distinct_top_k_neurons_per_layer']} distinct top-K "
                f"neurons per layer of {r['of_possible']}; selections' Jaccard between targets "
                f"{r['between_targets_jaccard']} |"
            )
    return "| check | target | figures |\n|---|---|---|\n" + "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nag_assets.checks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("check", choices=[*CHECKS, "all"])
    parser.add_argument("--root", default=os.environ.get("NAG_ASSETS_ROOT", "demo_root"))
    parser.add_argument("--fraction", type=float, default=0.2)
    parser.add_argument("--seeds", type=int, default=3, help="subsets per size (stability)")
    parser.add_argument("--sizes", default="25,50,100,200", help="stability: example counts")
    parser.add_argument("--neurons", default="5,20", help="deactivation: K per layer")
    parser.add_argument("--random-seeds", type=int, default=5, help="deactivation")
    parser.add_argument("--examples", type=int, default=100, help="deactivation: held out")
    parser.add_argument("--model", default=os.environ.get("NAG_MODEL", "embedded"))
    args = parser.parse_args(argv)
    storage = Storage(args.root)
    names = CHECKS if args.check == "all" else (args.check,)
    results = {}
    for name in names:
        start = time.perf_counter()
        if name == "stability":
            sizes = [int(x) for x in args.sizes.split(",")]
            results[name] = stability(storage, sizes, args.seeds, args.fraction)
        elif name == "agreement":
            results[name] = agreement(storage, args.fraction)
        elif name == "variants":
            results[name] = variants(storage, args.fraction)
        else:
            from nag_assets.nag import load_backbone

            backbone = load_backbone(args.model, device=os.environ.get("NAG_DEVICE", "auto"))
            neurons = [int(x) for x in args.neurons.split(",")]
            results[name] = deactivation(
                storage,
                backbone,
                neurons,
                args.random_seeds,
                args.examples,
                log=lambda m: print(m, file=sys.stderr, flush=True),
            )
        results[name]["seconds"] = round(time.perf_counter() - start, 1)
    json.dump(results if len(results) > 1 else results[names[0]], sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

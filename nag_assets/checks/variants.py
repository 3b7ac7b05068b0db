"""variants (beyond the paper): with a small backbone a few always-on neurons take most top-K
slots, so a NAG says little about its text. Measured here beside the paper's method, from
one backbone pass over the pool and the targets (every neuron's impact, kept in memory):

- `contrastive`: the paper's NAGs, profile = target frequency relative to pool frequency;
- `normalized`: impact divided by the neuron's mean impact over the pool before the top-K;
- `k20`, `k50`, ...: the paper's method with K above 0.3% of d_ff.

Per variant: distinct neurons per layer in the pool's NAGs, the share of documents holding
the layer's most common neuron, the profiles' concentration, how far apart the targets'
selections are, their overlap with the paper's, and stability with fewer examples. Each
variant's profiles and selection are stored under `assets/selection_checks/variants/`, where
the deactivation check and `benchmarks/proxy.py` pick them up.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

from nag_assets.checks.common import jaccard, ready, selections, target_meta
from nag_assets.checks.deactivation import VARIANT_INDEX
from nag_assets.checks.stability import subsample
from nag_assets.nag import Backbone, build_profile, concentration, extract_impacts, score_many
from nag_assets.nag.extract import BATCH_SIZE, nags_from_impacts
from nag_assets.nag.profile import contrastive_profiles, neuron_use
from nag_assets.pipeline.layout import SHARD_SCORES, rank_ids, table
from nag_assets.pipeline.ranker_scores import shard_texts, target_texts
from nag_assets.sources.files import InputError
from nag_assets.storage import Storage

FOLDER = VARIANT_INDEX[0]


@dataclass(frozen=True)
class Variant:
    impact: str  # raw | normalized
    top_k: int
    profile: str  # paper | contrastive


def variant_set(k: int, ks: Sequence[int] = (20, 50)) -> dict[str, Variant]:
    """The paper's method at the stored K, and each variant of it."""
    out = {
        "paper": Variant("raw", k, "paper"),
        "contrastive": Variant("raw", k, "contrastive"),
        "normalized": Variant("normalized", k, "paper"),
    }
    return out | {f"k{x}": Variant("raw", x, "paper") for x in ks if x != k}


def variants(
    storage: Storage,
    backbone: Backbone,
    fraction: float = 0.2,
    ks: Sequence[int] = (20, 50),
    max_docs: int = 2000,
    examples: int = 50,
    seeds: int = 3,
    targets: list[str] | None = None,
    batch_size: int = BATCH_SIZE,
    progress=False,
) -> dict:
    """Each variant's figures (see the module docstring); `examples`: the stability subset."""
    targets, usable = ready(storage, targets)
    meta = target_meta(storage, targets[0])
    if (meta.d_ff, meta.layers) != (backbone.d_ff, backbone.num_layers):
        raise InputError("the stored NAGs were made with another backbone")
    ids, tokens, texts = _pool(storage, usable, max_docs)
    examples_of = {t: target_texts(storage, t)[0] for t in targets}
    every = texts + [x for t in targets for x in examples_of[t]]
    impacts, lengths = extract_impacts(backbone, every, meta.max_tokens, batch_size, progress)
    runs = _Impacts(impacts, lengths, len(texts), targets, [len(examples_of[t]) for t in targets])
    out: dict = {}
    picks: dict[str, dict[str, set]] = {}
    for name, v in variant_set(meta.top_k, ks).items():
        pool, tnags = runs.nags(v)
        profiles = runs.profiles(v, pool, tnags)
        scores = score_many(pool, np.stack([profiles[t] for t in targets]))
        picks[name] = selections(scores, tokens, ids, targets, fraction)
        _store(storage, name, profiles, picks[name], scores, ids, targets)
        stability = _stability(runs, v, picks[name], (pool, tnags, tokens, ids), fraction,
                               examples, seeds)  # fmt: skip
        out[name] = _figures(v, pool, profiles, picks[name], targets, examples, stability)
    return _report(storage, out, picks, targets, fraction, len(texts), backbone.d_ff)


def _figures(v: Variant, pool, profiles, picks, targets, examples: int, stability) -> dict:
    return {
        **asdict(v),
        **neuron_use(pool),
        "profile_concentration": {
            t: round(concentration(p, v.top_k), 4) for t, p in profiles.items()
        },
        "between_targets_jaccard": _between(picks, targets),
        f"stability_jaccard_{examples}_examples": stability,
    }


def _report(storage: Storage, out: dict, picks, targets, fraction, n: int, d_ff: int) -> dict:
    """Each variant's overlap with `paper` (the `nag` ranker's profile); the variant index
    the deactivation check reads."""
    for name in out:
        out[name]["jaccard_with_paper"] = {
            t: round(jaccard(picks[name][t], picks["paper"][t]), 4) for t in targets
        }
    index = {
        "variants": {
            name: {k: out[name][k] for k in ("impact", "top_k", "profile")} for name in out
        },
        "target_versions": {t: target_meta(storage, t).version for t in targets},
    }
    storage.write_bytes(json.dumps(index, indent=1).encode(), *VARIANT_INDEX)
    return {
        "check": "variants",
        "fraction": fraction,
        "pool_documents": n,
        "targets": targets,
        "d_ff": d_ff,
        "variants": out,
    }


class _Impacts:
    """The pool's and the targets' impacts, turned into any variant's NAGs and profiles."""

    def __init__(self, impacts, lengths, n_pool: int, targets: list[str], sizes: list[int]):
        self.impacts, self.lengths, self.n, self.targets = impacts, lengths, n_pool, targets
        ends = np.cumsum([n_pool, *sizes])
        self.spans = {t: (ends[i], ends[i + 1]) for i, t in enumerate(targets)}
        used = lengths[:n_pool] > 0
        self.baseline = impacts[:n_pool][used].mean(axis=0, dtype=np.float64).astype(np.float32)
        self.d_ff = impacts.shape[-1]

    def nags(self, v: Variant) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(the pool's NAGs, {target: its examples' NAGs}) under the variant."""
        baseline = self.baseline if v.impact == "normalized" else None
        every = nags_from_impacts(self.impacts, self.lengths, v.top_k, baseline)
        return every[: self.n], {t: every[a:b] for t, (a, b) in self.spans.items()}

    def profiles(self, v: Variant, pool: np.ndarray, tnags: dict) -> dict[str, np.ndarray]:
        profiles = {t: build_profile(x, self.d_ff) for t, x in tnags.items()}
        if v.profile == "contrastive":
            contrastive = contrastive_profiles(list(profiles.values()), [pool], v.top_k)
            profiles = dict(zip(profiles, contrastive))
        return profiles


def _stability(
    runs: _Impacts, v: Variant, full: dict[str, set], pool_data, fraction, examples, seeds
) -> dict[str, float]:
    """Mean Jaccard, over seeds, of the selection from `examples` examples with all's."""
    pool, tnags, tokens, ids = pool_data
    js: dict[str, list[float]] = {t: [] for t in runs.targets}
    for seed in range(seeds):
        profiles = runs.profiles(v, pool, subsample(tnags, examples, seed))
        scores = score_many(pool, np.stack([profiles[t] for t in runs.targets]))
        picked = selections(scores, tokens, ids, runs.targets, fraction)
        for t in runs.targets:
            js[t].append(jaccard(picked[t], full[t]))
    return {t: round(float(np.mean(x)), 4) for t, x in js.items()}


def _between(picks: dict[str, set], targets: list[str]) -> float | None:
    return round(jaccard(picks[targets[0]], picks[targets[1]]), 4) if len(targets) > 1 else None


def _pool(storage: Storage, usable: dict, max_docs: int):
    """(rank ids, tokens, texts) of the scored pool, or of every k-th document if larger."""
    ids, tokens, texts = [], [], []
    for s in sorted(usable):
        df = storage.read_parquet(*table(SHARD_SCORES, s)).select("id", "tokens")
        ids += rank_ids(df["id"], s).tolist()
        tokens.append(df["tokens"].to_numpy())
        texts += shard_texts(storage, s, df["id"].to_list(), usable[s].sha256)
    keep = np.arange(len(ids))[:: max(1, -(-len(ids) // max_docs))]
    tokens_all = np.concatenate(tokens)
    return np.asarray(ids)[keep], tokens_all[keep], [texts[i] for i in keep]


def _store(storage: Storage, name: str, profiles: dict, picks: dict, scores, ids, targets):
    """The variant's profiles, and its selection: target, rank id, score."""
    folder = f"{FOLDER}/{name}"
    for t, p in profiles.items():
        storage.write_npy(p.astype(np.float32), folder, f"{t}.profile.npy")
    row_of = {r: i for i, r in enumerate(ids)}
    rows = [
        (t, r, float(scores[row_of[r], c])) for c, t in enumerate(targets) for r in sorted(picks[t])
    ]
    df = pl.DataFrame(rows, schema=["target", "rank", "score"], orient="row")
    storage.write_parquet(df, folder, "selection.parquet")

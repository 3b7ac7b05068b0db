"""deactivation: zero a target's most frequent neurons and watch the backbone's loss on
held-out examples of the target rise, beside zeroing random neurons (the paper's sanity check
that the extraction finds neurons the task depends on)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import polars as pl
import torch

from nag_assets.checks.common import benchmark_of, pool_nags, ready, target_meta
from nag_assets.nag import Backbone, top_neurons
from nag_assets.nag.adapters import zeroed as zeroed_modules
from nag_assets.nag.extract import MAX_TOKENS, right_padded
from nag_assets.nag.profile import contrastive_profiles
from nag_assets.pipeline.layout import TARGET_DATASET, table
from nag_assets.pipeline.targets import load_profile
from nag_assets.sources.benchmarks import load_benchmark
from nag_assets.sources.files import InputError
from nag_assets.storage import Storage

VARIANT_INDEX = ("assets/selection_checks/variants", "index.json")


def held_out(storage: Storage, target: str, n: int) -> list[str]:
    """Up to `n` examples of the target's benchmark that are not among its target examples."""
    bench = benchmark_of(storage, target)
    if bench is None:
        raise InputError(f"target {target!r} is not a built-in benchmark: no held-out examples")
    used = storage.read_parquet(*table(TARGET_DATASET, target))
    df = load_benchmark(bench, limit=used.height + n)
    return df.filter(~pl.col("id").is_in(used["id"].implode()))["text"].head(n).to_list()


def zeroed(backbone: Backbone, neurons: Sequence[np.ndarray]):
    """Zero the chosen neurons of each layer (through the backbone's adapter) in the block."""
    return zeroed_modules(backbone.up_projs, neurons)


@torch.inference_mode()
def lm_loss(
    backbone: Backbone, texts: list[str], max_tokens: int = MAX_TOKENS, batch: int = 16
) -> float:
    """Mean next-token cross-entropy (nats per token) of the full causal LM over `texts`."""
    ids = [x for x in backbone.tokenize(texts, max_tokens) if len(x) > 1]
    total, count = 0.0, 0
    for s in range(0, len(ids), batch):
        rows = ids[s : s + batch]
        inp, mask = right_padded(rows)
        labels = inp.masked_fill(mask == 0, -100)
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


def profile_sets(storage: Storage, targets: list[str], usable: dict) -> dict[str, dict]:
    """{variant: {target: profile}}: the paper's and the contrastive profile from the stored
    NAGs, and any variant the `variants` check stored for these very target versions."""
    paper = {t: load_profile(storage, t)[0] for t in targets}
    k = target_meta(storage, targets[0]).top_k
    pool = pool_nags(storage, sorted(usable))[0]
    contrastive = contrastive_profiles(list(paper.values()), [pool], k)
    out = {"paper": paper, "contrastive": dict(zip(targets, contrastive))}
    try:
        index = json.loads(storage.read_bytes(*VARIANT_INDEX))
    except FileNotFoundError:
        return out
    versions = {t: target_meta(storage, t).version for t in targets}
    if all(index["target_versions"].get(t) == v for t, v in versions.items()):
        for name in index["variants"]:
            if name not in out:
                folder = f"{VARIANT_INDEX[0]}/{name}"
                out[name] = {t: storage.read_npy(folder, f"{t}.profile.npy") for t in targets}
    return out


def deactivation(
    storage: Storage,
    backbone: Backbone,
    neurons: Sequence[int] = (20,),
    seeds: int = 3,
    examples: int = 50,
    targets: list[str] | None = None,
    max_tokens: int = MAX_TOKENS,
    log=None,
) -> dict:
    """Loss on held-out examples intact, with the target's own top-K neurons per layer off
    and with each other target's (per profile variant: a target-specific profile hurts its
    own target more), and with K random ones per layer off (mean and max over seeds)."""
    targets, usable = ready(storage, targets)
    tmeta = target_meta(storage, targets[0])
    if (tmeta.d_ff, tmeta.layers) != (backbone.d_ff, backbone.num_layers):
        raise InputError("the stored NAGs were made with another backbone")
    sets = profile_sets(storage, targets, usable)
    texts = {t: held_out(storage, t, examples) for t in targets if benchmark_of(storage, t)}
    if not texts:
        raise InputError("no target comes from a built-in benchmark: no held-out examples")

    def loss(t: str, off: Sequence[np.ndarray] | None = None) -> float:
        with zeroed(backbone, off if off is not None else []):
            return lm_loss(backbone, texts[t], max_tokens)

    out: dict = {}
    for t in texts:
        base = loss(t)
        row: dict = {"held_out_examples": len(texts[t]), "loss_intact": round(base, 4)}
        for k in neurons:
            own = {v: loss(t, _top(p[t], k)) - base for v, p in sets.items()}
            rand = [loss(t, _random_neurons(backbone, k, seed)) - base for seed in range(seeds)]
            others = {
                v: {o: round(loss(t, _top(p[o], k)) - base, 4) for o in targets if o != t}
                for v, p in sets.items()
            }
            if log:
                log(f"deactivation {t} k={k}: own {own}, random {rand}, others {others}")
            row[f"k={k}"] = {
                "rise_own_neurons": {v: round(r, 4) for v, r in own.items()},
                "rise_random_mean": round(float(np.mean(rand)), 4),
                "rise_random_max": round(float(np.max(rand)), 4),
                "rise_other_targets_neurons": others,
            }
        out[t] = row
    return {
        "check": "deactivation",
        "backbone": backbone.name,
        "max_tokens": max_tokens,
        "random_seeds": seeds,
        "loss": "mean next-token cross-entropy, nats/token, on held-out benchmark examples",
        "targets": out,
        # not from a built-in benchmark: no held-out examples, their neurons still zeroed above
        "without_held_out_examples": [t for t in targets if t not in texts],
    }


def _top(profile: np.ndarray, k: int) -> list[np.ndarray]:
    """The profile's k most frequent neurons per layer; none in a layer it does not score
    (a layer subset's zero rows)."""
    return [row if profile[i].any() else row[:0] for i, row in enumerate(top_neurons(profile, k))]


def _random_neurons(backbone: Backbone, k: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.choice(backbone.d_ff, k, replace=False) for _ in range(backbone.num_layers)]

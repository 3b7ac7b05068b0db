"""What the checks share: the stored targets and pool, profiles and budgeted selections."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from nag_assets.nag import select_under_budget
from nag_assets.pipeline.common import nags_of, require
from nag_assets.pipeline.layout import (
    DISTILL_SAMPLE,
    SHARD_NAG,
    TARGET_NAG,
    NagFooter,
    rank_ids,
    table,
)
from nag_assets.pipeline.mixture import scored_shards
from nag_assets.sources.benchmarks import BENCHMARK_PREFIX
from nag_assets.sources.files import InputError
from nag_assets.storage import Storage


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def ready(storage: Storage, targets: list[str] | None = None) -> tuple[list[str], dict]:
    """(targets with a target_nag, {shard: shard_scores meta} of shards scored against them)."""
    if targets is None:
        targets = sorted(
            f.name.removesuffix(".parquet")
            for f in storage.list_files(TARGET_NAG)
            if f.name.endswith(".parquet")
        )
    targets = [t for t in targets if storage.read_meta(*table(TARGET_NAG, t))]
    if not targets:
        raise InputError(f"no target_nag under {storage.url(TARGET_NAG)}: run the graph first")
    shards = sorted(
        f.name.removesuffix(".parquet")
        for f in storage.list_files(SHARD_NAG)
        if f.name.endswith(".parquet")
    )
    if not shards and storage.list_files(DISTILL_SAMPLE):
        raise InputError(
            "the checks judge full-NAG selections and read every shard's NAGs (shard_nag), "
            "but this selection scores shards with the distilled scorer (scorer: distilled): "
            "run them on a selection with scorer: nag"
        )
    usable, _, _ = scored_shards(storage, shards, targets)
    if not usable:
        raise InputError("no shard is scored against the current targets: run the graph first")
    return targets, usable


def target_meta(storage: Storage, target: str) -> NagFooter:
    """The footer of a target's target_nag (the caller knows it is there: `ready`)."""
    return require(NagFooter.read(storage, TARGET_NAG, target), f"target_nag[{target}]")


def pool_nags(storage: Storage, shards: Sequence[str]):
    """(NAGs (n, L, K), tokens, rank ids "id<SEP>shard") of the pool, shard by shard."""
    nags, tokens, ids = [], [], []
    for s in shards:
        footer = require(NagFooter.read(storage, SHARD_NAG, s), f"shard_nag[{s}]")
        df = storage.read_parquet(*table(SHARD_NAG, s))
        nags.append(nags_of(df, footer))
        tokens.append(df["tokens"].to_numpy())
        ids.append(rank_ids(df["id"], s))
    return np.concatenate(nags), np.concatenate(tokens), np.concatenate(ids)


def target_nags(storage: Storage, target: str) -> np.ndarray:
    meta = target_meta(storage, target)
    return nags_of(storage.read_parquet(*table(TARGET_NAG, target)), meta)


def selections(
    scores: np.ndarray, tokens: np.ndarray, ids: np.ndarray, targets: list[str], fraction: float
) -> dict[str, set]:
    """target -> the rank ids the mixture's budgeted selection keeps for it."""
    _, rows, cols = select_under_budget(scores, tokens, ids, targets, fraction)
    out: dict[str, set] = {t: set() for t in targets}
    for r, c in zip(rows, cols):
        out[targets[c]].add(ids[r])
    return out


def benchmark_of(storage: Storage, target: str) -> str | None:
    """The built-in benchmark a target comes from (a JSON spec or a bench__ partition)."""
    if target.startswith(BENCHMARK_PREFIX):
        return target.removeprefix(BENCHMARK_PREFIX)
    try:
        spec = json.loads(storage.inputs("targets").read_bytes(f"{target}.json"))
    except (FileNotFoundError, ValueError):
        return None
    return spec.get("benchmark") if isinstance(spec, dict) else None

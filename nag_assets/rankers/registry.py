"""The ranker registry: every module of `nag_assets.rankers` that defines `RANKER` is a ranker.

A ranker declares what goes into its score tables' version, and two functions over `Inputs`
(what the pipeline can hand it, loaded lazily): `fit` once per run (a pool-wide model,
centroids, profiles...) and `score` per shard, an (n, T) float32 matrix in [0, 1], one column
per target, higher = better. The pipeline's one writer (`pipeline.ranker_scores`) turns that
into the shard's score table, the same shape as shard_scores. A new ranker is one module here
with its `RANKER`, plus its test.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol

import numpy as np

from nag_assets.sources.files import InputError

DEFAULT = "nag"
DEFAULT_HYBRID_WEIGHT = 0.5  # hybrid: the embedding's share (benchmarks/hybrid.py, dev targets)


class Inputs(Protocol):
    """What a ranker may read; each is loaded only when a ranker asks."""

    targets: list[str]
    shards: list[str]  # every usable shard of the pool, sorted
    seed: int
    options: Options

    def target_texts(self, target: str) -> list[str]: ...
    def target_profiles(self) -> tuple[list[np.ndarray], int]: ...  # profiles, their top_k
    def shard_ids(self, shard: str) -> list[str]: ...
    def doc_keys(self, shard: str) -> list[str]: ...  # "shard/id", unique across the pool
    def shard_texts(self, shard: str) -> list[str]: ...
    def shard_nags(self, shard: str) -> np.ndarray: ...
    def nag_scores(self, shard: str) -> np.ndarray: ...  # (n, T) its shard_scores columns
    def nag_max_tokens(self) -> int: ...  # the NAGs' max_tokens: how much of a text they read
    def backbone(self) -> Any: ...  # the Backbone that made the NAGs (loaded, never run here)
    def embedder(self) -> Any: ...
    def cached(
        self, shard: str, compute: Callable[[], np.ndarray], owner: str | None = None
    ) -> np.ndarray: ...  # a per-shard array in `owner`'s cache (default: the running ranker)


@dataclass(frozen=True)
class Options:
    """Run settings a ranker may depend on."""

    seed: int = 0
    embedder_name: str | None = None
    sample_fraction: float = 0.1  # nag_distilled: the share of the pool its scorer learns from
    hybrid_weight: float = DEFAULT_HYBRID_WEIGHT  # hybrid: the embedding score's share


@dataclass(frozen=True)
class Ranker:
    """`stored=False`: the step graph writes its scores itself (`nag`: shard_scores).
    `whole_pool`: its model is fit on every shard, so any shard's change rescores all.
    `version_inputs`: what else its tables' version depends on (a seed, a model name).
    `uses_seed`: its footer and the mixture's facts record the seed."""

    name: str
    description: str
    score: Callable[[Inputs, Any, str], np.ndarray] | None = None
    fit: Callable[[Inputs], Any] = field(default=lambda _inputs: None)
    version_inputs: Callable[[Options], list] = field(default=lambda _options: [])
    whole_pool: bool = False
    uses_seed: bool = False
    stored: bool = True
    order: int = 50  # position in lists shown to users


@cache
def registry() -> dict[str, Ranker]:
    """name -> ranker, from every module of this package that defines `RANKER`."""
    import nag_assets.rankers as package

    found = []
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        ranker = getattr(module, "RANKER", None)
        if isinstance(ranker, Ranker):
            found.append(ranker)
    return {r.name: r for r in sorted(found, key=lambda r: (r.order, r.name))}


def names() -> tuple[str, ...]:
    return tuple(registry())


def get(name: str) -> Ranker:
    """The ranker called `name`, or an InputError naming the choices."""
    rankers = registry()
    if name not in rankers:
        raise InputError(f"unknown ranker {name!r}; choose one of {list(rankers)}")
    return rankers[name]

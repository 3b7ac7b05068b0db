"""Score tables of the rankers other than `nag`: the same shape as `shard_scores` (id, tokens,
one float32 column per target), written under `assets/baseline_scores/<ranker>/<shard>.parquet`
by the one writer here, whatever the ranker (`nag_assets.rankers.registry`).

Ids, order and token counts come from the shard's `shard_scores` file, so every ranker
selects from the same documents under the same token budget. Each table records a version
(ranker, its declared settings, the shard's and targets' versions, and for a whole-pool ranker
every shard's) and is reused while it holds; per-shard caches (the embedding ranker's document
embeddings) live under `assets/baseline_scores/<ranker>/_docs/`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

import numpy as np
import polars as pl

from nag_assets import rankers
from nag_assets.nag import Backbone
from nag_assets.pipeline.common import nags_of, require
from nag_assets.pipeline.layout import (
    RANKER_SCORES,
    SHARD_NAG,
    SHARD_SCORES,
    TARGET_DATASET,
    NagFooter,
    RankerScoresFooter,
    ShardScoresFooter,
    TargetDatasetFooter,
    doc_key,
    is_current,
    table,
)
from nag_assets.pipeline.shards import read_shard
from nag_assets.pipeline.targets import load_profile
from nag_assets.rankers.registry import Options, Ranker
from nag_assets.sources.files import InputError, read_documents
from nag_assets.storage import Storage, digest

CODE_VERSION = "1"


def score_folder(name: str) -> str:
    """Where a ranker's per-shard score tables live (`nag`: `shard_scores`)."""
    ranker = rankers.get(name)
    return f"{RANKER_SCORES}/{ranker.name}" if ranker.stored else SHARD_SCORES


def target_texts(storage: Storage, target: str) -> tuple[list[str], str]:
    """A target's example texts (from target_dataset) and that dataset's version."""
    footer = TargetDatasetFooter.read(storage, TARGET_DATASET, target)
    if footer is None:
        raise InputError(f"target_dataset[{target}] has not been materialized yet")
    return storage.read_parquet(*table(TARGET_DATASET, target))["text"].to_list(), footer.version


def shard_texts(storage: Storage, shard: str, ids: list[str], sha: str) -> list[str]:
    """The texts of a shard's documents, in the order of its score file."""
    name, data, now_sha = read_shard(storage, shard)
    if now_sha != sha:
        raise InputError(f"{name} changed after it was scored: retried once it is rescored")
    docs = read_documents(data, name, shard)
    if docs["id"].to_list() != ids:
        raise InputError(f"{name}: documents do not line up with their scores")
    return docs["text"].to_list()


def shard_nags(storage: Storage, shard: str, ids: list[str]) -> np.ndarray:
    """A shard's stored NAGs (n, L, K), in the order of its score file."""
    footer = NagFooter.read(storage, SHARD_NAG, shard)
    rows = storage.read_parquet(*table(SHARD_NAG, shard))
    if footer is None or rows["id"].to_list() != ids:
        raise InputError(f"shard_nag[{shard}] does not line up with its scores: rescore it")
    return nags_of(rows, footer)


def ranker_scores(
    storage: Storage,
    name: str,
    scored: dict[str, ShardScoresFooter],
    targets: list[str],
    seed: int = 0,
    embedder: rankers.Embedder | None = None,
    backbone: Callable[[], Backbone] | None = None,
    sample_fraction: float = 0.1,
    hybrid_weight: float = rankers.registry.DEFAULT_HYBRID_WEIGHT,
) -> Mapping[str, ShardScoresFooter | RankerScoresFooter]:
    """Write (or reuse) the ranker's score table of every shard in `scored` (shard -> its
    shard_scores footer, as `scored_shards` returns) and return shard -> table footer.
    `backbone`: loads the backbone that made the NAGs, for a ranker that needs its tokenizer
    (nag_distilled); `sample_fraction`: nag_distilled's sample; `hybrid_weight`: the hybrid's
    share of the embedding score."""
    ranker = rankers.get(name)
    if not ranker.stored:
        return scored
    score = ranker.score
    if score is None:  # only `nag` has none, and it is not stored
        raise ValueError(f"ranker {name!r} keeps score tables but has no score function")
    folder = score_folder(name)
    keys = sorted(scored)
    options = Options(seed, embedder.name if embedder else None, sample_fraction, hybrid_weight)
    datasets = sorted((t, target_texts(storage, t)[1]) for t in targets)
    settings: list = [name, CODE_VERSION, datasets, *ranker.version_inputs(options)]
    if ranker.whole_pool:  # a model of the whole pool: any shard changes all
        settings.append([(s, scored[s].sha256, scored[s].version) for s in keys])
    versions = {s: digest(*settings, scored[s].sha256, scored[s].version) for s in keys}
    todo = [s for s in keys if not is_current(storage, versions[s], *table(folder, s))]
    if todo:
        inputs = _Inputs(storage, ranker, options, scored, targets, embedder, backbone)
        state = ranker.fit(inputs)
        for s in todo:
            scores = score(inputs, state, s)
            df = inputs.base(s).hstack([pl.Series(t, scores[:, i]) for i, t in enumerate(targets)])
            footer = RankerScoresFooter(
                versions[s], name, targets, scored[s].sha256, scored[s].version,
                seed if ranker.uses_seed else None,
            )  # fmt: skip
            storage.write_parquet(df, *table(folder, s), meta=footer.to_meta())
    return {s: require(RankerScoresFooter.read(storage, folder, s), f"{name}[{s}]") for s in keys}


class _Inputs:
    """`rankers.registry.Inputs` over the store: each input read once, when a ranker asks."""

    def __init__(
        self, storage, ranker: Ranker, options: Options, scored, targets, embedder, backbone
    ):
        self.storage, self.ranker, self.options, self.scored = storage, ranker, options, scored
        self.targets, self.shards, self.seed = targets, sorted(scored), options.seed
        self._embedder, self._backbone = embedder, backbone
        self._memo: dict = {}

    def _once(self, what: str, key: str, load: Callable):
        if (what, key) not in self._memo:
            self._memo[what, key] = load()
        return self._memo[what, key]

    def base(self, shard: str) -> pl.DataFrame:
        read = self.storage.read_parquet
        return self._once(
            "base", shard, lambda: read(*table(SHARD_SCORES, shard)).select("id", "tokens")
        )

    def shard_ids(self, shard: str) -> list[str]:
        return self.base(shard)["id"].to_list()

    def doc_keys(self, shard: str) -> list[str]:
        return [doc_key(shard, i) for i in self.shard_ids(shard)]

    def target_texts(self, target: str) -> list[str]:
        return self._once("target_texts", target, lambda: target_texts(self.storage, target)[0])

    def target_profiles(self) -> tuple[list[np.ndarray], int]:
        loaded = [load_profile(self.storage, t) for t in self.targets]
        return [p for p, _ in loaded], loaded[0][1].top_k

    def shard_texts(self, shard: str) -> list[str]:
        sha = self.scored[shard].sha256
        load = lambda: shard_texts(self.storage, shard, self.shard_ids(shard), sha)  # noqa: E731
        return self._once("shard_texts", shard, load)

    def _full_nag(self, shard: str) -> None:
        """A ranker reading NAGs or NAG scores needs the full NAG path (`scorer: nag`)."""
        if self.scored[shard].scorer_versions is not None:
            raise InputError(
                f"the {self.ranker.name} ranker reads the full NAG of every shard, but shard "
                f"{shard} is scored by the distilled scorer (scorer: distilled, no shard_nag): "
                "choose another ranker, or scorer: nag"
            )

    def shard_nags(self, shard: str) -> np.ndarray:
        self._full_nag(shard)
        load = lambda: shard_nags(self.storage, shard, self.shard_ids(shard))  # noqa: E731
        return self._once("shard_nags", shard, load)

    def nag_scores(self, shard: str) -> np.ndarray:
        self._full_nag(shard)
        read = self.storage.read_parquet
        load = lambda: read(*table(SHARD_SCORES, shard)).select(self.targets).to_numpy()  # noqa: E731
        return self._once("nag_scores", shard, load)

    def nag_max_tokens(self) -> int:
        footer = NagFooter.read(self.storage, SHARD_NAG, self.shards[0])
        if footer is None:
            raise InputError(f"shard_nag[{self.shards[0]}] has not been materialized yet")
        return footer.max_tokens

    def backbone(self) -> Backbone:
        if self._backbone is None:
            raise InputError(f"the {self.ranker.name} ranker needs the backbone's tokenizer")
        return self._backbone()

    def embedder(self) -> rankers.Embedder:
        if self._embedder is None:
            self._embedder = rankers.load_embedder()
        return self._embedder

    def cached(
        self, shard: str, compute: Callable[[], np.ndarray], owner: str | None = None
    ) -> np.ndarray:
        """A per-shard array, kept per (ranker settings, shard file content), in the cache of
        `owner` (a ranker's name; default the running one), so a ranker that reuses another's
        work (hybrid: embedding's) shares its cache."""
        ranker = rankers.get(owner) if owner else self.ranker
        settings = ranker.version_inputs(Options(self.seed, self.embedder().name))
        name = f"{shard}.{digest(*settings, self.scored[shard].sha256)}.npy"
        folder = f"{RANKER_SCORES}/{ranker.name}/_docs"
        try:
            return self.storage.read_npy(folder, name)
        except FileNotFoundError:
            pass
        out = compute()
        self.storage.write_npy(out, folder, name)
        return out


def describe(ranker: str, seed: int = 0) -> str:
    uses_seed = rankers.get(ranker).uses_seed
    return json.dumps({"ranker": ranker, **({"seed": seed} if uses_seed else {})})

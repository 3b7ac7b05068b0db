"""The storage layout and footer metadata of every table the steps write, in one place.

Each step's table lives at `<folder>/<partition key>.parquet` (`table`); its footer (JSON,
sort_keys, in the parquet file) is one of the typed records below: `to_meta` writes exactly
the keys the files have always held, `from_meta` reads them back. `is_current` is the one
skip-if-current test every step uses: a step whose output already records the version it
would write does nothing.

A document is known by (shard, id). `doc_key` ("shard/id") names it in facts and seeds the
random ranker; `rank_ids` ("id<RANK_SEP>shard") is its sort key, so ties rank by (id, shard).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import numpy as np
import polars as pl

from nag_assets.storage import Storage, check_key

TARGET_DATASET = "assets/target_dataset"
TARGET_NAG = "assets/target_nag"
SHARD_NAG = "assets/shard_nag"
SHARD_NAG_STORE = "shard_nag"  # in the NAG store: <version>.parquet, shared by selections
SHARD_SCORES = "assets/shard_scores"
RANKER_SCORES = "assets/baseline_scores"  # asset key kept: the non-default rankers' tables
IMPACT_BASELINE = "assets/impact_baseline"
DISTILL_SAMPLE = "assets/distill_sample"  # scorer: distilled, the sample's NAGs per shard
DISTILLED_SCORER = "assets/distilled_scorer"  # scorer: distilled, one model per target
RERANK_NAG = "assets/rerank_nag"  # distill rerank: the NAGs it read, per shard (a cache)
SELECTED_MIXTURE = "selected_mixture"  # the corpus in force: its parquet parts only
MIXTURE_VERSIONS = "mixture_versions"  # every version's parts and manifest, and the pointer
MIXTURE_POINTER = "CURRENT.json"

RANK_SEP = "\x01"  # id + RANK_SEP + shard sorts as (id, shard): ids hold no control characters


def table(folder: str, key: str) -> tuple[str, str]:
    """(folder, file name) of partition `key`'s table under `folder`."""
    return folder, f"{check_key(key)}.parquet"


def profile_file(key: str) -> tuple[str, str]:
    """Where target_nag keeps a target's profile (L x d_ff float32)."""
    return TARGET_NAG, f"{check_key(key)}.profile.npy"


def scorer_file(target: str) -> tuple[str, str]:
    """Where distilled_scorer keeps a target's footer (JSON): it names the model in force."""
    return DISTILLED_SCORER, f"{check_key(target)}.json"


def scorer_model(target: str, version: str) -> tuple[str, str, str]:
    """A target's model of one version (`DistilledScorer.to_bytes`): written before the
    footer that names it, so a run killed in between leaves the footer's own model in force."""
    return DISTILLED_SCORER, check_key(target), f"{version}.npz"


def sample_docs(shard: str) -> tuple[str, str]:
    """distill_sample's texts of a shard's sampled documents (id, text): what the backbone
    read and the scorer learns from."""
    return f"{DISTILL_SAMPLE}/_docs", f"{check_key(shard)}.parquet"


def doc_key(shard: str, doc_id: str) -> str:
    """A document's name across the pool: "shard/id"."""
    return f"{shard}/{doc_id}"


def rank_ids(ids: pl.Series, shard: str) -> np.ndarray:
    """Sort keys "id<RANK_SEP>shard" of a shard's documents: ties rank by (id, shard)."""
    return (ids + f"{RANK_SEP}{shard}").to_numpy()


def is_current(storage: Storage, version: str, *parts: str) -> bool:
    """Whether the output at `parts` (a table's footer, or a JSON file such as the mixture's
    pointer) records `version`: the one skip-if-current test of every step."""
    if parts[-1].endswith(".json"):
        return (read_json(storage, *parts) or {}).get("version") == version
    return (storage.read_meta(*parts) or {}).get("version") == version


F = TypeVar("F", bound="Footer")


@dataclass(frozen=True)
class Footer:
    """A table's footer. Fields in `OMIT_IF_NONE` are left out of the file when None."""

    OMIT_IF_NONE: ClassVar[tuple[str, ...]] = ()

    def to_meta(self) -> dict:
        meta = dataclasses.asdict(self)
        return {k: v for k, v in meta.items() if not (v is None and k in self.OMIT_IF_NONE)}

    @classmethod
    def from_meta(cls: type[F], meta: dict) -> F:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in meta.items() if k in names})

    @classmethod
    def read(cls: type[F], storage: Storage, folder: str, key: str) -> F | None:
        """The footer of partition `key`'s table, or None if it is not written yet."""
        meta = storage.read_meta(*table(folder, key))
        return None if meta is None else cls.from_meta(meta)


@dataclass(frozen=True)
class TargetDatasetFooter(Footer):
    version: str
    source: str


@dataclass(frozen=True)
class NagFooter(Footer):
    """target_nag and shard_nag: what `nags_of` needs to unflatten the NAGs, the settings
    that made them; a shard's also names its file and that file's sha256."""

    OMIT_IF_NONE: ClassVar[tuple[str, ...]] = ("file", "sha256", "neurons", "layer_subset")

    version: str
    layers: int
    top_k: int
    d_ff: int
    max_tokens: int
    impact: str
    nag_fingerprint: str
    file: str | None = None
    sha256: str | None = None
    neurons: str | None = None  # the neuron type when not the up-projection
    layer_subset: list | None = None  # target_nag: the layers its profile scores (None: all)


@dataclass(frozen=True)
class ShardScoresFooter(Footer):
    """`scorer_versions` (target -> distilled_scorer version) marks a table scored by the
    distilled scorer (no shard_nag: `shard_nag_version` is then None)."""

    OMIT_IF_NONE: ClassVar[tuple[str, ...]] = ("scorer_versions",)

    version: str
    targets: list
    target_versions: dict
    file: str
    sha256: str
    shard_nag_version: str | None
    scorer_versions: dict | None = None


@dataclass(frozen=True)
class ScorerFooter(Footer):
    """A target's distilled scorer (`<target>.json`, naming `<target>/<version>.npz`): what
    it was trained from (the target_nag version, each shard's distill_sample version) and on how
    many documents."""

    version: str
    target: str
    target_version: str
    samples: dict
    documents: int
    nag_fingerprint: str
    settings: dict

    @classmethod
    def read_json(cls, storage: Storage, target: str) -> ScorerFooter | None:
        meta = read_json(storage, *scorer_file(target))
        return None if meta is None else cls.from_meta(meta)


@dataclass(frozen=True)
class RankerScoresFooter(Footer):
    """A non-default ranker's score table (same shape as shard_scores)."""

    version: str
    ranker: str
    targets: list
    sha256: str
    shard_scores_version: str
    seed: int | None = None


def read_json(storage: Storage, *parts: str) -> dict | None:
    try:
        return json.loads(storage.read_bytes(*parts))
    except FileNotFoundError:
        return None

"""What is selected (the mixture), how shards are scored (distill) and the on-demand checks."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import field_validator, model_validator

from nag_assets.nag.select import check_fraction, check_weights
from nag_assets.rankers import registry
from nag_assets.rankers.registry import DEFAULT
from nag_assets.settings import Section, setting

CRON = re.compile(r"^[\d*/,\-A-Za-z]+( [\d*/,\-A-Za-z]+){4}$")


class MixtureSettings(Section):
    """The selection itself: the budget, how targets share it, and what ranks documents.
    Automation and manual runs use these; other values are a preview (mixture_preview)."""

    KEY: ClassVar[str] = "mixture"
    fraction: float = setting(
        0.2,
        "Token budget: this share of all pool tokens, in (0, 1], split between targets by "
        "weight. Ignored when `tokens` is set.",
        env="NAG_FRACTION",
    )
    tokens: int | None = setting(
        None, "Token budget as a count of tokens (instead of `fraction`).", env="NAG_TOKENS", ge=1
    )
    weights: dict[str, float] = setting(
        {}, "Per-target share of the budget, e.g. {hellaswag: 2, arc_easy: 1}; unnamed: 1."
    )
    dedup: bool = setting(
        False,
        "Keep a document once even if several targets chose it (under the first target); "
        "off: once per target, as in the paper.",
        env="NAG_DEDUP",
    )
    ranker: str = setting(
        DEFAULT,
        "What ranks the documents: nag (NAG-based Ranking), nag_contrastive, or a baseline "
        "with the same budget and output: random, dsir, embedding, nag_distilled.",
        env="NAG_RANKER",
    )
    seed: int = setting(0, "Seed of the random ranker and of nag_distilled's sample.",
                        env="NAG_SEED")  # fmt: skip
    sample_fraction: float = setting(
        0.1,
        "nag_distilled only: the share of the pool whose NAG scores its scorer learns from, "
        "in (0, 1].",
        env="NAG_RANKER_SAMPLE_FRACTION",
    )
    hybrid_weight: float = setting(
        registry.DEFAULT_HYBRID_WEIGHT,
        "hybrid only: the embedding score's share beside NAG's, in [0, 1] (0.5: chosen on the "
        "quality benchmark's dev targets).",
        env="NAG_HYBRID_WEIGHT",
        ge=0,
        le=1,
    )
    quality_column: str | None = setting(
        None,
        "Quality blend (opt-in): a numeric shard column (e.g. an educational-value score), "
        "min-max normalised over the pool and mixed with the ranker's score.",
        env="NAG_QUALITY_COLUMN",
    )
    quality_weight: float = setting(0.5, "Share of the quality in the blend, in [0, 1].",
                                    env="NAG_QUALITY_WEIGHT", ge=0, le=1)  # fmt: skip
    quality_direction: Literal["higher", "lower"] = setting(
        "higher", "Which quality values are better.", env="NAG_QUALITY_DIRECTION"
    )

    corpus: str = setting(
        "eager",
        "When the corpus (the chosen documents' text) is written after the selection changes: "
        "eager (right after) | on_demand (only when mixture_corpus is materialized) | a cron "
        "schedule, e.g. '0 * * * *' (for pools whose shards keep arriving: the copy then runs "
        "at most once an hour, never once per shard).",
        env="NAG_CORPUS",
    )
    corpus_workers: int | None = setting(
        None,
        "Shards copied at once by the local executor (unset: the machine's cores, at most 8); "
        "with executor ray, one Ray task per shard.",
        env="NAG_CORPUS_WORKERS",
        ge=1,
    )

    @field_validator("corpus")
    @classmethod
    def _cadence(cls, cadence: str) -> str:
        fields = cadence.split()
        if cadence in ("eager", "on_demand") or (len(fields) == 5 and CRON.match(cadence)):
            return cadence
        raise ValueError(f"corpus {cadence!r} must be eager, on_demand or a 5-field cron")

    @field_validator("fraction")
    @classmethod
    def _fraction(cls, fraction: float) -> float:
        return check_fraction(fraction)

    @field_validator("ranker")
    @classmethod
    def _ranker(cls, ranker: str) -> str:
        return registry.get(ranker).name  # any ranker module registered, or the choices named

    @field_validator("weights")
    @classmethod
    def _weights(cls, weights: dict[str, float]) -> dict[str, float]:
        return check_weights(weights)

    @field_validator("sample_fraction")
    @classmethod
    def _sample_fraction(cls, fraction: float) -> float:
        if not 0 < fraction <= 1:
            raise ValueError(f"sample_fraction {fraction!r} must be in (0, 1]")
        return fraction

    @field_validator("quality_column")
    @classmethod
    def _column(cls, column: str | None) -> str | None:
        return column or None


class DistilledScorerSettings(Section):
    """`scorer: distilled`: the backbone reads a sample of each shard; a text model per target
    learns the NAG score from it and scores the rest."""

    KEY: ClassVar[str] = "distill"
    sample_fraction: float = setting(
        0.1,
        "Share of each shard the backbone reads, in (0, 1]: drawn by a hash of (seed, shard, "
        "id), so a new shard adds only its own sample.",
        env="NAG_SAMPLE_FRACTION",
    )
    sample_seed: int = setting(0, "Seed of the sample.", env="NAG_SAMPLE_SEED")
    sample_shards: list[str] = setting(
        ["*"],
        "Shard names or fnmatch patterns the sample is drawn from. A shard outside them is "
        "scored by the scorers in force: no backbone pass, no retraining.",
        env="NAG_SAMPLE_SHARDS",
    )
    features: Literal["tokens+words", "tokens", "words"] = setting(
        "tokens+words", "What the text model reads.", env="NAG_DISTILL_FEATURES"
    )
    ngrams: int = setting(2, "Word n-gram length.", ge=1)
    buckets: int = setting(1 << 18, "Hash buckets of the word n-grams.", ge=1)
    alpha: float = setting(0.1, "Ridge regularisation.", gt=0)
    rerank: float | None = setting(
        None,
        "Share of each shard, per target, whose exact NAG score replaces the distilled one "
        "(the backbone reads those documents). Unset: no backbone pass in shard_scores.",
        env="NAG_DISTILL_RERANK",
        gt=0,
        le=1,
    )

    @model_validator(mode="after")
    def _records(self) -> DistilledScorerSettings:
        self.scoring("distilled")  # the library's own checks, named here
        return self

    def scoring(self, scorer: str):
        """The library's record of how shards are scored."""
        from nag_assets import distill
        from nag_assets.pipeline.distilled import Scoring

        sample = distill.SampleSettings(
            fraction=self.sample_fraction, seed=self.sample_seed, shards=tuple(self.sample_shards)
        )
        model = distill.DistillSettings(self.features, self.ngrams, self.buckets, self.alpha)
        return Scoring(scorer, sample, model, self.rerank)


CHECK_NAMES = Literal["stability", "agreement", "variants", "deactivation"]


class ChecksSettings(Section):
    """selection_checks (on demand): which sanity checks, and their sizes."""

    KEY: ClassVar[str] = "checks"
    checks: list[CHECK_NAMES] = setting(  # type: ignore[valid-type]
        ["stability", "agreement"],
        "Which checks: stability, agreement, variants, deactivation (the last two take "
        "minutes on a CPU: backbone passes).",
    )
    fraction: float = setting(0.2, "Budget fraction of the selections compared.", gt=0, le=1)
    rankers: list[str] = setting(
        ["random", "dsir", "embedding"], "agreement: the rankers to compare NAG's selection with."
    )
    sizes: list[int] = setting([25, 50, 100, 200], "stability: target example counts to try.")
    seeds: int = setting(3, "stability and variants: random subsets.", ge=1)
    ks: list[int] = setting([20, 50], "variants: K values to try.")
    max_docs: int = setting(2000, "variants: pool documents (a sample).", ge=1)
    neurons: list[int] = setting([20], "deactivation: neurons per layer.")
    random_seeds: int = setting(3, "deactivation: random-neuron draws.", ge=1)
    examples: int = setting(50, "deactivation: held-out examples.", ge=1)

    @field_validator("rankers")
    @classmethod
    def _rankers(cls, rankers: list[str]) -> list[str]:
        return [registry.get(r).name for r in rankers]

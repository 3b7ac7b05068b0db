"""Baseline rankers beside NAG: plain functions, no Dagster.

Every ranker turns (target texts, candidate documents) into an (n, T) float32 score matrix
in [0, 1], one column per target, higher = better: the same contract as `shard_scores`, so
the same budgeted selection (`nag_assets.nag.find_cutoffs` / `keep_mask`) and mixture writer
serve them all.

Each ranker is one module here that defines `RANKER` (see `registry`): `nag` (the default,
the paper), `nag_contrastive` (beyond the paper: NAG against the contrastive profile, from the
stored NAGs, no backbone), and the baselines below, which the `agreement` check compares NAG
with. (The *impact baseline* of normalized impact is another thing: `pipeline.impact`.)

- `random`: a seeded uniform draw per (seed, target, document key); it depends on nothing
  else, so a document's score is the same however the pool is sharded.
- `dsir`: DSIR's hashed n-gram importance (Xie et al. 2023): word unigrams and bigrams hashed
  into 10,000 buckets; bag-of-n-gram models of the targets and of the raw pool (add-one
  smoothed); a document's log importance weight is the sum over its n-grams of
  log p_target - log p_raw. Ranked here by its per-n-gram mean (so long documents are not
  favoured under a token budget), squashed by a sigmoid into (0, 1). Top-k by weight, not
  DSIR's Gumbel resampling.
- `hybrid` (beyond the paper): NAG's score and `embedding`'s, each anchored on the target's
  own examples, mixed by `Options.hybrid_weight` (see `hybrid`); per document, no pool state.
- `embedding`: cosine similarity of a document's sentence embedding (all-MiniLM-L6-v2, mean
  pooled, L2-normalised) to the mean of the target's example embeddings, as (1 + cos) / 2.
"""

from nag_assets.rankers.dsir import NgramModel, dsir_scores, ngram_buckets
from nag_assets.rankers.embedding import Embedder, embedding_scores, load_embedder
from nag_assets.rankers.random import random_scores
from nag_assets.rankers.registry import DEFAULT, DEFAULT_HYBRID_WEIGHT, Ranker, get, names

BASELINES = ("random", "dsir", "embedding")  # what the agreement check compares NAG with

__all__ = [
    "BASELINES",
    "DEFAULT",
    "DEFAULT_HYBRID_WEIGHT",
    "Embedder",
    "NgramModel",
    "Ranker",
    "dsir_scores",
    "embedding_scores",
    "get",
    "load_embedder",
    "names",
    "ngram_buckets",
    "random_scores",
]

"""Baseline rankers beside NAG: plain functions, no Dagster.

Every ranker turns (target texts, candidate documents) into an (n, T) float32 score matrix
in [0, 1], one column per target, higher = better: the same contract as `shard_scores`, so
the same budgeted selection (`nag_assets.nag.find_cutoffs` / `keep_mask`) and mixture writer
serve them all.

- `nag_contrastive` (beyond the paper): NAG scores against the contrastive profile, each
  neuron's target frequency relative to its frequency in the whole pool's NAGs
  (`nag_assets.nag.profile.contrastive_profile`), so always-on neurons lose their weight.
  Computed from the stored NAGs in `nag_assets.pipeline.baselines`: no backbone.
- `random`: a seeded uniform draw per (seed, target, document key); it depends on nothing
  else, so a document's score is the same however the pool is sharded.
- `dsir`: DSIR's hashed n-gram importance (Xie et al. 2023): word unigrams and bigrams hashed
  into 10,000 buckets; bag-of-n-gram models of the targets and of the raw pool (add-one
  smoothed); a document's log importance weight is the sum over its n-grams of
  log p_target - log p_raw. Ranked here by its per-n-gram mean (so long documents are not
  favoured under a token budget), squashed by a sigmoid into (0, 1). Top-k by weight, not
  DSIR's Gumbel resampling.
- `embedding`: cosine similarity of a document's sentence embedding (all-MiniLM-L6-v2, mean
  pooled, L2-normalised) to the mean of the target's example embeddings, as (1 + cos) / 2.
"""

from nag_assets.rankers.dsir import NgramModel, dsir_scores, ngram_buckets
from nag_assets.rankers.embedding import Embedder, embedding_scores, load_embedder
from nag_assets.rankers.random import random_scores

NAG = "nag"
NAG_CONTRASTIVE = "nag_contrastive"
BASELINES = ("random", "dsir", "embedding")
RANKERS = (NAG, NAG_CONTRASTIVE, *BASELINES)

__all__ = [
    "BASELINES",
    "NAG",
    "NAG_CONTRASTIVE",
    "RANKERS",
    "Embedder",
    "NgramModel",
    "dsir_scores",
    "embedding_scores",
    "load_embedder",
    "ngram_buckets",
    "random_scores",
]

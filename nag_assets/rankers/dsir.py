"""DSIR-style hashed n-gram importance (the features of the `data-selection` package:
lower-cased word-punct tokens, unigrams + bigrams, hashed into 10,000 buckets)."""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from nag_assets.rankers.registry import Ranker

BUCKETS = 10_000
_WORDPUNCT = re.compile(r"\w+|[^\w\s]+")  # nltk's WordPunctTokenizer pattern


def ngram_buckets(text: str, n: int = 2, buckets: int = BUCKETS) -> np.ndarray:
    """The bucket of every 1..n-gram of `text` (with repeats), as int64."""
    words = _WORDPUNCT.findall(text.lower())
    grams = list(words)
    for size in range(2, n + 1):
        grams += [" ".join(words[i : i + size]) for i in range(len(words) - size + 1)]
    return np.array([zlib.crc32(g.encode()) % buckets for g in grams], dtype=np.int64)


def bucket_counts(texts: Iterable[str], n: int = 2, buckets: int = BUCKETS) -> np.ndarray:
    counts = np.zeros(buckets, dtype=np.float64)
    for text in texts:
        counts += np.bincount(ngram_buckets(text, n, buckets), minlength=buckets)
    return counts


@dataclass(frozen=True)
class NgramModel:
    """Add-one smoothed bucket distribution (log probabilities)."""

    log_p: np.ndarray

    @classmethod
    def fit(cls, counts: np.ndarray, smoothing: float = 1.0) -> NgramModel:
        c = np.asarray(counts, dtype=np.float64) + smoothing
        return cls(np.log(c / c.sum()))


def dsir_scores(
    texts: Sequence[str],
    targets: Sequence[NgramModel],
    raw: NgramModel,
    n: int = 2,
) -> np.ndarray:
    """(n_docs, T) float32 in (0, 1): sigmoid of each document's mean log importance weight
    log p_target - log p_raw over its n-grams; a document without n-grams scores 0."""
    log_ratio = np.stack([t.log_p - raw.log_p for t in targets], axis=1)  # (buckets, T)
    out = np.zeros((len(texts), len(targets)), dtype=np.float32)
    buckets = len(raw.log_p)
    for i, text in enumerate(texts):
        b = ngram_buckets(text, n, buckets)
        if len(b):
            mean = log_ratio[b].mean(axis=0)
            out[i] = 1.0 / (1.0 + np.exp(-mean))
    return out


def _fit(inputs) -> tuple[list[NgramModel], NgramModel]:
    """Targets' models, and the raw model over every shard of the pool."""
    raw = NgramModel.fit(bucket_counts(t for s in inputs.shards for t in inputs.shard_texts(s)))
    models = [NgramModel.fit(bucket_counts(inputs.target_texts(t))) for t in inputs.targets]
    return models, raw


RANKER = Ranker(
    "dsir",
    "hashed n-gram importance, target vs pool",
    fit=_fit,
    score=lambda inputs, state, shard: dsir_scores(inputs.shard_texts(shard), *state),
    whole_pool=True,
    order=30,
)

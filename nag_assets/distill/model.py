"""The distilled scorer: a cheap text model per target that predicts the target's NAG score.

It reads what the NAG reads, a document's first `max_tokens` backbone tokens, and sees it two
ways: the mean of the backbone's input embeddings of those tokens (the model's own view of
its words, with no forward pass), and hashed word 1..n-grams of the same opening
(scikit-learn's `HashingVectorizer`: no vocabulary to fit or store). One ridge regression per
target maps both onto the rank of the document's NAG score within the training sample (ranks:
what the budgeted selection uses). The embedding part of a linear model is linear in the
token counts, so it folds into one weight per vocabulary token: scoring needs the tokenizer
and two small tables, never the backbone's weights or a forward pass.

Predictions are squashed by a logistic curve standardised on the sample's own predictions:
scores lie in (0, 1), spread as the mixture's histogram cut-offs expect, and stay strictly
monotone in the prediction (the squash adds no ties).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from nag_assets.sources.files import InputError

FEATURES = ("tokens+words", "tokens", "words")
# texts -> (token ids of each text's first max_tokens tokens, the text those tokens cover)
Reader = Callable[[Sequence[str]], tuple[list[list[int]], list[str]]]


@dataclass(frozen=True)
class DistillSettings:
    """How the scorer learns: `features` (tokens: backbone input embeddings of the opening;
    words: hashed word n-grams of it; or both), word n-gram length, hash buckets, ridge alpha."""

    features: str = "tokens+words"
    ngrams: int = 2
    buckets: int = 1 << 18
    alpha: float = 0.1

    def __post_init__(self) -> None:
        if self.features not in FEATURES:
            raise InputError(f"distill features {self.features!r} must be one of {FEATURES}")
        for name in ("ngrams", "buckets"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"distill {name} {value!r} must be a whole number >= 1")
        if not (isinstance(self.alpha, (int, float)) and self.alpha > 0):
            raise InputError(f"distill alpha {self.alpha!r} must be a number > 0")

    @property
    def uses_tokens(self) -> bool:
        return "tokens" in self.features

    @property
    def uses_words(self) -> bool:
        return "words" in self.features


def hf_reader(tokenizer, max_tokens: int) -> Reader:
    """A Reader over a Hugging Face fast tokenizer: the first `max_tokens` token ids, exactly
    as NAG extraction reads them, and the characters they span."""

    def read(texts: Sequence[str]) -> tuple[list[list[int]], list[str]]:
        texts = list(texts)
        if not texts:
            return [], []
        enc = tokenizer(
            texts,
            add_special_tokens=False,
            truncation=True,
            max_length=max_tokens,
            return_offsets_mapping=True,
        )
        ends = [offsets[-1][1] if offsets else 0 for offsets in enc["offset_mapping"]]
        return list(enc["input_ids"]), [t[:end] for t, end in zip(texts, ends)]

    return read


def _sklearn():
    try:
        import scipy.sparse
        from sklearn.feature_extraction.text import HashingVectorizer
        from sklearn.linear_model import Ridge
    except ImportError as e:  # pragma: no cover - the `distill` extra
        raise RuntimeError(
            "the distilled scorer needs scikit-learn: pip install 'nag-assets[distill]'"
        ) from e
    return scipy.sparse, HashingVectorizer, Ridge


def token_bags(ids: list[list[int]], vocab: int):
    """(n, vocab) sparse: each row the share of the opening's tokens that are each token id."""
    sparse, _, _ = _sklearn()
    lengths = np.array([len(x) for x in ids], dtype=np.int64)
    cols = np.concatenate([np.asarray(x, dtype=np.int64) for x in ids] or [np.zeros(0, int)])
    if len(cols) and (cols.min() < 0 or cols.max() >= vocab):
        raise InputError(f"distill: token id {int(cols.max())} outside the vocabulary ({vocab})")
    rows = np.repeat(np.arange(len(ids)), lengths)
    weights = 1.0 / np.maximum(lengths, 1)[rows]
    return sparse.csr_matrix((weights, (rows, cols)), shape=(len(ids), vocab))


def word_features(openings: Sequence[str], settings: DistillSettings):
    """(n, buckets) sparse: l2-normalised counts of hashed word 1..ngrams-grams."""
    _, hashing, _ = _sklearn()
    return hashing(
        n_features=settings.buckets,
        ngram_range=(1, settings.ngrams),
        alternate_sign=False,
        dtype=np.float64,
    ).transform(list(openings))


def rank_labels(scores: np.ndarray) -> np.ndarray:
    """(n, T) each column's average rank scaled to (0, 1]: ties share a rank."""
    from scipy.stats import rankdata

    return rankdata(scores, axis=0) / max(len(scores), 1)


@dataclass(frozen=True)
class DistilledScorer:
    """Per target: a weight per vocabulary token and per word bucket, an intercept, and the
    centre and spread of the sample's predictions (the squash)."""

    settings: DistillSettings
    targets: tuple[str, ...]
    max_tokens: int  # the NAG's: how much of a document is read
    token_weights: np.ndarray  # (vocab, T) float64; zeros when features exclude tokens
    word_weights: np.ndarray  # (buckets, T) float64; zeros when features exclude words
    intercept: np.ndarray  # (T,)
    center: np.ndarray  # (T,)
    spread: np.ndarray  # (T,) > 0

    def raw(self, read: Reader, texts: Sequence[str]) -> np.ndarray:
        """(n, T) float64 unsquashed predictions (the rank in the sample it expects)."""
        ids, openings = read(texts)
        out = np.tile(self.intercept, (len(ids), 1))
        if len(ids) == 0:
            return out.reshape(0, len(self.targets))
        if self.settings.uses_tokens:
            out += token_bags(ids, len(self.token_weights)) @ self.token_weights
        if self.settings.uses_words:
            out += word_features(openings, self.settings) @ self.word_weights
        return out

    def score(self, read: Reader, texts: Sequence[str]) -> np.ndarray:
        """(n, T) float32 in (0, 1), higher = more like the target: a shard_scores table."""
        z = (self.raw(read, texts) - self.center) / self.spread
        return (1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))).astype(np.float32)

    def to_bytes(self) -> bytes:
        """An .npz of the arrays and settings (no pickle, so loading runs no code)."""
        buf = io.BytesIO()
        arrays = {k: getattr(self, k) for k in _ARRAYS}
        head: dict[str, Any] = {"settings": asdict(self.settings), "targets": list(self.targets)}
        head["max_tokens"] = self.max_tokens
        np.savez_compressed(buf, head=np.array(json.dumps(head, sort_keys=True)), **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> DistilledScorer:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            head = json.loads(str(z["head"]))
            arrays = {k: z[k] for k in _ARRAYS}
        settings = DistillSettings(**head["settings"])
        return cls(settings, tuple(head["targets"]), head["max_tokens"], **arrays)


_ARRAYS = ("token_weights", "word_weights", "intercept", "center", "spread")


def merge(scorers: Sequence[DistilledScorer]) -> DistilledScorer:
    """One scorer over every target of `scorers` (one per target in the graph), so a shard is
    read and featurised once; they must share settings and `max_tokens`."""
    first = scorers[0]
    if any((s.settings, s.max_tokens) != (first.settings, first.max_tokens) for s in scorers):
        raise InputError(
            "distill: scorers trained with different settings cannot score together: "
            + ", ".join(f"{s.targets} {s.settings} max_tokens={s.max_tokens}" for s in scorers)
        )
    arrays = {k: np.concatenate([getattr(s, k) for s in scorers], axis=-1) for k in _ARRAYS}
    targets = tuple(t for s in scorers for t in s.targets)
    return DistilledScorer(first.settings, targets, first.max_tokens, **arrays)


def train(
    read: Reader,
    embeddings: np.ndarray,
    texts: Sequence[str],
    scores: np.ndarray,
    targets: Sequence[str],
    settings: DistillSettings,
    max_tokens: int,
) -> DistilledScorer:
    """Fit one ridge regression per target onto the rank of its NAG score in the sample.

    `read`: the Reader of the backbone's tokenizer at `max_tokens`; `embeddings`: (vocab,
    d_model) the backbone's input embeddings; `scores`: (n, T) the sample's NAG scores."""
    sparse, _, ridge = _sklearn()
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(texts), len(targets)):
        raise InputError(
            f"distill: {len(texts)} texts and {len(targets)} targets need scores of shape "
            f"({len(texts)}, {len(targets)}), got {scores.shape}"
        )
    if len(texts) < 2:
        raise InputError(f"distill: the sample holds {len(texts)} documents, at least 2 needed")
    ids, openings = read(texts)
    emb = np.asarray(embeddings, dtype=np.float64)
    blocks = []
    if settings.uses_tokens:
        blocks.append(sparse.csr_matrix(token_bags(ids, len(emb)) @ emb))
    if settings.uses_words:
        blocks.append(word_features(openings, settings))
    x = sparse.hstack(blocks).tocsr()
    model = ridge(alpha=settings.alpha, solver="sparse_cg", tol=1e-8, max_iter=10_000)
    model.fit(x, rank_labels(scores))
    coef = np.asarray(model.coef_, dtype=np.float64).reshape(len(targets), -1).T
    d = emb.shape[1] if settings.uses_tokens else 0
    t = len(targets)
    token_w = emb @ coef[:d] if d else np.zeros((len(emb), t))
    word_w = coef[d:] if settings.uses_words else np.zeros((settings.buckets, t))
    intercept = np.broadcast_to(np.asarray(model.intercept_, dtype=np.float64), (t,)).copy()
    unsquashed = DistilledScorer(
        settings, tuple(targets), max_tokens, token_w, word_w, intercept, np.zeros(t), np.ones(t)
    )
    fitted = unsquashed.raw(read, texts)
    spread = fitted.std(axis=0)
    return DistilledScorer(
        settings,
        tuple(targets),
        max_tokens,
        np.ascontiguousarray(token_w),
        np.ascontiguousarray(word_w),
        intercept,
        fitted.mean(axis=0),
        np.where(spread > 0, spread, 1.0),
    )

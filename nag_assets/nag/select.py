"""Selection under a token budget, exact and out of core.

Per target, documents are ranked by (score descending, document id ascending) and kept while
the running sum of their tokens stays within the target's budget (a prefix of that order).
The pool never has to fit in memory: one pass builds a token-weighted score histogram per
target, which locates the bin holding the cut-off; a second pass collects only that bin's
documents and finds the exact last document kept. The resulting `Cutoff` is then applied to
each shard on its own. The result equals a global sort, ties included.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

BINS = 1 << 18


@dataclass(frozen=True)
class ScoredBatch:
    """Scored documents of one shard (or any slice of the pool)."""

    scores: np.ndarray  # (n, T) float, one column per target
    tokens: np.ndarray  # (n,) int, what the budget counts; <= 0 is never selected
    doc_ids: np.ndarray  # (n,) str, the tie-breaker


@dataclass(frozen=True)
class Cutoff:
    """Keep a document iff (bin, -score, doc_id) <= (bin, -score, doc_id) of the last one kept."""

    target: str
    budget: int
    bin: int  # documents in higher bins are kept; -1: every document is kept
    score: float  # within `bin`, higher scores are kept; +inf: none of `bin` is kept
    doc_id: str  # within `bin` at exactly `score`, ids <= this are kept
    documents: int
    tokens: int


def check_fraction(fraction: object) -> float:
    """The budget fraction, or a ValueError saying what it must be."""
    if not (isinstance(fraction, numbers.Real) and 0 < float(fraction) <= 1):
        raise ValueError(
            f"budget fraction {fraction!r} must be in (0, 1]: the share of all pool tokens to "
            "select (0.2 = a fifth)"
        )
    return float(fraction)


def check_weights(
    weights: Mapping[str, object], targets: Sequence[str] | None = None
) -> dict[str, float]:
    """Per-target weights (finite, >= 0, naming only `targets` when given), or a ValueError."""
    good, bad = {}, {}
    for t, w in weights.items():
        x = float(w) if isinstance(w, numbers.Real) else math.nan
        if math.isfinite(x) and x >= 0:
            good[t] = x
        else:
            bad[t] = w
    if bad:
        raise ValueError(f"target weights {bad} must be finite numbers >= 0")
    unknown = sorted(set(weights) - set(targets if targets is not None else weights))
    if unknown:
        raise ValueError(
            f"weights name unknown targets {unknown}; targets are {list(targets or [])}"
        )
    return good


def target_budgets(
    pool_tokens: int,
    targets: Sequence[str],
    fraction: float = 0.2,
    weights: Mapping[str, float] | None = None,
    tokens: int | None = None,
) -> dict[str, int]:
    """Token budget per target: `fraction` of the pool (or `tokens`, a count, when given),
    split by weight (equal by default)."""
    check_fraction(fraction)
    if not targets:
        raise ValueError("no targets to select for")
    weights = check_weights(dict(weights or {}), targets)
    w = np.array([weights.get(t, 1.0) for t in targets])
    if w.sum() <= 0:
        raise ValueError(f"target weights {dict(zip(targets, w))} must have a sum > 0")
    total = fraction * pool_tokens if tokens is None else float(tokens)
    share = total * w / w.sum()
    return {t: int(np.floor(s + 1e-9)) for t, s in zip(targets, share)}


def score_bins(scores: np.ndarray, bins: int = BINS) -> np.ndarray:
    """floor(score * bins) clipped to [0, bins); clipping first lets the cast do the floor."""
    scaled = np.multiply(scores, bins, dtype=np.float64)
    return np.clip(scaled, 0, bins - 1, out=scaled).astype(np.int64)


def find_cutoffs(
    batches: Callable[[], Iterable[ScoredBatch]],
    targets: Sequence[str],
    fraction: float = 0.2,
    weights: Mapping[str, float] | None = None,
    bins: int = BINS,
    tokens: int | None = None,
) -> list[Cutoff]:
    """Exact per-target cut-offs in two streaming passes over `batches()`; the budget is
    `fraction` of the pool's tokens, or `tokens` when given."""
    hist = np.zeros((len(targets), 2, bins), dtype=np.float64)  # tokens, documents
    pool_tokens = 0
    for b in batches():
        tok = _usable_tokens(b)
        pool_tokens += int(tok.sum())
        unusable = np.flatnonzero(tok <= 0)
        tok_f64 = tok.astype(np.float64)  # bincount would convert it once per target
        for t in range(len(targets)):
            sb = score_bins(b.scores[:, t], bins)
            hist[t, 0] += np.bincount(sb, weights=tok_f64, minlength=bins)
            sb[unusable] = bins  # counted apart, then dropped: an unweighted count is faster
            hist[t, 1] += np.bincount(sb, minlength=bins + 1)[:bins]
    budgets = target_budgets(pool_tokens, targets, fraction, weights, tokens)
    edges = [_boundary_bin(hist[t], budgets[name]) for t, name in enumerate(targets)]
    edge_docs = _collect_boundary(batches, [e[0] for e in edges], bins)
    return [_resolve(n, budgets[n], *edges[t], edge_docs[t]) for t, n in enumerate(targets)]


def _usable_tokens(b: ScoredBatch) -> np.ndarray:
    return np.maximum(np.asarray(b.tokens, dtype=np.int64), 0)


def _boundary_bin(hist: np.ndarray, budget: int) -> tuple[int, int, int]:
    """(bin holding the cut-off or -1 if all fit, tokens and documents in higher bins)."""
    above = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1]  # this bin and every higher one
    over = np.nonzero(above[0] > budget)[0]
    if len(over) == 0:
        return -1, int(above[0, 0]), int(above[1, 0])
    b = int(over[-1])
    if b + 1 == hist.shape[1]:
        return b, 0, 0
    return b, int(above[0, b + 1]), int(above[1, b + 1])


def _collect_boundary(batches, edges, bins) -> list[list[tuple[float, str, int]]]:
    out: list[list[tuple[float, str, int]]] = [[] for _ in edges]
    if all(e < 0 for e in edges):
        return out
    for b in batches():
        tok = _usable_tokens(b)
        for t, edge in enumerate(edges):
            if edge < 0:
                continue
            rows = np.nonzero((score_bins(b.scores[:, t], bins) == edge) & (tok > 0))[0]
            out[t].extend((float(b.scores[r, t]), str(b.doc_ids[r]), int(tok[r])) for r in rows)
    return out


def _resolve(target, budget, edge, tokens, documents, docs) -> Cutoff:
    if edge < 0:
        return Cutoff(target, budget, -1, np.inf, "", documents, tokens)
    docs.sort(key=lambda d: (-d[0], d[1]))
    last = None
    for d in docs:
        if tokens + d[2] > budget:
            break
        tokens, documents, last = tokens + d[2], documents + 1, d
    if last is None:
        return Cutoff(target, budget, edge, np.inf, "", documents, tokens)
    return Cutoff(target, budget, edge, last[0], last[1], documents, tokens)


def keep_mask(batch: ScoredBatch, cutoffs: Sequence[Cutoff], bins: int = BINS) -> np.ndarray:
    """(n, T) bool: which documents of `batch` each target keeps.

    The last score kept lies in the cut-off bin and bins grow with the score, so "a higher
    bin, or the same bin and a higher score" is just "a higher score"; only documents at
    exactly that score compare ids (as str), so the ids of the rest are never touched.
    """
    ids = np.asarray(batch.doc_ids)
    usable = _usable_tokens(batch) > 0
    mask = np.zeros((len(ids), len(cutoffs)), dtype=bool)
    for t, c in enumerate(cutoffs):
        s = np.asarray(batch.scores[:, t], dtype=np.float64)
        keep = score_bins(s, bins) > c.bin if c.score == np.inf else s > c.score
        tie = np.flatnonzero(s == c.score)
        tie = tie[score_bins(s[tie], bins) == c.bin]
        keep[tie] = ids[tie].astype(str) <= c.doc_id
        mask[:, t] = usable & keep
    return mask


def mixture_rows(mask: np.ndarray, dedup: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(document row, target column) pairs of the mixture; with `dedup`, one per document
    (the first target, in target order, that chose it)."""
    rows, cols = np.nonzero(mask)
    if dedup:
        first = np.unique(rows, return_index=True)[1]
        rows, cols = rows[first], cols[first]
    order = np.lexsort((rows, cols))
    return rows[order], cols[order]


def select_under_budget(
    scores: np.ndarray,
    tokens: np.ndarray,
    doc_ids: Sequence[str] | np.ndarray,
    targets: Sequence[str],
    fraction: float = 0.2,
    weights: Mapping[str, float] | None = None,
    dedup: bool = False,
) -> tuple[list[Cutoff], np.ndarray, np.ndarray]:
    """In-memory selection: cut-offs, and the (document row, target column) pairs chosen."""
    # an empty pool cannot infer its column count
    scores = np.asarray(scores).reshape(len(doc_ids), -1 if len(doc_ids) else len(targets))
    if scores.shape[1] != len(targets):
        raise ValueError(f"{scores.shape[1]} score columns for {len(targets)} targets")
    batch = ScoredBatch(scores, np.asarray(tokens), np.asarray(doc_ids).astype(str))
    cutoffs = find_cutoffs(lambda: [batch], targets, fraction, weights)
    return (cutoffs, *mixture_rows(keep_mask(batch, cutoffs), dedup))

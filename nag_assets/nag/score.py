"""Scores: how much a document's NAG overlaps a target profile.

score(c, D) = (1/L) * sum_l sum_{k in NAG_l(c)} w_l[k], the mean pairwise Dice similarity of
c's NAG with the target's NAGs. Scoring many documents against many targets is a gather and
a sum: each document is a bag of L*K row ids into a (L*(d_ff+1), columns) table, summed by
torch's `embedding_bag`.

Why it is fast and still exact: only float32 `embedding_bag` has a vectorised kernel (float64
is ~20x slower), but float32 sums of the weights would drift and depend on the order of a
NAG's neurons. So each weight w/L is cut into three integers, hi = floor(w/L * 2^s) and two
further `b`-bit pieces of the remainder (mid, lo), each stored as a float32 column. The
scale 2^s and `b` keep every partial sum of a bag below 2^24, where float32 sums of integers
are exact, so the sums cannot depend on order, blocking or threads. Recombined in float64,
the score is exact to L*K * 2^-(s+2b) (~1e-14 for a real profile), as precise as a float64
sum, and rounded once to float32.

Most of the time lo cannot change that float32: hi and mid alone pin the score to an interval
[v, v + L*K * 2^-(s+b)), and where both ends round to the same float32 that is the answer.
So the gather reads [hi | mid] (8 bytes per target and row) for every document, and lo only
for those whose interval straddles a float32 rounding boundary (about 2% of documents at one
target, 12% at eight); the result is the same as gathering all three pieces for all.
"""

from __future__ import annotations

import numpy as np
import torch

CHUNK = 1 << 15  # documents per gather: big enough that per-call costs vanish...
_CHUNK_BYTES = 8 << 20  # ...unless their sums would pass this many bytes (many targets)
_TILE = 64  # documents whose bags get their offsets in one broadcast row
_EXACT = 24  # float32 holds every integer up to 2^24 exactly
_BLOCK_BYTES = 8 << 20  # table bytes gathered per pass: a few MiB of rows stay in cache


def score_nags(nags: np.ndarray, profile: np.ndarray) -> np.ndarray:
    """(n,) score of each NAG against one (L, d_ff) profile."""
    return score_many(nags, np.asarray(profile)[None])[:, 0]


def score_many(nags: np.ndarray, profiles: np.ndarray) -> np.ndarray:
    """(n, T) float32 scores of each NAG against T stacked (T, L, d_ff) profiles.

    NAGs of texts without tokens (all -1) score 0.
    """
    nags = np.asarray(nags)
    profiles = np.asarray(profiles)
    n, n_layers, k = nags.shape
    t, p_layers, d_ff = profiles.shape
    if p_layers != n_layers:
        raise ValueError(f"NAGs have {n_layers} layers but the profiles have {p_layers}")
    if n and int(nags.max()) >= d_ff:
        raise ValueError(f"NAGs hold neuron {int(nags.max())}, outside the profiles' d_ff={d_ff}")
    out = np.zeros((n, t), dtype=np.float32)
    if n == 0 or t == 0 or n_layers * k == 0:
        return out
    weights = profiles.astype(np.float64) / n_layers
    if not np.isfinite(weights).all() or n_layers * k > 1 << 16:
        return _score_float64(nags, weights, out)
    coarse, fine, scales = _split_tables(weights, k)
    # the exact score lies in [coarse, coarse + slack): where both round to the same float32,
    # that is the answer; elsewhere the fine piece is gathered too
    slack = n_layers * k * scales[1]  # each weight's remainder after mid is < 1 mid unit
    # layer l's rows start at l*(d_ff+1); its first row is zero: "no neuron" (-1) lands there
    offsets = np.repeat(np.arange(n_layers, dtype=np.int32) * (d_ff + 1) + 1, k)
    if int(nags.min()) < -1:
        nags = np.maximum(nags, -1)  # any negative neuron means "none", as -1 does
    flat = nags.reshape(n, n_layers * k)
    tile = np.tile(offsets, _TILE)
    chunk = max(1 << 10, min(CHUNK, (_CHUNK_BYTES // 4) // coarse.shape[1]))
    buf = np.empty((min(n, chunk), n_layers * k), dtype=np.int32)
    # Only the gathers run in torch (threaded); the light per-chunk steps stay in numpy, as
    # each threaded op waits for every thread, which costs a time slice on a busy machine.
    for s in range(0, n, chunk):
        idx = buf[: min(chunk, n - s)]
        np.copyto(idx, flat[s : s + chunk], casting="unsafe")  # int16 (or any int) -> int32
        whole = len(idx) // _TILE * _TILE  # rows added as long rows: a short one is slow
        rows = idx[:whole].reshape(-1, tile.size)  # a view: idx is contiguous
        rows += tile
        idx[whole:] += offsets
        sums = _gather(idx, coarse, k, d_ff)
        score = sums[:, :t].astype(np.float64) * scales[0]
        score += sums[:, t : 2 * t].astype(np.float64) * scales[1]
        low = score.astype(np.float32)
        unsure = np.flatnonzero((low != (score + slack).astype(np.float32)).any(axis=1))
        if len(unsure):
            extra = _gather(idx[unsure], fine, k, d_ff)[:, :t].astype(np.float64)
            low[unsure] = score[unsure] + extra * scales[2]
        out[s : s + chunk] = low
    return out


def _gather(idx: np.ndarray, table: torch.Tensor, k: int, d_ff: int) -> np.ndarray:
    """(n, columns) float32 sums of each bag's rows. A big table (many targets) is gathered a
    few layers at a time, so that those layers' rows stay in cache; the sums are integers
    below 2^24, exact in any order."""
    layer_bytes = table.element_size() * table.shape[1] * (d_ff + 1)
    width = max(1, _BLOCK_BYTES // layer_bytes) * k  # bag columns per pass
    sums: torch.Tensor | None = None
    for a in range(0, idx.shape[1], width):
        cols = idx if width >= idx.shape[1] else np.ascontiguousarray(idx[:, a : a + width])
        part = torch.nn.functional.embedding_bag(torch.from_numpy(cols), table, mode="sum")
        sums = part if sums is None else sums.add_(part)
    if sums is None:
        raise ValueError("NAGs without a layer to score")
    return sums.numpy()


def _split_tables(weights: np.ndarray, k: int) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Float32 tables of integer pieces, (L*(d_ff+1), columns) each: coarse = [hi | mid], two
    pieces of T columns, and fine = [lo], T columns (both zero-padded to whole 64-byte rows
    when that is cheap), and the float64 scale of each of the three pieces."""
    _, n_layers, d_ff = weights.shape
    # the largest |partial sum| a bag can reach: the K biggest |w| of every layer
    # (torch's topk: np.partition is slow on the many ties of a sparse profile)
    top = torch.from_numpy(np.abs(weights)).topk(min(k, d_ff), dim=-1).values
    bound = float(top.sum(dim=(1, 2)).max())
    # one bit of headroom: a floor moves each of the L*K terms by less than 1
    hi_bits = _EXACT - 1 - (int(np.ceil(np.log2(bound))) if bound > 0 else 0)
    hi_bits = int(np.clip(hi_bits, -900, 900))
    bits = _EXACT - int(np.ceil(np.log2(n_layers * k)))  # L*K pieces of `bits` bits stay exact
    t = len(weights)
    coarse, fine = _table(n_layers, d_ff, 2 * t), _table(n_layers, d_ff, t)
    rest = weights * 2.0**hi_bits
    for table, column in [(coarse, 0), (coarse, t), (fine, 0)]:
        piece = np.floor(rest)
        table[:, 1:, column : column + t] = piece.transpose(1, 2, 0)
        rest -= piece
        rest *= 2.0**bits  # exact: in [0, 2^bits)
    scales = [float(np.ldexp(1.0, -(hi_bits + bits * p))) for p in range(3)]
    return (
        torch.from_numpy(coarse.reshape(-1, coarse.shape[-1])),
        torch.from_numpy(fine.reshape(-1, fine.shape[-1])),
        scales,
    )


def _table(n_layers: int, d_ff: int, columns: int) -> np.ndarray:
    """(L, d_ff+1, columns) zeros; row 0 of each layer stays zero ("no neuron")."""
    if columns > 16:
        columns = -(-columns // 16) * 16  # 64-byte rows gather faster than ragged ones
    return np.zeros((n_layers, d_ff + 1, columns), dtype=np.float32)


def _score_float64(nags: np.ndarray, weights: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Plain float64 sums, for profiles holding inf or nan (which propagate) or huge L*K."""
    n, n_layers, k = nags.shape
    t, _, d_ff = weights.shape
    table = torch.from_numpy(np.ascontiguousarray(weights.reshape(t, -1).T))
    table = torch.cat([table, torch.zeros((1, t), dtype=table.dtype)])  # "no neuron" (-1)
    offsets = torch.arange(n_layers, dtype=torch.int64).repeat_interleave(k) * d_ff
    for s in range(0, n, CHUNK):
        idx = torch.from_numpy(nags[s : s + CHUNK].reshape(-1, n_layers * k).astype(np.int64))
        idx = torch.where(idx < 0, table.shape[0] - 1, idx + offsets)
        out[s : s + CHUNK] = torch.nn.functional.embedding_bag(idx, table, mode="sum").numpy()
    return out

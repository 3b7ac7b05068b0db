"""Neuron-Activated Graphs: the top-K up-projection neurons per layer of each text.

Why it is fast: texts are sorted by length and right-padded, so padding is minimal and real
tokens never see a pad (causal attention), which lets the model run without an attention mask
and keeps a text's NAG independent of its batch. A hook on the last layer's up-projection
stops the forward pass there: no LM head, nothing after the last up-projection.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import numpy as np
import torch

from nag_assets.nag.adapters import tapped
from nag_assets.nag.backbone import Backbone

Progress = Callable[[int, int, int], None]  # (texts done, texts total, tokens done)

# The defaults of every NAG setting, here once: the pipeline and the Dagster resource use them.
TOP_K = 5  # neurons kept per layer
MAX_TOKENS = 120  # tokens of each text a NAG reads
BATCH_SIZE = 32  # texts per forward pass: speed and memory only, never the NAG


class _Stop(Exception):
    """Raised by the last up-projection hook to skip the rest of the forward pass."""


def validate_texts(texts: Sequence[object]) -> list[str]:
    """Reject what cannot become a NAG, naming the row."""
    out = []
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"text at row {i} is {type(t).__name__}, not str")
        out.append(t)
    return out


def check_top_k(top_k: int, d_ff: int) -> None:
    if not 1 <= top_k <= d_ff:
        raise ValueError(f"top_k={top_k} must be between 1 and the MLP width d_ff={d_ff}")


def extract_nags(
    backbone: Backbone,
    texts: Sequence[str],
    top_k: int,
    max_tokens: int = MAX_TOKENS,
    batch_size: int = BATCH_SIZE,
    progress: bool | Progress = False,
    baseline: np.ndarray | None = None,
    token_ids: list[list[int]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """NAGs (n, L, K) int16 in descending impact, and the tokens each text used.

    A text with no tokens (empty, or whitespace the tokenizer drops) gets an all -1 NAG and
    0 tokens, so callers can drop or report it; it never reaches the model. `baseline`
    (L, d_ff), beyond the paper: each neuron's impact is divided by it before the top-K
    (baseline-normalized impact), so always-on neurons no longer take every slot.
    `token_ids`: the texts' full token ids (`backbone.tokenize(texts)`) when the caller has
    them already, so that texts are tokenized once for the NAG and the budget.
    """
    check_top_k(top_k, backbone.d_ff)
    divisor = _divisor(baseline, backbone)
    run = _Run(backbone, texts, max_tokens, batch_size, token_ids)
    nags = np.full((len(run.ids), backbone.num_layers, top_k), -1, dtype=np.int16)
    for rows, impact in run.batches(progress):
        nags[rows] = _top(impact if divisor is None else impact / divisor, top_k)
    return nags, run.lengths


def extract_impacts(
    backbone: Backbone,
    texts: Sequence[str],
    max_tokens: int = MAX_TOKENS,
    batch_size: int = BATCH_SIZE,
    progress: bool | Progress = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Every neuron's impact (n, L, d_ff) float32 (zeros for a text without tokens) and the
    tokens each text used: one backbone pass from which NAGs of any K or normalization
    follow (`nags_from_impacts`). Memory grows with n * L * d_ff: for samples, not pools."""
    run = _Run(backbone, texts, max_tokens, batch_size)
    out = np.zeros((len(run.ids), backbone.num_layers, backbone.d_ff), dtype=np.float32)
    for rows, impact in run.batches(progress):
        out[rows] = impact.cpu().numpy()
    return out, run.lengths


def neuron_baseline(
    backbone: Backbone,
    texts: Sequence[str],
    max_tokens: int = MAX_TOKENS,
    batch_size: int = BATCH_SIZE,
    progress: bool | Progress = False,
) -> np.ndarray:
    """(L, d_ff) float32: each neuron's impact averaged over the texts (each text counts
    once), the divisor of baseline-normalized impact."""
    run = _Run(backbone, texts, max_tokens, batch_size)
    total = torch.zeros((backbone.num_layers, backbone.d_ff), dtype=torch.float64)
    for _rows, impact in run.batches(progress):
        total += impact.double().sum(0).cpu()
    used = int((run.lengths > 0).sum())
    if used == 0:
        raise ValueError("an impact baseline needs at least one text with tokens")
    return (total / used).numpy().astype(np.float32)


def nags_from_impacts(
    impacts: np.ndarray, lengths: np.ndarray, top_k: int, baseline: np.ndarray | None = None
) -> np.ndarray:
    """The NAGs `extract_nags` would give, from `extract_impacts`' output."""
    scores = torch.from_numpy(np.ascontiguousarray(impacts, dtype=np.float32))
    check_top_k(top_k, scores.shape[-1])
    if baseline is not None:
        scores = scores / _clamped(torch.from_numpy(np.asarray(baseline, dtype=np.float32)))
    nags = _top(scores, top_k)
    nags[np.asarray(lengths) == 0] = -1
    return nags


def _top(impact: torch.Tensor, k: int) -> np.ndarray:
    return impact.topk(k, dim=-1, sorted=True).indices.to(torch.int16).cpu().numpy()


def _divisor(baseline: np.ndarray | None, backbone: Backbone) -> torch.Tensor | None:
    if baseline is None:
        return None
    shape = (backbone.num_layers, backbone.d_ff)
    if np.shape(baseline) != shape:
        raise ValueError(f"impact baseline has shape {np.shape(baseline)}, the backbone {shape}")
    return _clamped(torch.as_tensor(np.asarray(baseline, dtype=np.float32))).to(backbone.device)


def _clamped(baseline: torch.Tensor) -> torch.Tensor:
    return baseline.clamp_min(1e-12)  # a never-active neuron stays last, not infinite


class _Run:
    """Tokenized texts in length order, run batch by batch through the up-projection taps."""

    def __init__(
        self,
        backbone: Backbone,
        texts: Sequence[str],
        max_tokens: int,
        batch: int,
        token_ids: list[list[int]] | None = None,
    ):
        texts = validate_texts(texts)
        if max_tokens < 1 or batch < 1:
            raise ValueError(f"max_tokens={max_tokens} and batch_size={batch} must be >= 1")
        if token_ids is not None and len(token_ids) != len(texts):
            raise ValueError(f"{len(token_ids)} token id lists for {len(texts)} texts")
        self.backbone, self.batch = backbone, batch
        if token_ids is None:
            self.ids = backbone.tokenize(texts, max_tokens)
        else:
            self.ids = [x[:max_tokens] for x in token_ids]
        self.lengths = np.array([len(x) for x in self.ids], dtype=np.int64)
        self.order = [i for i in np.argsort(-self.lengths, kind="stable") if self.lengths[i] > 0]

    def batches(self, progress: bool | Progress):
        """Yield (rows, impact (B, L, d_ff) float32 on the backbone's device)."""
        report = _reporter(progress, len(self.order))
        done_tokens = 0
        hooks = contextlib.nullcontext() if self.backbone.compile else _NeuronTaps(self.backbone)
        with hooks as taps, torch.inference_mode():
            for start in range(0, len(self.order), self.batch):
                rows = self.order[start : start + self.batch]
                yield rows, _batch_impact(self.backbone, taps, [self.ids[i] for i in rows])
                done_tokens += int(self.lengths[rows].sum())
                report(min(start + self.batch, len(self.order)), len(self.order), done_tokens)


def right_padded(batch: list[list[int]], min_width: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, mask) (B, width), right-padded with 0: with causal attention real tokens
    never see a pad, so no attention mask is needed and a text's output is batch-independent."""
    width = max([min_width, *(len(x) for x in batch)])
    input_ids = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.float32)
    for r, x in enumerate(batch):
        input_ids[r, : len(x)] = torch.tensor(x)
        mask[r, : len(x)] = 1.0
    return input_ids, mask


def _batch_impact(
    backbone: Backbone, taps: _NeuronTaps | None, batch: list[list[int]]
) -> torch.Tensor:
    """(B, L, d_ff): through the up-projection taps, or the compiled trunk (`taps` None)."""
    if taps is None:
        return _compiled_impact(backbone, batch)
    input_ids, mask = right_padded(batch)
    mask = mask.to(backbone.device)
    taps.start(mask / mask.sum(1, keepdim=True))
    with contextlib.suppress(_Stop):
        backbone.model(input_ids=input_ids.to(backbone.device), use_cache=False)
    return torch.stack(taps.impacts, dim=1)  # (B, L, d_ff)


def _compiled_impact(backbone: Backbone, batch: list[list[int]]) -> torch.Tensor:
    """The compiled trunk on a batch padded to at least 2 x 2 (a zero-weight row and column,
    dropped or unseen): sizes 0 and 1 would each compile a graph of their own."""
    n = len(batch)
    padded = batch + [[0]] * (n < 2)
    input_ids, mask = right_padded(padded, min_width=2)
    mask = mask.to(backbone.device)
    mask[n:] = 0
    weights = (mask / mask.sum(1, keepdim=True).clamp_min(1))[:, None, :]
    return backbone.compiled_impacts()(input_ids.to(backbone.device), weights)[:n]


class _NeuronTaps:
    """Forward hooks (through the backbone's adapter) that turn each layer's neuron output
    into per-text mean |activation|."""

    def __init__(self, backbone: Backbone):
        self.modules = backbone.up_projs
        self.weights: torch.Tensor | None = None
        self.impacts: list[torch.Tensor] = []
        self._taps = contextlib.ExitStack()

    def start(self, weights: torch.Tensor) -> None:
        self.weights = weights[:, None, :]  # (B, 1, T): 1/len on real tokens, 0 on padding
        self.impacts = []

    def _hook(self, last: bool):
        def hook(_module, _inputs, output):
            # |act| in fp32 for the mean; bf16 is upcast once and made absolute in place (the
            # same values as abs then upcast, one full-size temporary fewer)
            u = output.abs() if output.dtype == torch.float32 else output.float().abs_()
            self.impacts.append(torch.bmm(self.weights, u).squeeze(1))
            if last:
                raise _Stop

        return hook

    def __enter__(self) -> _NeuronTaps:
        n = len(self.modules)
        hooks = [self._hook(i == n - 1) for i in range(n)]
        self._taps.enter_context(tapped(self.modules, hooks))
        return self

    def __exit__(self, *exc) -> None:
        self._taps.close()


def _reporter(progress: bool | Progress, total: int) -> Progress:
    if callable(progress):
        return progress
    if not progress or total == 0:
        return lambda *a: None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="text", desc="NAG extraction")

    def report(done: int, _total: int, tokens: int) -> None:
        bar.update(done - bar.n)
        bar.set_postfix(tokens=tokens)
        if done >= total:
            bar.close()

    return report

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

from nag_assets.nag.backbone import Backbone

Progress = Callable[[int, int, int], None]  # (texts done, texts total, tokens done)


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
    max_tokens: int = 120,
    batch_size: int = 16,
    progress: bool | Progress = False,
) -> tuple[np.ndarray, np.ndarray]:
    """NAGs (n, L, K) int16 in descending impact, and the tokens each text used.

    A text with no tokens (empty, or whitespace the tokenizer drops) gets an all -1 NAG and
    0 tokens, so callers can drop or report it; it never reaches the model.
    """
    texts = validate_texts(texts)
    check_top_k(top_k, backbone.d_ff)
    if max_tokens < 1 or batch_size < 1:
        raise ValueError(f"max_tokens={max_tokens} and batch_size={batch_size} must be >= 1")
    ids = backbone.tokenize(texts, max_tokens)
    lengths = np.array([len(x) for x in ids], dtype=np.int64)
    nags = np.full((len(texts), backbone.num_layers, top_k), -1, dtype=np.int16)
    order = [i for i in np.argsort(-lengths, kind="stable") if lengths[i] > 0]
    report = _reporter(progress, len(order))
    done_tokens = 0
    with _UpProjTaps(backbone) as taps, torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            nags[rows] = _batch_nags(backbone, taps, [ids[i] for i in rows], top_k)
            done_tokens += int(lengths[rows].sum())
            report(min(start + batch_size, len(order)), len(order), done_tokens)
    return nags, lengths


def _batch_nags(backbone: Backbone, taps: _UpProjTaps, batch: list[list[int]], k: int):
    width = max(len(x) for x in batch)
    input_ids = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.float32)
    for r, x in enumerate(batch):
        input_ids[r, : len(x)] = torch.tensor(x)
        mask[r, : len(x)] = 1.0
    mask = mask.to(backbone.device)
    taps.start(mask / mask.sum(1, keepdim=True))
    with contextlib.suppress(_Stop):
        backbone.model(input_ids=input_ids.to(backbone.device), use_cache=False)
    impact = torch.stack(taps.impacts, dim=1)  # (B, L, d_ff)
    return impact.topk(k, dim=-1, sorted=True).indices.to(torch.int16).cpu().numpy()


class _UpProjTaps:
    """Forward hooks that turn each up-projection output into per-text mean |activation|."""

    def __init__(self, backbone: Backbone):
        self.modules = backbone.up_projs
        self.handles: list = []
        self.weights: torch.Tensor | None = None
        self.impacts: list[torch.Tensor] = []

    def start(self, weights: torch.Tensor) -> None:
        self.weights = weights[:, None, :]  # (B, 1, T): 1/len on real tokens, 0 on padding
        self.impacts = []

    def _hook(self, last: bool):
        def hook(_module, _inputs, output):
            u = output.abs().float()
            self.impacts.append(torch.bmm(self.weights, u).squeeze(1))
            if last:
                raise _Stop

        return hook

    def __enter__(self) -> _UpProjTaps:
        n = len(self.modules)
        self.handles = [
            m.register_forward_hook(self._hook(i == n - 1)) for i, m in enumerate(self.modules)
        ]
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()


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

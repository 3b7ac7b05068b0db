"""Where a NAG's neurons live in each architecture family, and how to tap or zero them.

One `Adapter` per family names, for each neuron type it supports, the module of every decoder
layer whose forward output carries those neurons in its last dimension, and that width.
Extraction (`nag.extract`) taps them; the deactivation check zeroes them: both go through
here, so a new architecture is one `Adapter` entry in `ADAPTERS` plus its test.

Neuron types: `UP` is the MLP up-projection output (the paper's neurons, `fwd_up` in the
reference code); `DOWN` is the MLP down-projection output, one neuron per hidden unit
(`fwd_down`). Every family here offers both; another type is a further `Site`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

UP = "up_proj"  # neuron type: the MLP up-projection output, per layer (B, T, d_ff)
DOWN = "down_proj"  # neuron type: the MLP down-projection output, per layer (B, T, d_model)
NEURON_TYPES = {UP: "MLP up-projection", DOWN: "MLP down-projection"}  # for messages

Hook = Callable[[nn.Module, tuple, torch.Tensor], torch.Tensor | None]


class UnsupportedArchitecture(ValueError):
    """No adapter knows where this model's neurons are."""


def _linear_or_conv1d_width(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return module.out_features
    nf: Any = module.nf  # transformers' Conv1D (GPT-2) stores its weight transposed
    return int(nf)


@dataclass(frozen=True)
class Site:
    """One neuron type in one family: the per-layer module (by name suffix) and its width."""

    suffix: str
    width: Callable[[nn.Module], int] = _linear_or_conv1d_width


@dataclass(frozen=True)
class Adapter:
    """An architecture family: its neuron sites by neuron type."""

    family: str
    sites: dict[str, Site]

    def site(self, neuron_type: str = UP) -> Site:
        if neuron_type not in self.sites:
            raise UnsupportedArchitecture(
                f"{self.family} has no neuron type {neuron_type!r}; it has {sorted(self.sites)}"
            )
        return self.sites[neuron_type]

    def modules(self, model: nn.Module, neuron_type: str = UP) -> list[nn.Module]:
        """The neuron type's module of every decoder layer, in layer order."""
        suffix = self.site(neuron_type).suffix
        return [m for n, m in model.named_modules() if n.endswith(suffix)]

    def width(self, modules: Sequence[nn.Module], neuron_type: str = UP) -> int:
        return self.site(neuron_type).width(modules[0])


ADAPTERS = (
    # Llama, Qwen, Mistral, SmolLM, Gemma
    Adapter("llama", {UP: Site(".mlp.up_proj"), DOWN: Site(".mlp.down_proj")}),
    Adapter("gpt2", {UP: Site(".mlp.c_fc"), DOWN: Site(".mlp.c_proj")}),  # GPT-2
    # GPT-NeoX / Pythia
    Adapter("gpt_neox", {UP: Site(".mlp.dense_h_to_4h"), DOWN: Site(".mlp.dense_4h_to_h")}),
)


def adapter_for(model: nn.Module, neuron_type: str = UP) -> Adapter:
    """The first adapter that finds the neuron type's modules in `model`."""
    if neuron_type not in NEURON_TYPES:
        raise UnsupportedArchitecture(
            f"neuron type {neuron_type!r} is not one of {sorted(NEURON_TYPES)}"
        )
    for adapter in ADAPTERS:
        if neuron_type in adapter.sites and adapter.modules(model, neuron_type):
            return adapter
    known = ", ".join(f"*{a.sites[neuron_type].suffix}" for a in ADAPTERS if neuron_type in a.sites)
    what = NEURON_TYPES.get(neuron_type, neuron_type)
    raise UnsupportedArchitecture(
        f"{type(model).__name__} has no {what} this tool knows (looked for modules named {known})"
    )


@contextlib.contextmanager
def tapped(modules: Sequence[nn.Module], hooks: Sequence[Hook]) -> Iterator[None]:
    """Forward hooks on `modules` (one hook each) for the duration of the block."""
    handles = [m.register_forward_hook(h) for m, h in zip(modules, hooks)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def zeroed(modules: Sequence[nn.Module], neurons: Sequence[np.ndarray]) -> Iterator[None]:
    """Zero chosen outputs of each layer's module (the same as zeroing those rows of its
    weight and bias, whatever the layout of the weight), for the duration of the block."""

    def hook(idx: torch.Tensor) -> Hook:
        def run(_m, _i, out):
            out = out.clone()
            out[..., idx.to(out.device)] = 0
            return out

        return run

    pairs = [(m, torch.as_tensor(np.asarray(n, dtype=np.int64))) for m, n in zip(modules, neurons)]
    pairs = [(m, i) for m, i in pairs if len(i)]
    with tapped([m for m, _ in pairs], [hook(i) for _, i in pairs]):
        yield

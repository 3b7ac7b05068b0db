"""Layer subsets: score a NAG on some layers only (the paper's "final layer only" ablation,
and later layers beyond it).

A subset keeps every NAG whole (a NAG does not depend on the setting, so switching subsets
rescores without re-extracting) and restricts the target profile instead: the other layers'
weights become zero and the kept ones are scaled by L / |S|, so a score is the paper's
score of the NAGs sliced to the subset, (1/|S|) * sum over l in S of sum_k w_l[k], in [0, 1].

Spec grammar (one string, for settings and the environment):
  all            every layer (the paper's default)
  last           the last layer (the paper's ablation)
  last:N         the last N layers
  from:F         layers from fraction F of the depth on, e.g. from:0.5 = the later half
  A-B,C,...      0-based layer numbers and inclusive ranges
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ALL = "all"


class LayerSpecError(ValueError):
    """A layer spec that does not parse, or names layers the backbone does not have."""


def parse_layers(spec: str, n_layers: int) -> tuple[int, ...]:
    """The sorted layer numbers `spec` names for a backbone of `n_layers` layers."""
    text = str(spec).strip().lower()
    try:
        layers = _parse(text, n_layers)
    except ValueError as e:
        raise LayerSpecError(
            f"layers {spec!r}: {e} (use all, last, last:N, from:F, or numbers and ranges "
            "like 20-29)"
        ) from None
    bad = [x for x in layers if not 0 <= x < n_layers]
    if bad:
        raise LayerSpecError(f"layers {spec!r}: {bad} outside the backbone's 0-{n_layers - 1}")
    if not layers:
        raise LayerSpecError(f"layers {spec!r} names no layer")
    return tuple(sorted(set(layers)))


def _parse(text: str, n: int) -> list[int]:
    if text == ALL:
        return list(range(n))
    if text == "last":
        return [n - 1]
    if text.startswith("last:"):
        count = int(text[5:])
        if not 1 <= count <= n:
            raise ValueError(f"last:{count} needs 1 to {n} layers")
        return list(range(n - count, n))
    if text.startswith("from:"):
        share = float(text[5:])
        if not 0 <= share < 1:
            raise ValueError(f"from:{share} needs a fraction in [0, 1)")
        return list(range(int(np.floor(share * n)), n))
    out: list[int] = []
    for part in text.split(","):
        a, sep, b = part.strip().partition("-")
        out += list(range(int(a), int(b) + 1)) if sep else [int(a)]
    return out


def restrict_profile(profile: np.ndarray, layers: Sequence[int] | None) -> np.ndarray:
    """The (L, d) profile scoring only `layers` (None: every layer, unchanged): the other rows
    zero, the kept ones times L / |layers|."""
    profile = np.asarray(profile)
    n_layers = profile.shape[-2]
    if layers is None or len(layers) == n_layers:
        return profile
    out = np.zeros_like(profile)
    keep = list(layers)
    out[..., keep, :] = profile[..., keep, :] * (n_layers / len(keep))
    return out

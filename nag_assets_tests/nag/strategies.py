"""Hypothesis strategies shared by the NAG tests."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st


@st.composite
def nag_arrays(
    draw: st.DrawFn,
    n_layers: int | None = None,
    k: int | None = None,
    d_ff: int | None = None,
    min_n: int = 1,
    max_n: int = 6,
) -> tuple[np.ndarray, int]:
    """(n, L, K) int16 NAGs with K distinct neurons per layer (as topK gives), and d_ff."""
    d_ff = d_ff if d_ff is not None else draw(st.integers(1, 12))
    k = k if k is not None else draw(st.integers(1, d_ff))
    n_layers = n_layers if n_layers is not None else draw(st.integers(1, 4))
    n = draw(st.integers(min_n, max_n))
    layer = st.lists(st.integers(0, d_ff - 1), min_size=k, max_size=k, unique=True)
    rows = [[draw(layer) for _ in range(n_layers)] for _ in range(n)]
    return np.array(rows, dtype=np.int16).reshape(n, n_layers, k), d_ff

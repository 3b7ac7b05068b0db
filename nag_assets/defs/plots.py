"""Pictures for asset pages: PNGs embedded in markdown metadata."""

import base64
import io

import dagster as dg
import numpy as np


def _png_md(fig, alt: str) -> dg.MetadataValue:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return dg.MetadataValue.md(
        f"![{alt}](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})"
    )


def profile_plot(profile: np.ndarray, target: str, top: int = 40) -> dg.MetadataValue:
    """Layers x the target's most frequent neurons (by total weight), shaded by weight."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = np.argsort(-profile.sum(axis=0), kind="stable")[:top]
    fig, ax = plt.subplots(figsize=(8, 4))
    im = ax.imshow(profile[:, cols], aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(cols)), [str(c) for c in cols], rotation=90, fontsize=6)
    ax.set(xlabel="neuron", ylabel="layer", title=f"{target}: profile weight of top neurons")
    fig.colorbar(im, ax=ax)
    return _png_md(fig, f"{target} profile")


def score_plot(histograms: dict[str, list[float]], cutoffs: dict[str, float | None]):
    """Each target's token-weighted score distribution with its cut-off."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(histograms), 1, figsize=(7, 2.2 * len(histograms)), squeeze=False)
    for ax, (target, hist) in zip(axes[:, 0], histograms.items()):
        edges = np.linspace(0, 1, len(hist) + 1)
        ax.stairs(hist, edges, fill=True, alpha=0.6)
        if cutoffs.get(target) is not None:
            ax.axvline(cutoffs[target], color="red", label=f"cut-off {cutoffs[target]:.3f}")
            ax.legend(fontsize=7)
        lo, hi = _nonzero_range(np.asarray(hist), edges)
        ax.set(xlim=(lo, hi), title=target, xlabel="score", ylabel="tokens")
    fig.tight_layout()
    return _png_md(fig, "score distributions")


def _nonzero_range(hist: np.ndarray, edges: np.ndarray) -> tuple[float, float]:
    nz = np.nonzero(hist)[0]
    if len(nz) == 0:
        return 0.0, 1.0
    return float(edges[nz[0]]), float(edges[nz[-1] + 1])

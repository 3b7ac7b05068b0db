"""Pictures for asset pages: PNGs embedded in markdown metadata.

The Dagster UI shows a markdown entry longer than 1,000 characters behind a "[Show Markdown]"
link that opens it in a dialog, so every plot here is one click away on the asset's page."""

import base64
import io

import dagster as dg
import numpy as np

from nag_assets.nag.profile import layer_concentration, top_neurons

PICKED, POOL, CUT = "#e8743b", "#9db4cc", "#c0392b"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png_md(fig, alt: str) -> dg.MetadataValue:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return dg.MetadataValue.md(
        f"![{alt}](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})"
    )


def profile_plot(profile: np.ndarray, target: str, k: int, top: int = 16) -> dg.MetadataValue:
    """Left: layers x each layer's `top` most frequent neurons (by rank; the cell holds the
    neuron's index), shaded by the share of examples whose NAG has it. Right: per layer, the
    share of NAG slots its top-K neurons take (the concentration), against the K/d_ff floor."""
    plt = _pyplot()
    n_layers, d_ff = profile.shape
    top = min(top, d_ff)
    order = top_neurons(profile, top)
    share = np.take_along_axis(profile, order, axis=1) * k  # share of examples with the neuron
    conc = layer_concentration(profile, k)
    height = max(2.6, 0.24 * n_layers + 1.2)
    fig, (ax, bar) = plt.subplots(
        1, 2, figsize=(10, height), sharey=True, gridspec_kw={"width_ratios": [4, 1]}
    )
    im = ax.imshow(share, aspect="auto", cmap="viridis", vmin=0, vmax=max(share.max(), 1e-9))
    if n_layers * top <= 1200:
        for (layer, rank), neuron in np.ndenumerate(order):
            if share[layer, rank] == 0:  # fewer neurons than columns ever fired here
                continue
            light = share[layer, rank] < 0.6 * share.max()
            ax.text(rank, layer, str(neuron), ha="center", va="center", fontsize=6,
                    color="white" if light else "black")  # fmt: skip
    ax.set_xticks(range(top), [str(r + 1) for r in range(top)], fontsize=7)
    ax.set(
        xlabel="rank within the layer (cell: neuron index)",
        ylabel="layer",
        title=f"{target}: most frequent neurons per layer",
    )
    fig.colorbar(im, ax=ax, label="share of examples", fraction=0.04, pad=0.01)
    bar.barh(range(n_layers), conc, color=POOL)
    bar.axvline(k / d_ff, color=CUT, ls="--", lw=1, label=f"spread out (K/d_ff={k / d_ff:.1%})")
    bar.set(xlim=(0, 1), xlabel=f"top-{k} share", title=f"concentration {conc.mean():.0%}")
    bar.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    return _png_md(fig, f"{target} profile")


def score_plot(
    histograms: dict[str, list[float]],
    cutoffs: dict[str, float | None],
    picked: dict[str, tuple[int, int]] | None = None,
) -> dg.MetadataValue:
    """Each target's token-weighted score distribution over the pool, with its cut-off: the
    bins at or above it (picked) in orange. `picked`: target -> (documents, tokens) chosen."""
    plt = _pyplot()
    picked = picked or {}
    fig, axes = plt.subplots(len(histograms), 1, figsize=(7, 2.2 * len(histograms)), squeeze=False)
    for ax, (target, counts) in zip(axes[:, 0], histograms.items()):
        hist = np.asarray(counts, dtype=float)
        edges = np.linspace(0, 1, len(hist) + 1)
        cut = cutoffs.get(target)
        above = edges[1:] > cut if cut is not None else np.zeros(len(hist), bool)
        ax.stairs(np.where(above, 0, hist), edges, fill=True, color=POOL, label="not picked")
        if above.any():
            ax.stairs(np.where(above, hist, 0), edges, fill=True, color=PICKED, label="picked")
        title = target
        if cut is not None:
            ax.axvline(cut, color=CUT, lw=1, label=f"cut-off {cut:.3f}")
        if target in picked:
            docs, tokens = picked[target]
            title += f": {docs:,} documents, {tokens:,} tokens picked"
        ax.legend(fontsize=7, loc="upper left")
        lo, hi = _nonzero_range(hist, edges)
        ax.set(xlim=(lo, hi), title=title, xlabel="score", ylabel="pool tokens")
    fig.tight_layout()
    return _png_md(fig, "score distributions")


def _nonzero_range(hist: np.ndarray, edges: np.ndarray) -> tuple[float, float]:
    nz = np.nonzero(hist)[0]
    if len(nz) == 0:
        return 0.0, 1.0
    return float(edges[nz[0]]), float(edges[nz[-1] + 1])

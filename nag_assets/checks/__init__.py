"""Sanity checks of a selection, over a storage root's stored NAGs and scores (no Dagster).

    python -m nag_assets.checks stability    --root demo_root
    python -m nag_assets.checks agreement    --root demo_root
    python -m nag_assets.checks variants     --root demo_root
    python -m nag_assets.checks deactivation --root demo_root

Each prints one JSON object. `checks.dispatch.run_check` runs a check by name, with the
defaults of `CheckOptions`, for the command line and the `selection_checks` asset alike.

- stability: per target, the selection made from a random subset of n target examples
  (several seeds) against the one from all of them: Jaccard of the chosen documents.
- agreement: Jaccard of the NAG selection with each baseline ranker's, per target, beside
  the Jaccard two independent random selections would have on average.
- variants (beyond the paper; one backbone pass): the contrastive profile,
  baseline-normalized impact and larger K beside the paper's method: distinct neurons per
  layer, selections' overlap with the paper's and between targets, stability. Stores each
  variant's profiles and selection for deactivation and benchmarks/proxy.py.
- deactivation: zero a target's K most frequent neurons per layer (per profile variant) and
  measure the backbone's loss on held-out examples of its benchmark, beside K random
  neurons per layer (several seeds) and another target's top neurons.

Selections use the mixture's rule (`select_under_budget`: all targets at once, `fraction` of
the pool's tokens split equally), over every shard scored against the current targets.
"""

CHECKS = ("stability", "agreement", "variants", "deactivation")

from nag_assets.checks.agreement import agreement  # noqa: E402
from nag_assets.checks.common import benchmark_of, jaccard, ready, selections  # noqa: E402
from nag_assets.checks.deactivation import deactivation, held_out, lm_loss  # noqa: E402
from nag_assets.checks.stability import stability  # noqa: E402
from nag_assets.checks.summary import summary_md  # noqa: E402
from nag_assets.checks.variants import variants  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    from nag_assets.checks.cli import main as run

    return run(argv)


__all__ = [
    "CHECKS",
    "agreement",
    "benchmark_of",
    "deactivation",
    "held_out",
    "jaccard",
    "lm_loss",
    "main",
    "ready",
    "selections",
    "stability",
    "summary_md",
    "variants",
]

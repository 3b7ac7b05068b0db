"""One check by name, with its knobs' defaults: what the command line and the
`selection_checks` asset both run, so neither repeats the other's dispatch or defaults."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nag_assets.checks import CHECKS
from nag_assets.checks.agreement import agreement
from nag_assets.checks.deactivation import deactivation
from nag_assets.checks.stability import stability
from nag_assets.checks.variants import variants
from nag_assets.nag import Backbone
from nag_assets.nag.extract import BATCH_SIZE, MAX_TOKENS
from nag_assets.settings import ChecksSettings
from nag_assets.storage import Storage

BACKBONE_CHECKS = ("variants", "deactivation")  # the checks that load the model


_SPEC = ChecksSettings()  # the defaults are the selection spec's (nag_assets.settings)


@dataclass(frozen=True)
class CheckOptions:
    """The knobs of the checks; each field's default is the spec's `checks:` block's, which
    the command line and the launchpad show."""

    fraction: float = _SPEC.fraction  # budget fraction of the selections
    seeds: int = _SPEC.seeds  # stability, variants: random subsets per size
    sizes: tuple[int, ...] = tuple(_SPEC.sizes)  # stability: target example counts
    rankers: tuple[str, ...] = tuple(_SPEC.rankers)  # agreement: rankers compared with NAG's
    ks: tuple[int, ...] = tuple(_SPEC.ks)  # variants: K values above the stored K
    max_docs: int = _SPEC.max_docs  # variants: pool documents (a sample)
    neurons: tuple[int, ...] = tuple(_SPEC.neurons)  # deactivation: neurons zeroed per layer
    random_seeds: int = _SPEC.random_seeds  # deactivation: random-neuron draws
    examples: int = _SPEC.examples  # deactivation: held-out examples
    batch_size: int = BATCH_SIZE  # variants: the backbone pass's batch
    max_tokens: int = MAX_TOKENS  # deactivation: tokens per held-out example


DEFAULTS = CheckOptions()


def run_check(
    name: str,
    storage: Storage,
    options: CheckOptions,
    backbone: Callable[[], Backbone],
    progress: bool | Callable[[int, int, int], None] = False,
    log: Callable[[str], None] | None = None,
) -> dict:
    """The result of check `name`. `backbone` is called only by the checks that run the model,
    so stability and agreement never load it."""
    o = options
    if name == "stability":
        return stability(storage, o.sizes, o.seeds, o.fraction)
    if name == "agreement":
        return agreement(storage, o.fraction, o.rankers)
    if name == "variants":
        return variants(
            storage,
            backbone(),
            o.fraction,
            o.ks,
            o.max_docs,
            seeds=o.seeds,
            batch_size=o.batch_size,
            progress=progress,
        )
    if name == "deactivation":
        return deactivation(
            storage,
            backbone(),
            o.neurons,
            o.random_seeds,
            o.examples,
            max_tokens=o.max_tokens,
            log=log,
        )
    raise ValueError(f"unknown check {name!r}; choose from {list(CHECKS)}")

"""Where the backbone pass runs: in the step's own process (`local`), or on a Ray cluster's
actors (`ray`, nag_assets/executors/ray.py; Ray is imported only when it is used).

Either way the step plans the file into chunks and writes the table (the extractor seam,
nag_assets/pipeline/extractor.py); only where `extract_chunk` runs differs, so the stored
table is byte-identical for the same inputs and settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nag_assets.nag import Backbone, BackboneFacts
    from nag_assets.pipeline.common import NagSettings
    from nag_assets.pipeline.extractor import BackboneSpec, Extractor
    from nag_assets.storage import Storage

EXECUTORS = ("local", "ray")


class ExecutorError(RuntimeError):
    """The executor could not do its part: a cluster out of reach, a worker lost too often.
    The message names the cluster, and the file and chunk when there is one."""


@dataclass(frozen=True)
class ExecutorSettings:
    """`ray_address` None: RAY_ADDRESS, else the cluster started on this machine with
    `ray start --head` ("auto"). `actors` 0: one per GPU in the cluster, or, without GPUs,
    one per `cpus_per_actor` CPUs. `gpus_per_actor` None: 1 when the cluster has GPUs, else
    0. `max_retries`: how often a chunk whose worker died is retried (and a worker
    restarted) before its file fails."""

    executor: str = "local"
    ray_address: str | None = None
    actors: int = 0
    gpus_per_actor: float | None = None
    cpus_per_actor: float = 1.0
    max_retries: int = 3

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor {self.executor!r} must be one of {list(EXECUTORS)}")
        for name in ("actors", "cpus_per_actor", "max_retries"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
        if self.gpus_per_actor is not None and self.gpus_per_actor < 0:
            raise ValueError(f"gpus_per_actor={self.gpus_per_actor} must be >= 0")


def extraction(
    settings: ExecutorSettings,
    spec: BackboneSpec,
    load: Callable[[], Backbone],
    storage: Storage,
    nag_settings: NagSettings,
) -> tuple[BackboneFacts, Extractor | None]:
    """(backbone, extractor) for a step: local loads the model here (a `Backbone`; extractor
    None: the step's in-process default); ray leaves it to the actors and gives their
    backbone's description (a `BackboneInfo`: both are `BackboneFacts`, all the step needs),
    after anything only a backbone can make (the normalized-impact baseline) is in storage."""
    if settings.executor == "local":
        return load(), None
    from nag_assets.executors.ray import RayExtractor

    extractor = RayExtractor(settings, spec)
    extractor.prepare(storage, nag_settings)
    return extractor.backbone(), extractor

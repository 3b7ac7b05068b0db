"""Where the backbone pass runs: in the step's own process (`local`), or on a Ray cluster's
actors (`ray`, nag_assets/executors/ray.py; Ray is imported only when it is used).

Either way the step plans the file into chunks and writes the table (the extractor seam,
nag_assets/pipeline/extractor.py); only where `extract_chunk` runs differs, so the stored
table is byte-identical for the same inputs and settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nag_assets.nag import Backbone, BackboneFacts
    from nag_assets.pipeline.common import NagSettings
    from nag_assets.pipeline.extractor import BackboneSpec, Extractor
    from nag_assets.storage import Storage

from nag_assets.settings import ExecutorSettings

EXECUTORS = ("local", "ray")
__all__ = ["EXECUTORS", "ExecutorError", "ExecutorSettings", "extraction"]


class ExecutorError(RuntimeError):
    """The executor could not do its part: a cluster out of reach, a worker lost too often.
    The message names the cluster, and the file and chunk when there is one."""


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

    extractor = RayExtractor(settings, spec, settings.restart_wait_s)
    extractor.prepare(storage, nag_settings)
    return extractor.backbone(), extractor

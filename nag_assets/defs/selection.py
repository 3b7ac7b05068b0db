"""One selection's definitions: the whole asset graph, its sensors and its resources, named
by a SelectionSpec. definitions.py and the NagSelection component both build through here."""

from __future__ import annotations

import logging

import dagster as dg

from nag_assets.defs.automation import automation_sensor
from nag_assets.defs.checks import checks_asset
from nag_assets.defs.corpus import corpus_asset
from nag_assets.defs.distilled import distilled_assets
from nag_assets.defs.mixture import mixture_asset, preview_asset
from nag_assets.defs.resources import (
    BackboneResource,
    ExecutorResource,
    StorageResource,
    storage_kind,
)
from nag_assets.defs.sensors import pool_sensor
from nag_assets.defs.shards import shard_assets
from nag_assets.defs.spec import SelectionSpec
from nag_assets.defs.targets import target_assets
from nag_assets.pipeline.slots import backbone_slots
from nag_assets.settings import SelectionSettings

log = logging.getLogger("nag_assets")


def selection_defs(
    settings: SelectionSettings,
    storage: StorageResource,
    backbone: BackboneResource,
    executor: ExecutorResource,
) -> dg.Definitions:
    """The graph of one selection (`settings`, resolved) over `storage` with `backbone`, its
    passes run by `executor`.

    Runs execute in their run worker's process: each run the sensor or the automation makes
    is one asset, so a process per step would only load torch and the backbone once more."""
    spec = SelectionSpec(
        settings=settings,
        backbone_version=backbone.code_version(),
        storage_kind=storage_kind(storage.root),
    )
    shards = shard_assets(spec)
    if spec.scoring.distilled:  # the sample, the scorers and their score tables
        shards += distilled_assets(spec, shards[0])
    assets = [
        *target_assets(spec),
        *shards,
        mixture_asset(spec),
        corpus_asset(spec),
        preview_asset(spec),
        checks_asset(spec),
    ]
    _log_start(spec, backbone, executor)
    return dg.Definitions(
        assets=assets,
        executor=dg.in_process_executor,
        sensors=[pool_sensor(spec), automation_sensor(spec, assets)],
        resources={
            spec.storage_key: storage,
            spec.backbone_key: backbone,
            spec.executor_key: executor,
        },
    )


def _log_start(spec: SelectionSpec, backbone: BackboneResource, executor: ExecutorResource) -> None:
    """What bounds the backbone steps, said once when the definitions load."""
    if executor.executor == "ray":
        where = "on the Ray cluster's actors (no machine slot taken)"
    else:
        where = f"at most {backbone_slots(backbone.slots, backbone.device)} at a time per machine"
    log.info(
        "selection %r: backbone steps run %s (backbone.slots), and within the Dagster pool %r "
        "when the instance sets a limit for it",
        spec.name or "(unnamed)",
        where,
        spec.backbone_pool,
    )

"""One selection's definitions: the whole asset graph, its sensors and its resources, named
by a SelectionSpec. definitions.py and the NagSelection component both build through here."""

from __future__ import annotations

import dagster as dg

from nag_assets.defs.automation import automation_sensor
from nag_assets.defs.checks import ChecksConfig, checks_asset
from nag_assets.defs.distilled import distilled_assets
from nag_assets.defs.mixture import MixtureConfig, mixture_asset
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
from nag_assets.pipeline.distilled import Scoring


def selection_defs(
    storage: StorageResource,
    backbone: BackboneResource,
    executor: ExecutorResource,
    name: str = "",
    pool: str = "",
    mixture: MixtureConfig | None = None,
    checks: ChecksConfig | None = None,
    scoring: Scoring | None = None,
) -> dg.Definitions:
    """The graph over `storage` with `backbone`, its passes run by `executor`. `name` prefixes
    every asset key, partition set, sensor, group, pool and resource key ("" keeps today's
    names); `mixture`/`checks` are the launchpad defaults of selected_mixture and
    selection_checks; `scoring` chooses how shards are scored (default: full NAG).

    Runs execute in their run worker's process: each run the sensor or the automation makes
    is one asset, so a process per step would only load torch and the backbone once more."""
    spec = SelectionSpec(
        name=name,
        backbone_version=backbone.code_version(),
        storage_kind=storage_kind(storage.root),
        pool=pool,
        mixture=mixture,
        checks=checks,
        scoring=scoring or Scoring(),
    )
    shards = shard_assets(spec)
    if spec.scoring.distilled:  # the sample, the scorers and their score tables
        shards += distilled_assets(spec, shards[0])
    assets = [*target_assets(spec), *shards, mixture_asset(spec), checks_asset(spec)]
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

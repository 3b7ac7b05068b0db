"""The one Definitions object that `dagster dev` (workspace.yaml) loads."""

import dagster as dg

from nag_assets.defs.automation import automation_sensor
from nag_assets.defs.checks import selection_checks
from nag_assets.defs.mixture import selected_mixture
from nag_assets.defs.resources import BackboneResource, ExecutorResource, StorageResource
from nag_assets.defs.sensors import pool_sensor
from nag_assets.defs.shards import candidate_shard, shard_nag, shard_scores
from nag_assets.defs.targets import target_dataset, target_nag

ASSETS = [
    target_dataset,
    target_nag,
    candidate_shard,
    shard_nag,
    shard_scores,
    selected_mixture,
    selection_checks,
]


def build_defs(
    storage: StorageResource | None = None,
    backbone: BackboneResource | None = None,
    executor: ExecutorResource | None = None,
) -> dg.Definitions:
    """Definitions with the given resources (tests and the demo pass their own).

    Runs execute in their run worker's process: each run the sensor or the automation makes
    is one asset, so a process per step would only load torch and the backbone once more."""
    return dg.Definitions(
        assets=ASSETS,
        executor=dg.in_process_executor,
        sensors=[pool_sensor, automation_sensor],
        resources={
            "storage": storage or StorageResource(),
            "backbone": backbone or BackboneResource.from_env(),
            "executor": executor or ExecutorResource.from_env(),
        },
    )


defs = build_defs()

"""Shard assets: candidate_shard (the file), shard_nag (the backbone pass), shard_scores."""

import dagster as dg

from nag_assets.defs.automation import on_update
from nag_assets.defs.common import progress_logger, result
from nag_assets.defs.partitions import shards
from nag_assets.defs.resources import BackboneResource, StorageResource
from nag_assets.defs.targets import NAG_CODE_VERSION, target_nag
from nag_assets.pipeline import shards as steps
from nag_assets.pipeline.common import STEP_CODE_VERSION, key_or_none


@dg.observable_source_asset(
    partitions_def=shards,
    group_name="shards",
    description="One file of candidate documents under shards/; its data version is the "
    "content hash (or S3 ETag), so an unchanged file never causes work.",
)
def candidate_shard(
    context: dg.AssetExecutionContext, storage: StorageResource
) -> dg.DataVersionsByPartition:
    store = storage.storage()
    known = set(context.instance.get_dynamic_partitions(shards.name))
    versions = {}
    for f in store.list_files("shards"):
        key = key_or_none(f.name)
        if key in known:
            versions[key] = dg.DataVersion(store.content_version(f))
    return dg.DataVersionsByPartition(versions)


@dg.asset(
    partitions_def=shards,
    deps=[candidate_shard],
    group_name="shards",
    kinds={"pytorch", "parquet"},
    code_version=NAG_CODE_VERSION,
    pool="backbone",
    description="Every document's NAG and token count: the only costly step (runs the "
    "backbone). Computed once per shard version, reused by every target.",
)
def shard_nag(
    context: dg.AssetExecutionContext, storage: StorageResource, backbone: BackboneResource
) -> dg.MaterializeResult:
    key = context.partition_key
    store = storage.storage()
    step = steps.shard_nag(
        store,
        key,
        backbone.load(),
        backbone.settings(),
        progress_logger(context, f"shard_nag[{key}]"),
    )
    return result(step, source_version=_source_version(store, key))


def _source_version(store, key: str) -> str:
    meta = store.read_meta(steps.NAG, f"{key}.parquet") or {}
    return f"sha256:{meta.get('sha256')}"


@dg.asset(
    partitions_def=shards,
    deps=[shard_nag, dg.AssetDep(target_nag, partition_mapping=dg.AllPartitionMapping())],
    group_name="shards",
    kinds={"parquet"},
    code_version=STEP_CODE_VERSION,
    backfill_policy=dg.BackfillPolicy.single_run(),
    automation_condition=on_update("target_nag"),
    description="Each document's score against every current target profile, one column "
    "per target. Cheap: re-scoring every shard after a target changes is one run.",
)
def shard_scores(
    context: dg.AssetExecutionContext, storage: StorageResource
) -> dg.MaterializeResult:
    store = storage.storage()
    target_keys = sorted(context.instance.get_dynamic_partitions("targets"))
    scored = skipped = 0
    for key in context.partition_keys:
        step = steps.shard_scores(store, key, target_keys)
        skipped += step.skipped
        scored += not step.skipped
        context.log.info(f"shard_scores[{key}]: {'unchanged' if step.skipped else 'scored'}")
    return dg.MaterializeResult(
        metadata={"shards_scored": scored, "shards_unchanged": skipped, "targets": len(target_keys)}
    )

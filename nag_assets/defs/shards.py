"""Shard assets: candidate_shard (the file), shard_nag (the backbone pass), shard_scores."""

import time
from collections.abc import Callable

import dagster as dg

from nag_assets.defs.automation import on_update
from nag_assets.defs.common import (
    backbone_pass,
    backbone_slot,
    executor_of,
    progress_logger,
    resources,
    result,
    storage_of,
)
from nag_assets.defs.resources import BackboneResource, ExecutorResource, StorageResource
from nag_assets.defs.spec import SelectionSpec
from nag_assets.pipeline import shards as steps
from nag_assets.pipeline.common import STEP_CODE_VERSION, StepResult, key_or_none
from nag_assets.pipeline.provenance import source_version
from nag_assets.sources.files import InputError
from nag_assets.storage import Storage

CANDIDATE_SHARD_DOC = """One file of candidate pretraining documents under `shards/` (parquet or
JSONL with a `text` column and an optional unique `id`; other columns are carried into the
mixture). Not computed here: `pool_sensor` adds a partition per new file and records its data
version, the content hash (S3: ETag), so a touched but unchanged file never causes work."""

SHARD_NAG_DOC = """Every document's NAG (the K most active up-projection neurons per layer)
and token count. The only costly step: it runs the backbone over the shard (pool `backbone`;
the run log shows documents done, tokens per second and time left). Computed once per shard
version and backbone setting, and reused by every target: adding a target never reruns it.

Metadata: `documents_extracted` (0 when the stored NAGs were current), `tokens`,
`nag_tokens` (what the backbone read, at most `max_tokens` per document), `empty_documents`,
`seconds`, `source_version` (the file's content hash)."""

SHARD_SCORES_DOC = """Where targets meet shards: each document's score against every current
target profile (mean pairwise Dice overlap of its NAG with the profile, in [0, 1]), one column
per target. Cheap, no backbone: re-scoring every shard after a target changes is one run over
all partitions (single-run backfill)."""


def shard_assets(spec: SelectionSpec) -> list[dg.AssetsDefinition | dg.SourceAsset]:
    """candidate_shard, shard_nag and shard_scores of one selection (`scorer: distilled`:
    candidate_shard alone)."""
    keys = {spec.storage_key, spec.backbone_key}

    @dg.observable_source_asset(
        key=spec.key("candidate_shard"),
        partitions_def=spec.shards,
        group_name=spec.named("shards"),
        tags={"dagster/kind/parquet": "", f"dagster/kind/{spec.storage_kind}": ""},
        required_resource_keys={spec.storage_key},
        description=CANDIDATE_SHARD_DOC,
    )
    def candidate_shard(context: dg.AssetExecutionContext) -> dg.DataVersionsByPartition:
        return _candidate_shard(context, storage_of(context, spec), spec)

    if spec.scoring.distilled:  # no shard_nag: defs.distilled builds the rest
        return [candidate_shard]

    @dg.asset(
        key=spec.key("shard_nag"),
        partitions_def=spec.shards,
        deps=[candidate_shard],
        group_name=spec.named("shards"),
        kinds={"pytorch", "huggingface", "parquet"},
        code_version=spec.nag_code_version,
        pool=spec.backbone_pool,
        required_resource_keys=keys | {spec.executor_key},
        description=SHARD_NAG_DOC.replace("`backbone`", f"`{spec.backbone_pool}`"),
    )
    def shard_nag(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        with backbone_slot(context, spec):
            return _shard_nag(context, *resources(context, spec), executor_of(context, spec))

    @dg.asset(
        key=spec.key("shard_scores"),
        partitions_def=spec.shards,
        deps=[
            shard_nag,
            dg.AssetDep(spec.key("target_nag"), partition_mapping=dg.AllPartitionMapping()),
        ],
        group_name=spec.named("selection"),
        kinds={"numpy", "parquet"},
        code_version=STEP_CODE_VERSION,
        backfill_policy=dg.BackfillPolicy.single_run(),
        automation_condition=on_update(spec.key("target_nag")),
        required_resource_keys={spec.storage_key},
        description=SHARD_SCORES_DOC,
    )
    def shard_scores(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return shard_scores_run(context, storage_of(context, spec), spec)

    return [candidate_shard, shard_nag, shard_scores]


def _candidate_shard(
    context: dg.AssetExecutionContext, storage: StorageResource, spec: SelectionSpec
) -> dg.DataVersionsByPartition:
    store = storage.storage()
    known = set(context.instance.get_dynamic_partitions(spec.shards.name))
    versions = {}
    pool = store.inputs("shards")
    for f in pool.list_inputs():
        key = key_or_none(f.name)
        if key is not None and key in known:
            versions[key] = dg.DataVersion(pool.content_version(f))
    return dg.DataVersionsByPartition(versions)


def _shard_nag(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    backbone: BackboneResource,
    executor: ExecutorResource,
) -> dg.MaterializeResult:
    key = context.partition_key
    store = storage.storage()
    start = time.monotonic()
    settings = backbone.settings()
    model, extractor = backbone_pass(backbone, executor, store)
    step = steps.shard_nag(
        store,
        key,
        model,
        settings,
        progress_logger(context, f"shard_nag[{key}]"),
        extractor,
    )
    return result(
        step,
        seconds=round(time.monotonic() - start, 2),
        source_version=source_version(store, key),
    )


def shard_scores_run(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    spec: SelectionSpec,
    score: Callable[[Storage, str, list[str]], StepResult] = steps.shard_scores,
) -> dg.MaterializeResult:
    """Score every shard of the run with `score(store, shard, targets)` (NAG overlap, or the
    distilled scorers); one bad shard fails alone."""
    store = storage.storage()
    target_keys = sorted(context.instance.get_dynamic_partitions(spec.targets.name))
    scored = skipped = 0
    failed = {}
    for key in context.partition_keys:
        try:
            step = score(store, key, target_keys)
        except InputError as e:  # one bad shard must not fail the others scored in this run
            failed[key] = str(e)
            context.log.error(f"shard_scores[{key}] failed: {e}")
            continue
        skipped += step.skipped
        scored += not step.skipped
        done = "unchanged" if step.skipped else f"scored {step.facts}"
        context.log.info(f"shard_scores[{key}]: {done}")
    if failed and not scored + skipped:
        raise InputError(f"no shard could be scored: {failed}")
    return dg.MaterializeResult(
        metadata={
            "scorer": spec.scoring.scorer,
            "shards_scored": scored,
            "shards_unchanged": skipped,
            "shards_failed": dg.MetadataValue.json(failed),
            "targets": len(target_keys),
            "target_names": ", ".join(target_keys),
        }
    )

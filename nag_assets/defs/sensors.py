"""pool_sensor: turns files appearing, changing or leaving targets/ and shards/ into
partitions and runs. Declarative automation carries the change downstream from there."""

import json

import dagster as dg

from nag_assets.defs.common import storage_of
from nag_assets.defs.resources import StorageResource
from nag_assets.defs.spec import SelectionSpec
from nag_assets.pipeline.common import record_input
from nag_assets.pipeline.watch import scan
from nag_assets.sources.benchmarks import BENCHMARK_PREFIX
from nag_assets.storage import sha256_file


def pool_sensor(spec: SelectionSpec) -> dg.SensorDefinition:
    """The pool sensor of one selection: its own name, partition sets and cursor."""

    @dg.sensor(
        name=spec.named("pool_sensor"),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        asset_selection=[
            spec.key("target_dataset"),
            *spec.shard_passes,
            spec.key("selected_mixture"),
        ],
        required_resource_keys={spec.storage_key},
        description="Watches targets/ and shards/: new files add partitions and request runs, "
        "changed files request their own partition, removed files remove their partition.",
    )
    def _pool_sensor(context: dg.SensorEvaluationContext, **_resources):
        # Called directly, a sensor gets its resources as keyword arguments; ticked by the
        # daemon, only on the context. The context has them both ways.
        return _tick(context, storage_of(context, spec), spec)

    return _pool_sensor


def _watched(spec: SelectionSpec) -> tuple:
    """(folder, its partition set, the asset a new or changed file requests, by its key)."""
    return (
        ("targets", spec.targets, lambda _: spec.key("target_dataset")),
        ("shards", spec.shards, spec.shard_pass),
    )


def _tick(context: dg.SensorEvaluationContext, storage: StorageResource, spec: SelectionSpec):
    store = storage.storage()
    cursor = json.loads(context.cursor) if context.cursor else {}
    runs, partition_requests, events, removed, log = [], [], [], [], []
    for folder, partitions, first in _watched(spec):
        found = scan(store, folder, cursor.get(folder, {}))
        existing = set(context.instance.get_dynamic_partitions(partitions.name))
        for k in found.added:  # steps find the file by its key without listing the pool
            record_input(store, folder, k, found.seen[k]["name"])
        if new := [k for k in found.added if k not in existing]:
            partition_requests.append(partitions.build_add_request(new))
        todo = [
            k
            for k in found.added
            if k not in existing or not _done(context, first(k), k, found.seen[k], store, folder)
        ]
        for k in [*todo, *found.changed]:
            version = found.seen[k]["version"]
            runs.append(
                dg.RunRequest(
                    run_key=f"{folder}:{k}:{version}", partition_key=k, asset_selection=[first(k)]
                )
            )
            if folder == "shards":
                events.append(
                    dg.AssetObservation(
                        spec.key("candidate_shard"),
                        partition=k,
                        tags={"dagster/data_version": version},
                    )
                )
        if gone := [k for k in found.removed if k in existing]:
            partition_requests.append(partitions.build_delete_request(gone))
            removed += gone
        for name, why in found.rejected.items():
            context.log.warning(f"{folder}/{name} ignored: {why}")
        cursor[folder] = found.seen
        known = len(found.added) - len(todo)
        log.append(
            f"{folder}: {len(found.seen)} files, +{len(found.added)} new"
            + (f" ({known} already materialized)" if known else "")
            + f", ~{len(found.changed)} changed, -{len(gone)} removed,"
            f" {len(todo) + len(found.changed)} runs requested"
        )
    runs += _benchmarks(context, spec, partition_requests, log)
    if removed:
        runs.append(
            dg.RunRequest(
                run_key=f"removed:{','.join(removed)}:{context.cursor}",
                asset_selection=[spec.key("selected_mixture")],
            )
        )
    context.log.info("; ".join(log))
    return dg.SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=partition_requests,
        asset_events=events,
        cursor=json.dumps(cursor, sort_keys=True),
        skip_reason=None if runs or partition_requests else "nothing to do: " + "; ".join(log),
    )


def _benchmarks(context, spec: SelectionSpec, partition_requests: list, log: list) -> list:
    """The spec's built-in benchmarks as target partitions (bench__<name>), added once."""
    existing = set(context.instance.get_dynamic_partitions(spec.targets.name))
    wanted = [f"{BENCHMARK_PREFIX}{b}" for b in spec.settings.targets.benchmarks]
    if not (new := [k for k in wanted if k not in existing]):
        return []
    partition_requests.append(spec.targets.build_add_request(new))
    log.append(f"benchmarks: +{len(new)} from the spec")
    return [
        dg.RunRequest(run_key=f"benchmark:{k}", partition_key=k,
                      asset_selection=[spec.key("target_dataset")])
        for k in new
    ]  # fmt: skip


def _done(
    context: dg.SensorEvaluationContext, asset_key, key: str, seen: dict, store, folder: str
) -> bool:
    """A file the cursor has not seen whose partition exists may already be materialized from
    this very content (cursor reset, demo run). A re-added partition is always rerun. On S3
    the sensor knows an ETag and the materialization a content hash: then the file is hashed
    (once, only here)."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[key]), limit=1
    ).records
    materialization = records[0].asset_materialization if records else None
    if materialization is None:
        return False
    meta = materialization.metadata
    got = meta.get("source_version")
    if got is None:
        return False
    if got.value == seen["version"]:
        return True
    if seen["version"].startswith("etag:") and str(got.value).startswith("sha256:"):
        try:
            source = store.inputs(folder)
            sha = sha256_file(source.fs, source.path(seen["name"]))
        except FileNotFoundError:  # gone since the listing: the next tick sees it removed
            return False
        return got.value == f"sha256:{sha}"
    return False

"""Drive the graph in-process the way Dagster's daemons would: one pool_sensor tick, then
declarative-automation ticks until nothing more is requested. The demo and the tests use it;
in production `dagster dev` (or a deployment) runs the real daemons instead."""

import dagster as dg

LOG_LEVEL = "WARNING"  # the in-process runs' console log level; the instance keeps all events


def sensor_tick(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    cursor: str | None = None,
    sensor: str = "pool_sensor",
) -> tuple[str | None, list[dict]]:
    """Evaluate the pool sensor once (a named selection's: `<name>_pool_sensor`) and apply
    what it asks (partitions, observations, runs)."""
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs, resources=defs.resources
    )
    result = defs.resolve_sensor_def(sensor)(context)
    if not isinstance(result, dg.SensorResult):  # the package's sensors return one
        raise TypeError(f"{sensor} returned {type(result).__name__}, not a dg.SensorResult")
    for req in result.dynamic_partitions_requests or []:
        if isinstance(req, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
        else:
            for key in req.partition_keys:
                instance.delete_dynamic_partition(req.partitions_def_name, key)
    for event in result.asset_events or []:
        instance.report_runless_asset_event(event)
    runs = [execute(defs, instance, r) for r in result.run_requests or []]
    return result.cursor, runs


def automation_ticks(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    cursor=None,
    max_ticks: int = 10,
    sensor: str | None = None,
):
    """Evaluate the automation conditions and run what they request, until quiet; with
    `sensor` (an automation sensor's name), only the assets that sensor targets.

    Returns (cursor, runs). Like the daemon, conditions see updates relative to the previous
    tick, so keep passing the cursor along (start with one tick before any change)."""
    selection = defs.resolve_sensor_def(sensor).asset_selection if sensor else None
    runs: list[dict] = []
    for _ in range(max_ticks):
        evaluation = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=cursor, asset_selection=selection
        )
        cursor = evaluation.cursor
        requests = _requests(defs, instance, evaluation)
        if not requests:
            return cursor, runs
        runs += [execute(defs, instance, r) for r in requests]
    raise RuntimeError(f"automation still requesting runs after {max_ticks} ticks")


def _requests(defs, instance, evaluation) -> list[dg.RunRequest]:
    """Runs for the requested asset partitions, upstream first. A single-run backfill policy
    turns "every partition" into one run over the whole partition range, as the daemon does."""
    graph = defs.resolve_asset_graph()
    out = []
    for key in graph.toposorted_asset_keys:
        parts = evaluation.get_requested_partitions(key)
        if not parts:
            continue
        node = graph.get(key)
        if parts == {None}:
            out.append(dg.RunRequest(asset_selection=[key]))
            continue
        every = node.partitions_def.get_partition_keys(dynamic_partitions_store=instance)
        if node.backfill_policy and set(every) <= parts:
            out.append(
                dg.RunRequest(
                    asset_selection=[key],
                    tags={
                        "dagster/asset_partition_range_start": every[0],
                        "dagster/asset_partition_range_end": every[-1],
                    },
                )
            )
        else:
            out += [dg.RunRequest(asset_selection=[key], partition_key=p) for p in sorted(parts)]
    return out


def execute(defs: dg.Definitions, instance: dg.DagsterInstance, request: dg.RunRequest):
    """Materialize one run request in-process; failures are recorded, not raised."""
    selection = request.asset_selection or []
    result = dg.materialize(
        assets=_assets(defs),
        selection=selection,
        partition_key=request.partition_key,
        tags=dict(request.tags or {}),
        instance=instance,
        resources=defs.resources,
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": LOG_LEVEL}}}},
    )
    return {
        "assets": [k.to_user_string() for k in selection],
        "partition": request.partition_key
        or (request.tags.get("dagster/asset_partition_range_start") and "all"),
        "success": result.success,
        "run_id": result.run_id,
    }


def _assets(defs: dg.Definitions) -> list[dg.AssetsDefinition | dg.AssetSpec | dg.SourceAsset]:
    """The definitions' assets as `dg.materialize` takes them (the package makes no others)."""
    kinds = (dg.AssetsDefinition, dg.AssetSpec, dg.SourceAsset)
    return [a for a in defs.assets or [] if isinstance(a, kinds)]

"""When assets update themselves (declarative automation)."""

import dagster as dg

from nag_assets.defs.spec import SelectionSpec

_missing = dg.AutomationCondition.any_deps_missing()


def on_update(*tolerate_missing: dg.AssetKey) -> dg.AutomationCondition:
    """`eager()`, except that missing partitions of the fan-in deps named here do not block:
    one failed target or shard must not hold back every other one (the steps report what
    they left out instead). Same-partition deps must still exist."""
    eager = dg.AutomationCondition.eager()
    if not tolerate_missing:
        return eager
    keep = ~_missing.ignore(dg.AssetSelection.assets(*tolerate_missing))
    return (eager.without(~_missing) & keep).with_label(
        "eager, tolerating missing " + ", ".join(k.to_user_string() for k in tolerate_missing)
    )


def automation_sensor(
    spec: SelectionSpec, assets: list[dg.AssetsDefinition | dg.SourceAsset]
) -> dg.AutomationConditionSensorDefinition:
    """Evaluates the conditions of this selection's assets (only theirs: another selection in
    the code location has its own sensor and cursor). A request for many partitions of one
    asset becomes one backfill, which shard_scores' single-run backfill policy turns into one
    run."""
    return dg.AutomationConditionSensorDefinition(
        spec.named("nag_automation"),
        target=dg.AssetSelection.assets(*[a.key for a in assets]),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=15,
        emit_backfills=True,
    )

"""When assets update themselves (declarative automation)."""

import dagster as dg

_missing = dg.AutomationCondition.any_deps_missing()


def on_update(*tolerate_missing: str) -> dg.AutomationCondition:
    """`eager()`, except that missing partitions of the fan-in deps named here do not block:
    one failed target or shard must not hold back every other one (the steps report what
    they left out instead). Same-partition deps must still exist."""
    eager = dg.AutomationCondition.eager()
    if not tolerate_missing:
        return eager
    keep = ~_missing.ignore(dg.AssetSelection.assets(*tolerate_missing))
    return (eager.without(~_missing) & keep).with_label(
        "eager, tolerating missing " + ", ".join(tolerate_missing)
    )


# Evaluates every asset's condition; a request for many partitions of one asset becomes one
# backfill, which shard_scores' single-run backfill policy turns into one run.
automation_sensor = dg.AutomationConditionSensorDefinition(
    "nag_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=15,
    emit_backfills=True,
)

"""When assets update themselves (declarative automation).

`on_update` is `eager()` without its "no dependency partition missing" clause: a failed target
or shard must not block every other one; the steps report what they left out instead.
"""

import dagster as dg

on_update = dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())

"""Dynamic partitions: one per target set, one per candidate shard file."""

import dagster as dg

targets = dg.DynamicPartitionsDefinition(name="targets")
shards = dg.DynamicPartitionsDefinition(name="shards")

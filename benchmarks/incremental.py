"""What each kind of change costs on the demo graph: backbone forward passes and wall time.

Prints one JSON object. A fresh storage root and Dagster instance (temporary folders) get the
demo's targets (HellaSwag, ARC-Easy) and Wikipedia shards, then the real pool_sensor and
declarative automation run in-process (as in the demo) after each change:
  first          the first full materialization
  add_target     a new target file (PIQA, --examples examples)
  add_shard      a new shard file (documents the pool did not have)
  nothing        no change at all
For each: texts and tokens handed to the backbone, forward passes, seconds in the backbone,
wall seconds, and the runs launched. The backbone is loaded before the clock starts.

    python benchmarks/incremental.py [--docs 300] [--shards 3] [--examples 50] [--quick]

--quick: a tiny random model on a few documents and an in-memory Dagster instance (the
smoke test); otherwise the instance is SQLite in a temporary folder, as the demo's is.
"""

from __future__ import annotations

import json
import time

import _bench

NEW_TARGET = "piqa"


def main(argv=None) -> dict:
    args = _bench.graph_args(__doc__.split("\n\n")[0], argv, docs=300, shards=3, examples=50)
    import polars as pl

    from nag_assets.defs.driver import automation_ticks, sensor_tick
    from nag_assets.sources.wiki import load_wiki_leads, spread, write_shards

    started = time.perf_counter()
    with _bench.demo_graph(args, "nag-bench-incremental-") as (tmp, root, defs, load_s):
        per_shard = -(-args.docs // args.shards)
        leads = load_wiki_leads()
        in_pool = spread(leads, args.docs)["id"].implode()
        extra_docs = leads.filter(~pl.col("id").is_in(in_pool)).head(per_shard)

        def add_target() -> None:
            spec = {"benchmark": NEW_TARGET, "limit": args.examples}
            (root / "targets" / f"{NEW_TARGET}.json").write_text(json.dumps(spec))

        def add_shard() -> None:
            write_shards(extra_docs, root / "shards", 1, prefix="extra")

        changes = {"first": None, "add_target": add_target, "add_shard": add_shard}
        changes["nothing"] = None
        phases = {}
        with (
            _bench.dagster_instance(tmp, args.quick) as instance,
            _bench.BackboneMeter() as meter,
        ):
            auto_cursor, _ = automation_ticks(defs, instance)
            sensor_cursor = None
            for name, change in changes.items():
                if change is not None:
                    change()
                before = meter.snapshot()
                start = time.perf_counter()
                sensor_cursor, runs = sensor_tick(defs, instance, sensor_cursor)
                auto_cursor, more = automation_ticks(defs, instance, auto_cursor)
                runs += more
                wall = time.perf_counter() - start
                after = meter.snapshot()
                phase = {k: after[k] - before[k] for k in after}
                phase["backbone_s"] = round(phase["backbone_s"], 2)
                phase["wall_s"] = round(wall, 2)
                phase["runs"] = len(runs)
                phase["failed_runs"] = sum(not r["success"] for r in runs)
                phase["assets_run"] = sorted(
                    {f"{a}[{r['partition'] or '-'}]" for r in runs for a in r["assets"]}
                )
                phases[name] = phase
        dataset = root / "assets" / "target_dataset" / f"{NEW_TARGET}.parquet"
        target_texts = pl.read_parquet(dataset).height if dataset.exists() else -1
    return _bench.emit(
        {
            "benchmark": "incremental",
            "model": "tiny (quick)" if args.quick else args.model,
            "docs": args.docs,
            "shards": args.shards,
            "examples_per_target": args.examples,
            "new_shard_docs": len(extra_docs),
            "model_load_s": round(load_s, 2),
            "phases": phases,
            "checks": {
                "nothing_costs_no_forward_pass": phases["nothing"]["forward_passes"] == 0,
                "new_target_extracts_only_its_examples": (
                    phases["add_target"]["texts"] == target_texts
                ),
                "new_shard_extracts_only_its_documents": (
                    phases["add_shard"]["texts"] == len(extra_docs)
                ),
                "no_failed_runs": all(ph["failed_runs"] == 0 for ph in phases.values()),
            },
            "wall_s": round(time.perf_counter() - started, 1),
            "machine": _bench.machine(),
        }
    )


if __name__ == "__main__":
    main()

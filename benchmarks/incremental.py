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

import argparse
import json
import tempfile
import time
from pathlib import Path

import _bench

NEW_TARGET = "piqa"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=300)
    p.add_argument("--shards", type=int, default=3)
    p.add_argument("--examples", type=int, default=50)
    p.add_argument("--model", default="embedded")
    p.add_argument("--quick", action="store_true", help="tiny model, a few texts")
    args = p.parse_args(argv)
    if args.quick:
        args.docs, args.shards, args.examples = 20, 2, 6
        args.model = _bench.tiny_model_dir()
    _bench.quiet_dagster()
    import polars as pl

    from nag_assets.definitions import build_defs
    from nag_assets.defs.driver import automation_ticks, sensor_tick
    from nag_assets.defs.resources import BackboneResource, StorageResource
    from nag_assets.demo import build_demo_root
    from nag_assets.sources.wiki import load_wiki_leads, write_shards

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nag-bench-incremental-") as tmp:
        root = Path(tmp) / "root"
        build_demo_root(root, args.docs, args.shards, args.examples)
        backbone = BackboneResource(model=args.model)
        load_start = time.perf_counter()
        backbone.load()
        load_s = time.perf_counter() - load_start
        defs = build_defs(StorageResource(root=str(root)), backbone)
        per_shard = -(-args.docs // args.shards)
        extra_docs = load_wiki_leads(args.docs + per_shard).tail(per_shard)

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

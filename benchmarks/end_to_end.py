"""The demo end to end: its wall time split into backbone time and everything else.

Prints one JSON object. Runs what `python -m nag_assets.demo` runs (the demo's targets and
Wikipedia pool, one pool_sensor tick, declarative automation until quiet, the embedded
backbone) into a temporary storage root and Dagster instance, by default at half the demo's
size (--docs 1200 --examples 200 is the demo itself), and splits the wall time into
  backbone_s         inside NAG extraction (tokenizing for it, forward passes, top-K)
  other_s            everything else: Dagster runs and their bookkeeping, reading and
                     writing parquet, counting tokens, scoring, selection
with the seconds of each asset's steps (so the rest of other_s is orchestration) and
tokens per second of backbone time. The model is loaded before the clock starts.

    python benchmarks/end_to_end.py [--docs 600] [--shards 4] [--examples 100] [--quick]

--quick: a tiny random model on a few documents and an in-memory Dagster instance (the
smoke test); otherwise the instance is SQLite in a temporary folder, as the demo's is.
"""

from __future__ import annotations

import time
from collections import defaultdict

import _bench


def main(argv=None) -> dict:
    args = _bench.graph_args(__doc__.split("\n\n")[0], argv, docs=600, shards=4, examples=100)
    from nag_assets.defs.driver import automation_ticks, sensor_tick

    started = time.perf_counter()
    with (
        _bench.demo_graph(args, "nag-bench-e2e-") as (tmp, _root, defs, load_s),
        _bench.dagster_instance(tmp, args.quick) as instance,
        _bench.BackboneMeter() as meter,
    ):
        cursor, _ = automation_ticks(defs, instance)
        start = time.perf_counter()
        _, runs = sensor_tick(defs, instance)
        _, more = automation_ticks(defs, instance, cursor)
        runs += more
        wall = time.perf_counter() - start
        steps: dict[str, float] = defaultdict(float)
        for r in runs:
            for s in instance.get_run_step_stats(r["run_id"]):
                if s.end_time and s.start_time:
                    steps[s.step_key] += s.end_time - s.start_time
    used = meter.snapshot()
    backbone_s = used["backbone_s"]
    step_s = sum(steps.values())
    return _bench.emit(
        {
            "benchmark": "end_to_end",
            "model": "tiny (quick)" if args.quick else args.model,
            "docs": args.docs,
            "shards": args.shards,
            "examples_per_target": args.examples,
            "model_load_s": round(load_s, 2),
            "wall_s": round(wall, 2),
            "backbone_s": round(backbone_s, 3),
            "other_s": round(wall - backbone_s, 2),
            "backbone_share": round(backbone_s / wall, 3),
            "texts": used["texts"],
            "tokens": used["tokens"],
            "forward_passes": used["forward_passes"],
            "backbone_tokens_per_s": round(used["tokens"] / max(backbone_s, 1e-9), 1),
            "runs": len(runs),
            "failed_runs": sum(not r["success"] for r in runs),
            "step_s": {k: round(v, 1) for k, v in sorted(steps.items())},
            "orchestration_s": round(wall - step_s, 1),
            "total_s": round(time.perf_counter() - started, 1),
            "machine": _bench.machine(),
        }
    )


if __name__ == "__main__":
    main()

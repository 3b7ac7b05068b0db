"""Materialize a selection without the UI, the way the daemons would: one tick of the pool
sensor, then declarative automation until nothing more is asked, in the Dagster instance of
DAGSTER_HOME (default `.dagster_home/` here), which `dagster dev` then shows.

    NAG_SPEC=selection.yaml python -m nag_assets.cli materialize

A rerun with nothing changed does no work; after new or changed files it runs what they need.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

# One backbone step at a time (the `backbone` pool): right for one GPU or a small CPU box.
DAGSTER_YAML = "telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 1\n"


def dagster_home(default: Path) -> Path:
    """DAGSTER_HOME (set to `default` if unset), with a dagster.yaml if it has none."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(default)))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(DAGSTER_YAML)
    return home


def materialize(defs) -> list[dict]:
    """The pool sensor once, then automation until quiet: every run made, in order."""
    import dagster as dg

    from nag_assets.defs.driver import automation_ticks, sensor_tick

    with dg.DagsterInstance.get() as instance:
        cursor, runs = automation_ticks(defs, instance)
        _, more = sensor_tick(defs, instance)
        runs += more
        _, more = automation_ticks(defs, instance, cursor)
    return runs + more


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["materialize"])
    p.add_argument("--spec", help="the selection spec (default: NAG_SPEC)")
    args = p.parse_args(argv)
    home = dagster_home(Path.cwd() / ".dagster_home")
    warnings.filterwarnings("ignore")
    from nag_assets.definitions import build_defs, this_repository

    selection = this_repository(args.spec)
    start = time.monotonic()
    runs = materialize(build_defs(selection=selection))
    took = time.monotonic() - start
    for r in runs:
        where = f"[{r['partition']}]" if r["partition"] else ""
        print(f"{'ok ' if r['success'] else 'FAILED'} {', '.join(r['assets'])}{where}")
    print(json.dumps(_summary(selection, runs, took, home), indent=1))
    if any(not r["success"] for r in runs):
        raise SystemExit(1)


def _summary(selection, runs: list[dict], took: float, home: Path) -> dict:
    from nag_assets.pipeline.layout import MIXTURE_POINTER, MIXTURE_VERSIONS, read_json

    store = selection.storage_resource().storage()
    pointer = read_json(store, MIXTURE_VERSIONS, MIXTURE_POINTER) or {"facts": {}}
    targets = pointer["facts"].get("targets", {})
    return {
        "runs": len(runs),
        "failed": sum(not r["success"] for r in runs),
        "seconds": round(took, 1),
        "dagster_home": str(home),
        "corpus": store.url("selected_mixture"),
        "fraction": pointer["facts"].get("fraction"),
        "targets": {
            t: {k: f[k] for k in ("documents", "tokens", "budget")} for t, f in targets.items()
        },
    }


if __name__ == "__main__":
    main()

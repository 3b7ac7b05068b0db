"""What the daemon did, read back from the Postgres instance: every run with its origin, its
steps' start and end, and what it materialized."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

BACKBONE_STEPS = ("target_nag", "shard_nag")  # the assets in pool `backbone`
ACTIVE = {
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
}
_EVENTS = {
    dg.DagsterEventType.STEP_START,
    dg.DagsterEventType.STEP_SUCCESS,
    dg.DagsterEventType.STEP_FAILURE,
    dg.DagsterEventType.ASSET_MATERIALIZATION,
}


@dataclass(frozen=True)
class Step:
    key: str
    start: float
    end: float | None  # None: the step never finished (its worker was killed)


@dataclass(frozen=True)
class Run:
    run_id: str
    status: dg.DagsterRunStatus
    assets: tuple[str, ...]
    partition: str | None  # one partition, "first..last" for a range, None unpartitioned
    tags: dict
    parent_run_id: str | None  # the run this one re-executes (a retry)
    created: float
    ended: float | None
    steps: tuple[Step, ...]
    materialized: tuple[tuple[str, str | None], ...]  # (asset, partition), in order

    @property
    def origin(self) -> str:
        """Who asked for it: 'retry' (Dagster's run retries, which copy the parent's tags), or
        the sensor's name, or 'manual'."""
        if "dagster/retry_number" in self.tags:
            return "retry"
        return self.tags.get("dagster/sensor_name") or (
            "nag_automation" if "dagster/backfill" in self.tags else "manual"
        )


def runs(instance: dg.DagsterInstance) -> list[Run]:
    """Every run of the instance, oldest first."""
    out = []
    for record in instance.get_run_records():
        run = record.dagster_run
        tags = dict(run.tags)
        start, end = (
            tags.get("dagster/asset_partition_range_start"),
            tags.get("dagster/asset_partition_range_end"),
        )
        partition = tags.get("dagster/partition") or (start and f"{start}..{end}")
        steps: dict[str, list] = {}
        materialized = []
        for entry in instance.all_logs(run.run_id, of_type=_EVENTS):
            event = entry.dagster_event
            if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
                mat = event.step_materialization_data.materialization
                materialized.append((mat.asset_key.to_user_string(), mat.partition))
            elif event.event_type == dg.DagsterEventType.STEP_START:
                steps[event.step_key] = [entry.timestamp, None]
            else:
                steps.setdefault(event.step_key, [entry.timestamp, None])[1] = entry.timestamp
        out.append(
            Run(
                run_id=run.run_id,
                status=run.status,
                assets=tuple(sorted(k.to_user_string() for k in run.asset_selection or [])),
                partition=partition,
                tags=tags,
                parent_run_id=run.parent_run_id,
                created=record.create_timestamp.timestamp(),
                ended=record.end_time,
                steps=tuple(Step(k, s, e) for k, (s, e) in steps.items()),
                materialized=tuple(materialized),
            )
        )
    return sorted(out, key=lambda r: r.created)


def backbone_intervals(all_runs: list[Run]) -> list[tuple[float, float, str]]:
    """(start, end, what) of every backbone step; a step whose worker died ends with its run."""
    out = []
    for run in all_runs:
        for step in run.steps:
            if step.key in BACKBONE_STEPS:
                end = step.end if step.end is not None else run.ended
                assert end is not None, f"{run.run_id} {step.key} has not ended"
                out.append((step.start, end, f"{step.key}[{run.partition}] {run.run_id[:8]}"))
    return sorted(out)


def current_facts(root: Path) -> dict | None:
    """The facts of the mixture in force (CURRENT.json), if there is one."""
    pointer = root / "mixture_versions" / "CURRENT.json"
    return json.loads(pointer.read_text())["facts"] if pointer.exists() else None

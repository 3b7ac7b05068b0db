"""Helpers for the asset-graph tests: a storage root with shards and targets, the graph driven
in-process over it, and an independent recomputation of the expected selection."""

from __future__ import annotations

import hashlib
import json
import logging
from fractions import Fraction
from pathlib import Path

import dagster as dg
import polars as pl

from nag_assets.component import NagSelection
from nag_assets.definitions import build_defs
from nag_assets.defs.driver import automation_ticks, sensor_tick
from nag_assets.defs.resources import BackboneResource, StorageResource
from nag_assets.sources.wiki import write_shards

TOP_K = 4
FRACTION = 0.2
ARC_SPEC = {"benchmark": "arc_easy", "limit": 20}
ARC_EXAMPLES = 20


def build_root(
    root: Path,
    pool: pl.DataFrame,
    shards: int = 3,
    docs_per_shard: int = 30,
    targets: dict[str, dict | list[str]] | None = None,
) -> Path:
    """`targets/` (a dict is a JSON benchmark spec, a list the texts of a JSONL file) and
    `shards/wiki-NNN.parquet` holding the first shards * docs_per_shard documents of `pool`."""
    (root / "targets").mkdir(parents=True, exist_ok=True)
    for name, spec in (targets if targets is not None else {"arc_easy": ARC_SPEC}).items():
        if isinstance(spec, dict):
            (root / "targets" / f"{name}.json").write_text(json.dumps(spec))
        else:
            write_jsonl(root / "targets" / f"{name}.jsonl", spec)
    write_shards(pool.head(shards * docs_per_shard), root / "shards", shards)
    return root


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def science_texts(n: int, topic: str = "water") -> list[str]:
    """Distinct short target texts (no blank ones, so every one is a usable example)."""
    return [
        f"Question {i} about {topic}: what happens to {topic} at {10 * i} degrees? "
        f"Answer: it changes state number {i}."
        for i in range(n)
    ]


def file_version(path: Path) -> str:
    """What the sensor should call a local file's content version."""
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:32]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append((record.levelno, record.getMessage()))


class Graph:
    """The asset graph over one root and one instance, driven like the daemons would."""

    def __init__(
        self,
        root: Path,
        model_dir: Path,
        instance: dg.DagsterInstance,
        selection: NagSelection | None = None,
        storage: StorageResource | None = None,
    ):
        self.root = root
        self.instance = instance
        storage = storage or StorageResource(root=str(root))
        self.storage = storage.storage()
        self.name = selection.name if selection else ""
        # the paper's preset: these graphs' counts and checks are those of the paper's method
        resources = (
            storage,
            BackboneResource(model=str(model_dir), preset="paper", top_k=TOP_K),
        )  # `selection`: another unnamed selection's settings (e.g. scorer: distilled)
        self.defs = selection.definitions(*resources) if selection else build_defs(*resources)
        self.sensor_cursor: str | None = None
        # The automation cursor is established before any change, as the driver asks.
        self.auto_cursor, runs = automation_ticks(self.defs, instance)
        assert runs == []
        self.runs: list[dict] = []

    def step(self) -> tuple[list[dict], list[dict]]:
        """One sensor tick then automation until quiet: (sensor runs, automation runs)."""
        self.sensor_cursor, sensor_runs = sensor_tick(self.defs, self.instance, self.sensor_cursor)
        self.auto_cursor, auto_runs = automation_ticks(self.defs, self.instance, self.auto_cursor)
        self.runs += sensor_runs + auto_runs
        return sensor_runs, auto_runs

    def evaluate_sensor(self, cursor: str | None = None) -> tuple[dg.SensorResult, list]:
        """pool_sensor's result and log messages, without applying anything."""
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=self.sensor_cursor if cursor is None else cursor,
            definitions=self.defs,
            resources=self.defs.resources,
        )
        collect = _Collect()
        context.log.addHandler(collect)
        try:
            result = self.defs.resolve_sensor_def("pool_sensor")(context)
        finally:
            context.log.removeHandler(collect)
        return result, collect.messages

    def evaluate_automation(self) -> dg.AutomationResult:
        """One automation evaluation that advances the cursor (nothing is executed)."""
        result = dg.evaluate_automation_conditions(
            defs=self.defs, instance=self.instance, cursor=self.auto_cursor
        )
        self.auto_cursor = result.cursor
        return result

    def materialize(self, asset: str, partition: str | None = None) -> dg.ExecuteInProcessResult:
        result = dg.materialize(
            assets=list(self.defs.assets or []),
            selection=[dg.AssetKey(asset)],
            partition_key=partition,
            instance=self.instance,
            resources=self.defs.resources,
        )
        assert result.success
        return result

    def partitions(self, name: str) -> list[str]:
        return sorted(self.instance.get_dynamic_partitions(name))

    def latest_metadata(self, asset: str, partition: str | None = None) -> dict:
        records = self.instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey(asset),
                asset_partitions=[partition] if partition is not None else None,
            ),
            limit=1,
        ).records
        assert records, f"{asset}[{partition}] was never materialized"
        return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}

    def check_evaluations(self, runs: list[dict] | None = None) -> dict[tuple[str, str], list]:
        """(asset, check name) -> the `passed` of every evaluation in the given runs."""
        out: dict[tuple[str, str], list] = {}
        for run in self.runs if runs is None else runs:
            for event in self.instance.all_logs(
                run["run_id"], of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
            ):
                evaluation = event.dagster_event.event_specific_data
                key = (evaluation.asset_key.to_user_string(), evaluation.check_name)
                out.setdefault(key, []).append(evaluation.passed)
        return out


def requested(result: dg.AutomationResult, asset: str) -> set:
    return set(result.get_requested_partitions(dg.AssetKey(asset)))


def read_scores(root: Path, shards: list[str] | None = None) -> pl.DataFrame:
    """The stored shard_scores of the given shards (default: every file), with a shard column."""
    folder = root / "assets" / "shard_scores"
    names = shards if shards is not None else sorted(p.stem for p in folder.glob("*.parquet"))
    return pl.concat(
        [pl.read_parquet(folder / f"{s}.parquet").with_columns(shard=pl.lit(s)) for s in names],
        how="vertical",
    )


def expected_selection(
    scores: pl.DataFrame, targets: list[str], fraction: float = FRACTION
) -> set[tuple[str, str]]:
    """Per target: rank by (score desc, id asc), keep the prefix whose cumulative tokens stay
    within floor(fraction * pool tokens / targets). Computed without the library's selector."""
    assert (scores["tokens"] > 0).all(), "the test pool should have no empty documents"
    total = int(scores["tokens"].sum())
    share = Fraction(str(fraction))  # 0.2 -> 1/5 exactly
    budget = (total * share.numerator) // (share.denominator * len(targets))  # exact floor
    chosen = set()
    for t in targets:
        ranked = scores.sort([t, "id"], descending=[True, False])
        used = 0
        for doc_id, tokens in zip(ranked["id"].to_list(), ranked["tokens"].to_list()):
            if used + tokens > budget:
                break
            used += tokens
            chosen.add((t, doc_id))
    return chosen


def pairs(mix: pl.DataFrame) -> set[tuple[str, str]]:
    return set(zip(mix["target"].to_list(), mix["id"].to_list()))

"""selected_mixture: the chosen documents per target under the token budget, with checks."""

import dagster as dg
import polars as pl
from pydantic import Field

from nag_assets.defs.automation import on_update
from nag_assets.defs.plots import score_plot
from nag_assets.defs.resources import StorageResource
from nag_assets.defs.shards import shard_scores
from nag_assets.pipeline import mixture as steps
from nag_assets.pipeline.common import STEP_CODE_VERSION
from nag_assets.pipeline.shards import SCORES


class MixtureConfig(dg.Config):
    fraction: float = Field(default=0.2, description="share of all pool tokens to select, (0, 1]")
    weights: dict[str, float] = Field(
        default_factory=dict, description="per-target weight of the budget (default 1 each)"
    )
    dedup: bool = Field(
        default=False,
        description="keep a document once even if several "
        "targets chose it (else once per target, as in the paper)",
    )


@dg.asset(
    deps=[dg.AssetDep(shard_scores, partition_mapping=dg.AllPartitionMapping())],
    group_name="mixture",
    kinds={"parquet"},
    code_version=STEP_CODE_VERSION,
    automation_condition=on_update("shard_scores"),
    check_specs=[
        dg.AssetCheckSpec("budget_holds", asset="selected_mixture"),
        dg.AssetCheckSpec("rows_point_to_documents", asset="selected_mixture"),
    ],
    description="The selected corpus: per target, the best-scoring documents filling its "
    "share of the token budget, as parquet with text and provenance (target, score, shard).",
)
def selected_mixture(
    context: dg.AssetExecutionContext, config: MixtureConfig, storage: StorageResource
) -> dg.MaterializeResult:
    store = storage.storage()
    targets = sorted(context.instance.get_dynamic_partitions("targets"))
    shards = sorted(context.instance.get_dynamic_partitions("shards"))
    settings = steps.MixtureSettings(config.fraction, dict(config.weights), config.dedup)
    step = steps.selected_mixture(store, shards, targets, settings)
    facts = step.facts
    for s, why in facts["shards_left_out"].items():
        context.log.warning(f"shard {s} left out of the mixture: {why}")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(step.version),
        metadata=_metadata(store, facts, step.skipped),
        check_results=_checks(store, facts),
    )


def _metadata(store, facts: dict, skipped: bool) -> dict:
    rows = [
        dg.TableRecord(
            {
                "target": t,
                "documents": f["documents"],
                "tokens": f["tokens"],
                "budget": f["budget"],
                "share_of_budget": round(f["tokens"] / max(f["budget"], 1), 4),
                "cutoff_score": -1.0 if f["cutoff_score"] is None else f["cutoff_score"],
            }
        )
        for t, f in facts["targets"].items()
    ]
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn("target", "string"),
            dg.TableColumn("documents", "int"),
            dg.TableColumn("tokens", "int"),
            dg.TableColumn("budget", "int"),
            dg.TableColumn("share_of_budget", "float"),
            dg.TableColumn("cutoff_score", "float"),
        ]
    )
    hists = dict(zip(facts["targets"], facts["histogram"]))
    cutoffs = {t: f["cutoff_score"] for t, f in facts["targets"].items()}
    return {
        "per_target": dg.MetadataValue.table(rows, schema),
        "score_distributions": score_plot(hists, cutoffs),
        "documents": sum(f["documents"] for f in facts["targets"].values()),
        "tokens": sum(f["tokens"] for f in facts["targets"].values()),
        "pool_tokens": facts["pool_tokens"],
        "chosen_by_several_targets": facts["chosen_by_several"],
        "shard_versions": dg.MetadataValue.json(facts["shards"]),
        "target_versions": dg.MetadataValue.json(facts["target_versions"]),
        "shards_left_out": dg.MetadataValue.json(facts["shards_left_out"]),
        "settings": dg.MetadataValue.json({k: facts[k] for k in ("fraction", "weights", "dedup")}),
        "path": dg.MetadataValue.path(store.url(steps.FOLDER, steps.POINTER)),
        "skipped_unchanged": skipped,
    }


def _checks(store, facts: dict) -> list[dg.AssetCheckResult]:
    mix = (
        steps.read_mixture(store)
        if facts["files"]
        else pl.DataFrame({"target": [], "tokens": [], "text": [], "shard": [], "id": []})
    )
    used = mix.group_by("target").agg(pl.col("tokens").sum()) if mix.height else None
    over = {}
    for t, f in facts["targets"].items():
        got = 0 if used is None else int(used.filter(pl.col("target") == t)["tokens"].sum())
        if got > f["budget"]:
            over[t] = {"tokens": got, "budget": f["budget"]}
    bad_rows = 0
    for shard in mix["shard"].unique().to_list() if mix.height else []:
        ids = set(store.read_parquet(SCORES, f"{shard}.parquet")["id"].to_list())
        part = mix.filter(pl.col("shard") == shard)
        bad_rows += sum(1 for i, t in zip(part["id"], part["text"]) if i not in ids or not t)
    return [
        dg.AssetCheckResult(
            check_name="budget_holds",
            passed=not over,
            metadata={"over_budget": dg.MetadataValue.json(over)},
        ),
        dg.AssetCheckResult(
            check_name="rows_point_to_documents",
            passed=bad_rows == 0,
            metadata={"bad_rows": bad_rows, "rows": mix.height},
        ),
    ]

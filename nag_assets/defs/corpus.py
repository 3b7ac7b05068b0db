"""mixture_corpus: the chosen documents' text and columns, written from the selection's
manifest shard by shard, in parallel, on the cadence the spec sets."""

import dagster as dg

from nag_assets.defs.common import executor_of, storage_of
from nag_assets.defs.spec import SelectionSpec
from nag_assets.executors.maps import executor_map
from nag_assets.pipeline import mixture as steps
from nag_assets.pipeline.layout import read_json
from nag_assets.pipeline.picks import picks_markdown, target_picks

MIXTURE_CORPUS_DOC = """The selected corpus: the chosen documents with their text and provenance
(target, score, shard and the shard's own columns), one parquet part per shard, written from
the selection in force (`selected_mixture`'s manifest) by the executor in force (threads here,
or Ray tasks). A shard whose chosen rows did not change is linked from the part cache, not
copied again. `selected_mixture/` holds exactly the parts of the corpus in force (read it with
one line of polars, pandas or HF `datasets`).

Its cadence is the spec's `mixture.corpus`: eager (after each new selection), a cron schedule
(pools whose shards keep arriving), or on demand. `manifest_version` says which selection it was
written from; the UI marks this asset stale while the selection is newer. `picks_<target>`: the
top documents and those at the cut-off (text preview, the shard's title), and for NAG which
layers and neurons gave the top ones their score."""


def corpus_asset(spec: SelectionSpec) -> dg.AssetsDefinition:
    """mixture_corpus of one selection."""
    key = spec.key("mixture_corpus")

    @dg.asset(
        key=key,
        deps=[spec.key("selected_mixture")],
        group_name=spec.named("selection"),
        kinds={"polars", "parquet", spec.storage_kind},
        automation_condition=_cadence(spec.settings.mixture.corpus),
        required_resource_keys={spec.storage_key, spec.executor_key},
        check_specs=[
            dg.AssetCheckSpec(
                "rows_point_to_documents",
                asset=key,
                description="Every row is a scored document of its shard, with its text.",
            )
        ],
        description=MIXTURE_CORPUS_DOC,
    )
    def mixture_corpus(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return _mixture_corpus(context, spec)

    return mixture_corpus


def _cadence(corpus: str) -> dg.AutomationCondition | None:
    if corpus == "on_demand":
        return None
    if corpus == "eager":
        return dg.AutomationCondition.eager()
    return dg.AutomationCondition.on_cron(corpus)


def _mixture_corpus(context: dg.AssetExecutionContext, spec: SelectionSpec) -> dg.MaterializeResult:
    store = storage_of(context, spec).storage()
    executor = executor_of(context, spec).settings()
    workers = spec.settings.mixture.corpus_workers
    step = steps.write_corpus(store, map_fn=executor_map(executor, workers))
    context.log.info(f"mixture_corpus: {step.facts}")
    found = steps.check_mixture(
        store, (read_json(store, steps.FOLDER, steps.POINTER) or {})["facts"]
    )
    meta = {
        "manifest_version": step.version,
        "parts": step.facts["parts"],
        "parts_reused": step.facts["reused"],
        "rows": found.rows,
        "path": dg.MetadataValue.path(store.url(steps.CORPUS)),
        "skipped_unchanged": step.skipped,
    }
    if "seconds" in step.facts:
        meta["seconds"] = step.facts["seconds"]
    if found.rows:  # judge the selection by eye: top documents, the cut-off, and why
        for t, picks in target_picks(store).items():
            meta[f"picks_{t}"] = dg.MetadataValue.md(picks_markdown(picks))
    check = dg.AssetCheckResult(
        check_name="rows_point_to_documents",
        passed=found.bad_rows == 0,
        metadata={"bad_rows": found.bad_rows, "rows": found.rows},
    )
    return dg.MaterializeResult(
        data_version=dg.DataVersion(step.version), metadata=meta, check_results=[check]
    )

"""selected_mixture: the chosen documents per target under the token budget, with checks."""

from urllib.parse import quote

import dagster as dg

from nag_assets.defs.automation import on_update
from nag_assets.defs.common import launchpad_config, resources
from nag_assets.defs.plots import score_plot
from nag_assets.defs.spec import SelectionSpec
from nag_assets.pipeline import mixture as steps
from nag_assets.pipeline import provenance
from nag_assets.pipeline.common import STEP_CODE_VERSION
from nag_assets.settings import MixtureSettings

SELECTED_MIXTURE_DOC = """The selection: per target, the best-scoring documents that fit its share
of the token budget, as a manifest computed from the score tables alone (id, target, score,
shard, tokens per chosen document: `mixture_versions/<version>.manifest/`, named by
`mixture_versions/CURRENT.json`). Its cost grows with the number of documents, not their text;
`mixture_corpus` then writes the chosen documents' text (`selected_mixture/`).

What was picked and why, in the latest materialization below: `per_target` documents, tokens,
budget and score cut-off per target; `score_distributions` (open it) each target's score
distribution over the pool with its cut-off, picked documents in orange; `chosen_by_several`
documents more than one target picked (the first 20; `chosen_by_several_n` counts them all);
`inputs` links to the exact `target_nag` and `shard_nag` partitions and data versions used;
`settings` the spec's mixture settings that made it.
Budget fraction, per-target weights, dedup and the ranker come from the selection spec (the
component's `mixture:`), for automation and manual runs alike; to try other values, run
`mixture_preview`, which writes beside this selection and never replaces it."""

MIXTURE_PREVIEW_DOC = """On demand: the selection the spec would give with other mixture settings
(Materialize > Open launchpad: fraction, tokens, weights, dedup, ranker, seed, quality; each
defaults to the spec's value; `differs_from_spec` lists what the preview changed). Written
under `previews/<version>/`, beside the selection in force, which it never replaces; the last
5 previews are kept. To make a preview the selection, put its settings in the spec."""


def mixture_asset(spec: SelectionSpec) -> dg.AssetsDefinition:
    """selected_mixture of one selection, made with the spec's mixture settings only."""
    key = spec.key("selected_mixture")

    @dg.asset(
        key=key,
        deps=[dg.AssetDep(spec.key("shard_scores"), partition_mapping=dg.AllPartitionMapping())],
        group_name=spec.named("selection"),
        kinds={"polars", "parquet", spec.storage_kind},
        code_version=STEP_CODE_VERSION,
        automation_condition=on_update(spec.key("shard_scores")),
        required_resource_keys={spec.storage_key, spec.backbone_key},
        config_schema={},  # the spec only: run config is refused, never silently ignored
        check_specs=[
            dg.AssetCheckSpec(
                "budget_holds",
                asset=key,
                description="No target's documents exceed its share of the token budget.",
            ),
        ],
        description=SELECTED_MIXTURE_DOC,
    )
    def selected_mixture(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return _run(context, spec.settings.mixture, spec, preview=False)

    return selected_mixture


def preview_asset(spec: SelectionSpec) -> dg.AssetsDefinition:
    """mixture_preview: the spec's selection with other mixture settings, written apart."""
    config_cls = launchpad_config(spec.settings.mixture)

    @dg.asset(
        key=spec.key("mixture_preview"),
        deps=[dg.AssetDep(spec.key("shard_scores"), partition_mapping=dg.AllPartitionMapping())],
        group_name=spec.named("selection"),
        kinds={"polars", "parquet", spec.storage_kind},
        required_resource_keys={spec.storage_key, spec.backbone_key},
        description=MIXTURE_PREVIEW_DOC,
    )
    def mixture_preview(
        context: dg.AssetExecutionContext,
        config: config_cls,  # type: ignore[valid-type]  # made at run time: Dagster reads it
    ) -> dg.MaterializeResult:
        settings = MixtureSettings(**config.model_dump())  # type: ignore[attr-defined]
        return _run(context, settings, spec, preview=True)

    return mixture_preview


def _run(
    context: dg.AssetExecutionContext,
    settings: MixtureSettings,
    spec: SelectionSpec,
    preview: bool,
) -> dg.MaterializeResult:
    storage, backbone = resources(context, spec)
    store = storage.storage()
    targets = sorted(context.instance.get_dynamic_partitions(spec.targets.name))
    shards = sorted(context.instance.get_dynamic_partitions(spec.shards.name))
    step = steps.selected_mixture(
        store, shards, targets, settings, backbone=backbone.load, preview=preview, copy=False
    )  # the selection only: mixture_corpus writes its text
    facts = step.facts
    for s, why in facts["shards_left_out"].items():
        context.log.warning(f"shard {s} left out of the mixture: {why}")
    meta = _metadata(store, facts, step.skipped, spec)
    meta["settings"] = dg.MetadataValue.json(settings.model_dump())  # what made this selection
    meta["version"] = step.version
    if preview:
        meta["path"] = dg.MetadataValue.path(store.url(steps.PREVIEWS, step.version))
        meta["differs_from_spec"] = dg.MetadataValue.json(_differences(settings, spec))
        return dg.MaterializeResult(data_version=dg.DataVersion(step.version), metadata=meta)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(step.version),
        metadata=meta,
        check_results=_checks(store, facts),
    )


def _differences(settings: MixtureSettings, spec: SelectionSpec) -> dict:
    """The preview's settings that differ from the spec's: {name: [spec's, preview's]}."""
    ours, theirs = settings.model_dump(), spec.settings.mixture.model_dump()
    return {k: [theirs[k], v] for k, v in ours.items() if theirs[k] != v}


def _metadata(store, facts: dict, skipped: bool, spec: SelectionSpec) -> dict:
    per_target = facts["targets"]
    hists = dict(zip(per_target, facts["histogram"]))
    cutoffs = {t: f["cutoff_score"] for t, f in per_target.items()}
    picked = {t: (f["documents"], f["tokens"]) for t, f in per_target.items()}
    shard_meta = provenance.used_score_footers(store, facts)
    meta = {
        "per_target": _per_target_table(per_target),
        "score_distributions": score_plot(hists, cutoffs, picked),
        "documents": sum(f["documents"] for f in per_target.values()),
        "tokens": sum(f["tokens"] for f in per_target.values()),
        "pool_tokens": facts["pool_tokens"],
        "chosen_by_several_n": facts["chosen_by_several"],
        "chosen_by_several": _several_table(store, facts),
        "inputs": dg.MetadataValue.md(_inputs_md(facts, shard_meta, spec)),
        "shards_left_out": dg.MetadataValue.json(facts["shards_left_out"]),
        "ranker": facts.get("ranker", "nag"),  # what ranked the documents
        "scorer": spec.scoring.scorer,  # what made shard_scores: nag, or distilled
        "input_versions": dg.MetadataValue.json(_input_versions(facts, shard_meta)),
        "path": dg.MetadataValue.path(store.url(steps.CORPUS)),
        "skipped_unchanged": skipped,
    }
    if facts.get("ranker") == "random":
        meta["ranker_seed"] = facts["seed"]
    shared_ids = facts.get("ids_in_several_shards", {})
    if shared_ids.get("count"):  # the same id in two shards: two documents, worth a look
        meta["ids_in_several_shards"] = dg.MetadataValue.json(shared_ids)
    return meta


def _per_target_table(per_target: dict) -> dg.MetadataValue:
    total_budget = sum(f["budget"] for f in per_target.values()) or 1
    rows = [
        dg.TableRecord(
            {
                "target": t,
                "docs": f["documents"],
                "tokens": f["tokens"],
                "budget": f["budget"],
                "share": f"{f['budget'] / total_budget:.0%}",
                "filled": f"{f['tokens'] / max(f['budget'], 1):.0%}",
                "cut-off": "-" if f["cutoff_score"] is None else f"{f['cutoff_score']:.4f}",
            }
        )
        for t, f in per_target.items()
    ]
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn("target", "string", description="target partition"),
            dg.TableColumn("docs", "int", description="documents picked"),
            dg.TableColumn("tokens", "int", description="their tokens"),
            dg.TableColumn("budget", "int", description="the target's token budget"),
            dg.TableColumn("share", "string", description="its share of the whole budget"),
            dg.TableColumn("filled", "string", description="tokens / budget"),
            dg.TableColumn("cut-off", "string", description="lowest score picked"),
        ]
    )
    return dg.MetadataValue.table(rows, schema)


def _several_table(store, facts: dict) -> dg.MetadataValue:
    """The documents more than one target picked, with their score against each target."""
    targets = list(facts["targets"])
    rows = [
        dg.TableRecord(
            {
                "shard": shard,
                "id": doc_id,
                "chosen_by": ", ".join(chosen),
                **{t: f"{scores.get(t, float('nan')):.4f}" for t in targets},
            }
        )
        for shard, doc_id, chosen, scores in provenance.several_scores(store, facts)
    ]
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn("shard", "string"),
            dg.TableColumn("id", "string"),
            dg.TableColumn("chosen_by", "string", description="targets that picked it"),
            *[dg.TableColumn(t, "string", description=f"score against {t}") for t in targets],
        ]
    )
    return dg.MetadataValue.table(rows, schema)


def partition_link(asset: str, key: str) -> str:
    return f"../assets/{asset}?view=partitions&partition={quote(key)}"


def _inputs_md(facts: dict, shard_meta: dict[str, dict], spec: SelectionSpec) -> str:
    """A table linking to the target_nag and shard_nag partitions used, with the data version
    of each (what their materializations recorded). Links are relative (`../assets/...`), so
    they resolve from the asset and run pages, under any `--path-prefix`."""

    def row(asset: str, key: str, version: str | None) -> str:
        link = f"[{key}]({partition_link(asset, key)})"
        return f"| {asset} | {link} | `{version or '?'}` |"

    target_nag, shard_nag = spec.link_name("target_nag"), spec.link_name("shard_nag")
    rows = [row(target_nag, t, v) for t, v in facts["target_versions"].items()]
    if spec.scoring.distilled:  # no shard_nag: the scorers and the score tables they wrote
        scorer, scores = spec.link_name("distilled_scorer"), spec.link_name("shard_scores")
        rows += [row(scorer, t, v) for t, v in _scorer_versions(shard_meta).items()]
        rows += [row(scores, s, v) for s, v in facts["shards"].items()]
    else:
        rows += [row(shard_nag, s, m.get("shard_nag_version")) for s, m in shard_meta.items()]
    return "| asset | partition | data version |\n|---|---|---|\n" + "\n".join(rows)


def _scorer_versions(shard_meta: dict[str, dict]) -> dict:
    """target -> distilled_scorer version the shards were scored with (one, as the mixture
    uses only shards scored by the scorers in force)."""
    return next((m["scorer_versions"] for m in shard_meta.values() if "scorer_versions" in m), {})


def _input_versions(facts: dict, shard_meta: dict[str, dict]) -> dict:
    scorers = _scorer_versions(shard_meta)
    return {
        "target_nag": facts["target_versions"],
        **({"distilled_scorer": scorers} if scorers else {}),
        "shard_nag": {s: m.get("shard_nag_version") for s, m in shard_meta.items()},
        "shard_scores_file": facts["shards"],
        "shard_file_sha256": {s: m.get("sha256") for s, m in shard_meta.items()},
    }


def _checks(store, facts: dict) -> list[dg.AssetCheckResult]:
    over = steps.check_budget(store, facts)
    return [
        dg.AssetCheckResult(
            check_name="budget_holds",
            passed=not over,
            metadata={"over_budget": dg.MetadataValue.json(over)},
        )
    ]

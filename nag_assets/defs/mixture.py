"""selected_mixture: the chosen documents per target under the token budget, with checks."""

from typing import Literal
from urllib.parse import quote

import dagster as dg
import polars as pl
from pydantic import Field

from nag_assets.defs.automation import on_update
from nag_assets.defs.common import resources, with_defaults
from nag_assets.defs.plots import score_plot
from nag_assets.defs.resources import BackboneResource, StorageResource
from nag_assets.defs.spec import SelectionSpec
from nag_assets.pipeline import mixture as steps
from nag_assets.pipeline.common import STEP_CODE_VERSION
from nag_assets.pipeline.layout import SHARD_SCORES, ShardScoresFooter, table
from nag_assets.pipeline.picks import picks_markdown, target_picks
from nag_assets.rankers import DEFAULT, DEFAULT_HYBRID_WEIGHT, names

RankerName = Literal[names()]  # every ranker of the registry, as a choice in the launchpad


class MixtureConfig(dg.Config):
    """Set in the launchpad (Materialize > Open launchpad) under ops.selected_mixture.config."""

    fraction: float = Field(
        default=0.2,
        description="Token budget: this share of all pool tokens is selected, in (0, 1]. "
        "The budget is split between targets by weight.",
    )
    weights: dict[str, float] = Field(
        default={},
        description="Per-target weight of the budget, e.g. {hellaswag: 2, arc_easy: 1}; a "
        "target not named weighs 1 (default: equal shares).",
    )
    dedup: bool = Field(
        default=False,
        description="Keep a document once even if several targets chose it (under the first "
        "target); off: once per target, as in the paper.",
    )
    ranker: RankerName = Field(  # type: ignore[valid-type]
        default=DEFAULT,
        description="What ranks the documents: nag (NAG-based Ranking, the default), "
        "nag_contrastive (NAG against each neuron's target frequency relative to the pool's), "
        "or a baseline with the same targets, shards, budget and output: random (seeded uniform), "
        "dsir (hashed n-gram importance, target vs pool), embedding (all-MiniLM-L6-v2 "
        "similarity to the target's mean embedding), or nag_distilled (NAG at classifier "
        "cost: a text model trained on the NAG scores of a sample of the pool, scoring every "
        "document from its text for ~1/600 of the backbone's CPU; its selection only "
        "approximates NAG's: Jaccard ~0.3 with it at a 10% sample on 8k Wikipedia leads; it "
        "learns from shard_nag, so it saves no backbone pass: for that, build the selection "
        "with scorer: distilled; see README, 'Distilled NAG'). The mixture's `ranker` column "
        "and metadata record it.",
    )
    seed: int = Field(
        default=0, description="Seed of the random ranker and of nag_distilled's sample."
    )
    sample_fraction: float = Field(
        default=0.1,
        description="nag_distilled only: the share of the pool (drawn by a hash of shard and "
        "id) whose NAG scores its scorer learns from, in (0, 1].",
    )
    hybrid_weight: float = Field(
        default=DEFAULT_HYBRID_WEIGHT,
        description="hybrid only: the embedding score's share beside NAG's, in [0, 1].",
    )
    quality_column: str | None = Field(
        default=None,
        description="Quality blend (opt-in): a numeric column of the shards (e.g. an "
        "educational-value score); the ranker's score and it are min-max normalised over the "
        "pool and mixed by quality_weight. Empty: the ranker alone.",
    )
    quality_weight: float = Field(
        default=0.5, description="Share of the quality in the blend, in [0, 1] (0.5: the paper)."
    )
    quality_direction: str = Field(
        default="higher", description="Which quality values are better: higher | lower."
    )


SELECTED_MIXTURE_DOC = """The selected corpus: per target, the best-scoring documents that fit its
share of the token budget, as parquet with text and provenance (target, score, shard and the
shard's own columns). `selected_mixture/CURRENT.json` names the version in force.

What was picked and why, in the latest materialization below: `picks_<target>` its top
documents and those at the cut-off (text preview, the shard's title), and for NAG which layers
and neurons gave the top ones their score; `per_target` documents, tokens,
budget and score cut-off per target; `score_distributions` (open it) each target's score
distribution over the pool with its cut-off, picked documents in orange; `chosen_by_several`
documents more than one target picked (the first 20; `chosen_by_several_n` counts them all);
`inputs` links to the exact `target_nag` and `shard_nag` partitions and data versions used.
Budget fraction, per-target weights, dedup and the ranker (nag, nag_contrastive, or a
baseline: random, dsir, embedding; recorded as `ranker`): Materialize > Open launchpad."""


def mixture_asset(spec: SelectionSpec) -> dg.AssetsDefinition:
    """selected_mixture of one selection; its launchpad defaults are the selection's."""
    key = spec.key("selected_mixture")
    config_cls = with_defaults(MixtureConfig, spec.mixture)

    @dg.asset(
        key=key,
        deps=[dg.AssetDep(spec.key("shard_scores"), partition_mapping=dg.AllPartitionMapping())],
        group_name=spec.named("selection"),
        kinds={"polars", "parquet", spec.storage_kind},
        code_version=STEP_CODE_VERSION,
        automation_condition=on_update(spec.key("shard_scores")),
        required_resource_keys={spec.storage_key, spec.backbone_key},
        check_specs=[
            dg.AssetCheckSpec(
                "budget_holds",
                asset=key,
                description="No target's documents exceed its share of the token budget.",
            ),
            dg.AssetCheckSpec(
                "rows_point_to_documents",
                asset=key,
                description="Every row is a scored document of its shard, with its text.",
            ),
        ],
        description=SELECTED_MIXTURE_DOC,
    )
    def selected_mixture(
        context: dg.AssetExecutionContext, config: config_cls
    ) -> dg.MaterializeResult:
        return _selected_mixture(context, config, *resources(context, spec), spec)

    return selected_mixture


def _selected_mixture(
    context: dg.AssetExecutionContext,
    config: MixtureConfig,
    storage: StorageResource,
    backbone: BackboneResource,
    spec: SelectionSpec,
) -> dg.MaterializeResult:
    store = storage.storage()
    targets = sorted(context.instance.get_dynamic_partitions(spec.targets.name))
    shards = sorted(context.instance.get_dynamic_partitions(spec.shards.name))
    settings = steps.MixtureSettings(
        config.fraction,
        dict(config.weights),
        config.dedup,
        config.ranker,
        config.seed,
        config.sample_fraction,
        config.quality_column or None,
        config.quality_weight,
        config.quality_direction,
        config.hybrid_weight,
    )
    step = steps.selected_mixture(store, shards, targets, settings, backbone=backbone.load)
    facts = step.facts
    for s, why in facts["shards_left_out"].items():
        context.log.warning(f"shard {s} left out of the mixture: {why}")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(step.version),
        metadata=_metadata(store, facts, step.skipped, spec),
        check_results=_checks(store, facts),
    )


def _metadata(store, facts: dict, skipped: bool, spec: SelectionSpec) -> dict:
    per_target = facts["targets"]
    hists = dict(zip(per_target, facts["histogram"]))
    cutoffs = {t: f["cutoff_score"] for t, f in per_target.items()}
    picked = {t: (f["documents"], f["tokens"]) for t, f in per_target.items()}
    shard_meta = _shard_meta(store, facts)
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
        "settings": dg.MetadataValue.json({k: facts[k] for k in ("fraction", "weights", "dedup")}),
        "ranker": facts.get("ranker", "nag"),  # what ranked the documents
        "scorer": spec.scoring.scorer,  # what made shard_scores: nag, or distilled
        "input_versions": dg.MetadataValue.json(_input_versions(facts, shard_meta)),
        "path": dg.MetadataValue.path(store.url(steps.FOLDER, steps.POINTER)),
        "skipped_unchanged": skipped,
    }
    if facts.get("ranker") == "random":
        meta["ranker_seed"] = facts["seed"]
    if facts["files"]:  # judge the selection by eye: top documents, the cut-off, and why
        for t, picks in target_picks(store).items():
            meta[f"picks_{t}"] = dg.MetadataValue.md(picks_markdown(picks))
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
    """The documents more than one target picked (the first ones, as the facts keep them),
    with their score against each target."""
    targets = list(facts["targets"])
    several = facts["chosen_by_several_sample"]  # "shard/id" -> targets; shards have no "/"
    sample = [(*doc.split("/", 1), chosen) for doc, chosen in several.items()]
    scores: dict[tuple[str, str], dict] = {}
    for shard in sorted({s for s, _, _ in sample}):
        ids = [i for s, i, _ in sample if s == shard]
        folder = facts.get("score_folder", SHARD_SCORES)  # the ranker's scores
        df = store.read_parquet(*table(folder, shard)).filter(pl.col("id").is_in(ids))
        for row in df.select("id", *[t for t in targets if t in df.columns]).iter_rows(named=True):
            scores[(shard, row.pop("id"))] = row
    rows = [
        dg.TableRecord(
            {
                "shard": shard,
                "id": doc_id,
                "chosen_by": ", ".join(chosen),
                **{
                    t: f"{scores.get((shard, doc_id), {}).get(t, float('nan')):.4f}"
                    for t in targets
                },
            }
        )
        for shard, doc_id, chosen in sample
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


def _shard_meta(store, facts: dict) -> dict[str, dict]:
    """Each used shard's score-file meta, as long as it is still the version the mixture
    used (a newer scoring may have replaced it since)."""
    out = {}
    for s, version in facts["shards"].items():
        footer = ShardScoresFooter.read(store, SHARD_SCORES, s)
        out[s] = footer.to_meta() if footer and footer.version == version else {}
    return out


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
    found = steps.check_mixture(store, facts)
    return [
        dg.AssetCheckResult(
            check_name="budget_holds",
            passed=not found.over_budget,
            metadata={"over_budget": dg.MetadataValue.json(found.over_budget)},
        ),
        dg.AssetCheckResult(
            check_name="rows_point_to_documents",
            passed=found.bad_rows == 0,
            metadata={"bad_rows": found.bad_rows, "rows": found.rows},
        ),
    ]

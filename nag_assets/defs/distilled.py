"""The distilled scoring path's assets (`scorer: distilled`): distill_sample (the backbone over
a sample of each shard), distilled_scorer (a text model per target) and shard_scores from
those scorers, no backbone. With `scorer: nag` (the default) none of this is defined."""

import dataclasses
import time

import dagster as dg

from nag_assets.defs.automation import on_update
from nag_assets.defs.common import (
    backbone_pass,
    backbone_slot,
    executor_of,
    progress_logger,
    resources,
    result,
    storage_of,
)
from nag_assets.defs.shards import shard_scores_run
from nag_assets.defs.spec import SelectionSpec
from nag_assets.pipeline import distilled as steps
from nag_assets.pipeline import rerank
from nag_assets.pipeline.common import STEP_CODE_VERSION
from nag_assets.pipeline.layout import DISTILL_SAMPLE
from nag_assets.pipeline.provenance import source_version
from nag_assets.storage import digest


def _rerank(context, spec: SelectionSpec, backbone, store, share: float) -> steps.Rerank:
    model, extractor = backbone_pass(backbone, executor_of(context, spec), store)
    return steps.Rerank(share, backbone.settings(), extractor, backbone=model)


DISTILL_SAMPLE_DOC = """scorer: distilled. The NAGs of a deterministic sample of the shard (each
document in it when a hash of (seed, shard, id) falls below `sample_fraction`), written like
shard_nag, with the sampled texts. The only backbone pass of the distilled path (pool
`backbone`): a tenth of the shard at the default fraction. Target-independent: a new target
never reruns it; a new shard adds only its own sample, and a shard outside `sample_shards`
none (it reads nothing).

Metadata: `documents_extracted`, `shard_documents`, `nag_tokens`, `source_version`."""

DISTILLED_SCORER_DOC = """scorer: distilled. The target's distilled scorer: a ridge regression
(scikit-learn) from what the NAG reads (the first max_tokens backbone tokens: their input
embeddings' mean, folded into one weight per vocabulary token, and hashed word 1-2-grams) onto
the rank of the NAG score against this target's profile, learnt on the distill_sample of
every shard `sample_shards` covers (default: all). Versioned by the samples, the target's
profile and the settings; a new target trains only its own partition. Loads the backbone
for its tokenizer and embeddings, never runs it. Trade-off (benchmarks/distilled.py, 8k
Wikipedia leads): scoring a document costs ~1/600 of the backbone pass, so the whole pass
costs about the sample's share of full NAG's; the selection overlaps full NAG's by Jaccard
~0.25-0.30 at a 10% sample.

Metadata: `documents` (sample size), `shards`, `train_spearman` (in-sample fit),
`shards_without_sample`, `shards_outside_sample`."""

DISTILLED_SCORES_DOC = """scorer: distilled. Each document's score against every target,
predicted by the targets' distilled scorers from the text alone (tokenizer and two weight
tables; no backbone pass), written as `shard_scores` tables (id, tokens, one column per
target), so the mixture, the budget, the checks and the UI work unchanged. Tokens are counted
with the backbone's tokenizer, as shard_nag counts them."""

RERANK_DOC = """

With `rerank` (a share), each shard's top share per target by distilled score gets its exact
NAG score (the backbone over those documents only, in the backbone pool; NAGs kept under
rerank_nag/ and the sample's reused), the rest their distilled score - 1, below every exact
one. Each shard's log line says how many it reranked and how many the backbone read now
(`reranked`, `rerank_extracted`)."""


def distilled_assets(spec: SelectionSpec, candidate_shard) -> list[dg.AssetsDefinition]:
    """distill_sample, distilled_scorer and shard_scores (from the scorers) of one selection."""
    scoring = spec.scoring
    keys = {spec.storage_key, spec.backbone_key}
    reranks = scoring.rerank is not None

    @dg.asset(
        key=spec.key("distill_sample"),
        partitions_def=spec.shards,
        deps=[candidate_shard],
        group_name=spec.named("shards"),
        kinds={"pytorch", "huggingface", "parquet"},
        code_version=f"{spec.nag_code_version}-{digest(*scoring.sample_version())}",
        pool=spec.backbone_pool,
        required_resource_keys=keys | {spec.executor_key},
        description=DISTILL_SAMPLE_DOC.replace("`backbone`", f"`{spec.backbone_pool}`"),
    )
    def distill_sample(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        with backbone_slot(context, spec):
            return _distill_sample(context, spec)

    @dg.asset(
        key=spec.key("distilled_scorer"),
        partitions_def=spec.targets,
        deps=[
            spec.key("target_nag"),
            dg.AssetDep(distill_sample, partition_mapping=dg.AllPartitionMapping()),
        ],
        group_name=spec.named("targets"),
        kinds={"scikitlearn", "numpy"},
        code_version=f"{steps.CODE_VERSION}-{digest(*scoring.model_version())}",
        automation_condition=on_update(distill_sample.key),
        required_resource_keys=keys,
        description=DISTILLED_SCORER_DOC,
    )
    def distilled_scorer(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return _distilled_scorer(context, spec)

    @dg.asset(
        key=spec.key("shard_scores"),
        partitions_def=spec.shards,
        deps=[
            candidate_shard,
            dg.AssetDep(distilled_scorer, partition_mapping=dg.AllPartitionMapping()),
        ],
        group_name=spec.named("selection"),
        kinds={"scikitlearn", "parquet"} | ({"pytorch"} if reranks else set()),
        code_version=f"{STEP_CODE_VERSION}-distilled-{steps.CODE_VERSION}"
        + (f"-rerank-{rerank.CODE_VERSION}-{scoring.rerank}" if reranks else ""),
        backfill_policy=dg.BackfillPolicy.single_run(),
        automation_condition=on_update(distilled_scorer.key),
        pool=spec.backbone_pool if reranks else None,
        required_resource_keys=keys | ({spec.executor_key} if reranks else set()),
        description=DISTILLED_SCORES_DOC + (RERANK_DOC if reranks else ""),
    )
    def shard_scores(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return _distilled_scores(context, spec)

    return [distill_sample, distilled_scorer, shard_scores]


def _distilled_scorer(context: dg.AssetExecutionContext, spec: SelectionSpec):
    storage, backbone = resources(context, spec)
    shards = sorted(context.instance.get_dynamic_partitions(spec.shards.name))
    scoring = spec.scoring
    step = steps.distilled_scorer(
        storage.storage(), context.partition_key, shards, backbone.load(), scoring.model,
        scoring.sample,
    )  # fmt: skip
    return result(step)


def _distill_sample(context: dg.AssetExecutionContext, spec: SelectionSpec):
    key, sample = context.partition_key, spec.scoring.sample
    if not sample.covers(key):  # before any resource: no backbone is loaded for it
        return result(steps.outside_sample(key, sample))
    storage, backbone = resources(context, spec)
    store, settings = storage.storage(), backbone.settings()
    start = time.monotonic()
    model, extractor = backbone_pass(backbone, executor_of(context, spec), store)
    step = steps.distill_sample(
        store,
        key,
        model,
        settings,
        spec.scoring.sample,
        progress_logger(context, f"distill_sample[{key}]"),
        extractor,
    )
    return result(
        step,
        seconds=round(time.monotonic() - start, 2),
        source_version=source_version(store, key, DISTILL_SAMPLE),
    )


def _distilled_scores(context: dg.AssetExecutionContext, spec: SelectionSpec):
    backbone = getattr(context.resources, spec.backbone_key)
    share = spec.scoring.rerank
    made: list[steps.Rerank] = []

    def score(store, key: str, targets: list[str]):
        how = None
        if share is not None:  # the extractor (local, or Ray's actors) once per run
            if not made:
                made.append(_rerank(context, spec, backbone, store, share))
            how = dataclasses.replace(made[0], progress=progress_logger(context, f"rerank[{key}]"))
        return steps.distilled_scores(
            store, key, targets, backbone.load(), backbone.chunk_rows, how
        )

    return shard_scores_run(context, storage_of(context, spec), spec, score)

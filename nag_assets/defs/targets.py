"""Target assets: target_dataset (examples) and target_nag (their NAGs and the profile)."""

import dagster as dg
import numpy as np

from nag_assets.defs.automation import on_update
from nag_assets.defs.common import (
    backbone_pass,
    backbone_slot,
    executor_of,
    progress_logger,
    resources,
    result,
)
from nag_assets.defs.plots import profile_plot
from nag_assets.defs.resources import BackboneResource, ExecutorResource, StorageResource
from nag_assets.defs.spec import SelectionSpec
from nag_assets.nag import load_tokenizer, top_neurons
from nag_assets.nag.profile import layer_concentration
from nag_assets.pipeline import targets as steps
from nag_assets.pipeline.common import STEP_CODE_VERSION

TARGET_DATASET_DOC = """A target set: the examples of a task you want the selected corpus to be good
at, as `(id, text, tokens)`. One partition per file under `targets/` (parquet or JSONL with a
`text` column, or a JSON spec like `{"benchmark": "hellaswag", "limit": 200}`), or a partition
you add named `bench__<benchmark>`.

Tokens are counted with the backbone's tokenizer alone: no model weights are loaded here.

Metadata: `examples` and `tokens` kept (blank texts dropped), `source` file and its
`source_version` (content hash)."""

TARGET_NAG_DOC = """The target's neuron profile. The backbone reads every example; its NAG
(Neuron-Activated Graph) is the K most active MLP up-projection neurons of each layer. The
profile counts how often each neuron is in an example's NAG, per layer; documents are later
scored by how much their NAG overlaps it. Runs the backbone (pool `backbone`), over this
target's examples only.

Metadata: `profile_plot` (open it) shows each layer's most frequent neurons, shaded by the
share of examples that activate them, beside each layer's concentration; `concentration` is
the share of NAG slots taken by the top-K neurons of a layer, averaged over layers (1.0: every
example has the same NAG; K/d_ff: every neuron equally frequent), explained in
`profile_summary`; `top_neurons` lists them per layer."""


def target_assets(spec: SelectionSpec) -> list[dg.AssetsDefinition]:
    """target_dataset and target_nag of one selection."""
    keys = {spec.storage_key, spec.backbone_key}

    @dg.asset(
        key=spec.key("target_dataset"),
        partitions_def=spec.targets,
        group_name=spec.named("targets"),
        kinds={"polars", "parquet", spec.storage_kind},
        code_version=STEP_CODE_VERSION,
        required_resource_keys=keys,
        description=TARGET_DATASET_DOC,
    )
    def target_dataset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return _target_dataset(context, *resources(context, spec))

    @dg.asset(
        key=spec.key("target_nag"),
        partitions_def=spec.targets,
        deps=[target_dataset],
        group_name=spec.named("targets"),
        kinds={"pytorch", "huggingface", "numpy", "parquet"},
        code_version=spec.nag_code_version,
        pool=spec.backbone_pool,
        required_resource_keys=keys | {spec.executor_key},
        automation_condition=on_update(),
        check_specs=[dg.AssetCheckSpec("profile_layers_sum_to_one", asset=spec.key("target_nag"))],
        description=TARGET_NAG_DOC.replace("`backbone`", f"`{spec.backbone_pool}`"),
    )
    def target_nag(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        with backbone_slot(context, spec):
            return _target_nag(context, *resources(context, spec), executor_of(context, spec))

    return [target_dataset, target_nag]


def _target_dataset(
    context: dg.AssetExecutionContext, storage: StorageResource, backbone: BackboneResource
) -> dg.MaterializeResult:
    # the tokenizer alone: the model loads only where the backbone passes run (Ray: actors)
    count_tokens = load_tokenizer(backbone.model).count_tokens
    step = steps.target_dataset(storage.storage(), context.partition_key, count_tokens)
    return result(step)


def _target_nag(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    backbone: BackboneResource,
    executor: ExecutorResource,
) -> dg.MaterializeResult:
    key = context.partition_key
    store, settings = storage.storage(), backbone.settings()
    model, extractor = backbone_pass(backbone, executor, store)
    step = steps.target_nag(
        store, key, model, settings, progress_logger(context, f"target_nag[{key}]"), extractor
    )
    profile = step.facts.pop("profile")
    sums = profile.sum(axis=1)
    check = dg.AssetCheckResult(
        check_name="profile_layers_sum_to_one",
        passed=bool(np.allclose(sums, 1.0, atol=1e-6)),
        metadata={"max_deviation": float(np.abs(sums - 1).max())},
    )
    k = backbone.settings().top_k
    out = result(
        step,
        concentration=round(step.facts["concentration"], 4),
        profile_summary=dg.MetadataValue.md(_summary(profile, k)),
        profile_plot=profile_plot(profile, key, k),
        top_neurons=dg.MetadataValue.md(_top_table(profile, k)),
    )
    first = ("profile_summary", "profile_plot", "concentration", "top_neurons")
    shown = dict(out.metadata or {})
    meta = {name: shown[name] for name in first} | shown
    return dg.MaterializeResult(data_version=out.data_version, metadata=meta, check_results=[check])


def _summary(profile: np.ndarray, k: int) -> str:
    conc = layer_concentration(profile, k)
    floor = k / profile.shape[1]
    return (
        f"The top-{k} neurons of a layer take **{conc.mean():.0%}** of its NAG slots on "
        f"average (layers range {conc.min():.0%} to {conc.max():.0%}; most concentrated: "
        f"layer {int(conc.argmax())}). 100% would mean every example has the same NAG; "
        f"{floor:.1%} (K/d_ff) that every neuron is equally frequent."
    )


def _top_table(profile: np.ndarray, k: int) -> str:
    top = top_neurons(profile, k)
    conc = layer_concentration(profile, k)
    rows = "\n".join(
        f"| {layer} | {', '.join(map(str, r))} | {c:.0%} |"
        for layer, (r, c) in enumerate(zip(top, conc))
    )
    return f"| layer | top-{k} neurons | share of slots |\n|---|---|---|\n" + rows

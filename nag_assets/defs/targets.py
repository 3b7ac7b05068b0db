"""Target assets: target_dataset (examples) and target_nag (their NAGs and the profile)."""

import dagster as dg
import numpy as np

from nag_assets.defs.automation import on_update
from nag_assets.defs.common import progress_logger, result
from nag_assets.defs.partitions import targets
from nag_assets.defs.plots import profile_plot
from nag_assets.defs.resources import BackboneResource, StorageResource
from nag_assets.nag import top_neurons
from nag_assets.pipeline import targets as steps
from nag_assets.pipeline.common import STEP_CODE_VERSION

NAG_CODE_VERSION = f"{STEP_CODE_VERSION}-{BackboneResource.from_env().code_version()}"


@dg.asset(
    partitions_def=targets,
    group_name="targets",
    kinds={"parquet"},
    code_version=STEP_CODE_VERSION,
    description="A target set's examples as (id, text, tokens): a file under targets/ "
    "(parquet/JSONL with `text`, or a JSON benchmark spec) or a built-in `bench__<name>`.",
)
def target_dataset(
    context: dg.AssetExecutionContext, storage: StorageResource, backbone: BackboneResource
) -> dg.MaterializeResult:
    step = steps.target_dataset(
        storage.storage(), context.partition_key, backbone.load().count_tokens
    )
    return result(step)


@dg.asset(
    partitions_def=targets,
    deps=[target_dataset],
    group_name="targets",
    kinds={"pytorch", "parquet"},
    code_version=NAG_CODE_VERSION,
    pool="backbone",
    automation_condition=on_update(),
    check_specs=[dg.AssetCheckSpec("profile_layers_sum_to_one", asset="target_nag")],
    description="Each example's NAG (top-K up-projection neurons per layer) and the target "
    "profile: how often each neuron appears, per layer.",
)
def target_nag(
    context: dg.AssetExecutionContext, storage: StorageResource, backbone: BackboneResource
) -> dg.MaterializeResult:
    key = context.partition_key
    step = steps.target_nag(
        storage.storage(),
        key,
        backbone.load(),
        backbone.settings(),
        progress_logger(context, f"target_nag[{key}]"),
    )
    profile = step.facts.pop("profile")
    sums = profile.sum(axis=1)
    check = dg.AssetCheckResult(
        check_name="profile_layers_sum_to_one",
        passed=bool(np.allclose(sums, 1.0, atol=1e-6)),
        metadata={"max_deviation": float(np.abs(sums - 1).max())},
    )
    out = result(
        step,
        top_neurons=dg.MetadataValue.md(_top_table(top_neurons(profile, 5))),
        profile_plot=profile_plot(profile, key),
    )
    return dg.MaterializeResult(
        data_version=out.data_version, metadata=out.metadata, check_results=[check]
    )


def _top_table(top: np.ndarray) -> str:
    rows = "\n".join(f"| {layer} | {', '.join(map(str, r))} |" for layer, r in enumerate(top))
    return "| layer | most frequent neurons |\n|---|---|\n" + rows

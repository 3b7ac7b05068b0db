"""selection_checks: the sanity checks of nag_assets.checks, run on demand from the UI."""

import json

import dagster as dg

from nag_assets import checks as steps
from nag_assets.checks.dispatch import CheckOptions, run_check
from nag_assets.defs.common import launchpad_config, progress_logger, resources
from nag_assets.defs.resources import BackboneResource, StorageResource
from nag_assets.defs.spec import SelectionSpec
from nag_assets.settings import ChecksSettings

REPORT = ("assets/selection_checks", "latest.json")


SELECTION_CHECKS_DOC = """Does the selection work? Run on demand (Materialize; pick the checks in
the launchpad). `stability`: Jaccard of the selection from 25/50/100/200 target examples with
the one from all. `agreement`: Jaccard of the NAG selection with each baseline ranker's
(random, dsir, embedding), beside the floor of two random selections. `variants` (beyond the
paper; one backbone pass): the contrastive profile, baseline-normalized impact and larger K
beside the paper's method: distinct neurons per layer, the top neuron's share of NAGs,
overlap with the paper's selection and between targets, stability. `deactivation`: the
backbone's loss on held-out benchmark examples with the target's top-K neurons per layer
zeroed (per profile variant), beside K random ones. `summary` holds the headline figures;
each check's full result is in its own entry. The same checks run from the command line:
`python -m nag_assets.checks stability|agreement|variants|deactivation --root ROOT`."""


def checks_asset(spec: SelectionSpec) -> dg.AssetsDefinition:
    """selection_checks of one selection; its launchpad defaults are the selection's."""
    config_cls = launchpad_config(spec.settings.checks)

    @dg.asset(
        key=spec.key("selection_checks"),
        deps=[
            dg.AssetDep(spec.key("shard_scores"), partition_mapping=dg.AllPartitionMapping()),
            dg.AssetDep(spec.key("target_nag"), partition_mapping=dg.AllPartitionMapping()),
        ],
        group_name=spec.named("selection"),
        kinds={"numpy", "polars", spec.storage_kind},
        required_resource_keys={spec.storage_key, spec.backbone_key},
        description=SELECTION_CHECKS_DOC,
    )
    def selection_checks(
        context: dg.AssetExecutionContext,
        config: config_cls,  # type: ignore[valid-type]  # made at run time: Dagster reads it
    ) -> dg.MaterializeResult:
        return _selection_checks(context, config, *resources(context, spec))

    return selection_checks


def _selection_checks(
    context: dg.AssetExecutionContext,
    config: ChecksSettings,
    storage: StorageResource,
    backbone: BackboneResource,
) -> dg.MaterializeResult:
    store = storage.storage()
    unknown = sorted(set(config.checks) - set(steps.CHECKS))
    if unknown:
        raise dg.Failure(f"unknown checks {unknown}; choose from {list(steps.CHECKS)}")
    options = _options(config, backbone)
    results: dict = {}
    for name in config.checks:
        context.log.info(f"running the {name} check")
        results[name] = run_check(
            name,
            store,
            options,
            backbone.load,
            progress=progress_logger(context, name),
            log=context.log.info,
        )
    store.write_bytes(json.dumps(results, indent=1).encode(), *REPORT)
    return dg.MaterializeResult(
        metadata={
            "summary": dg.MetadataValue.md(steps.summary_md(results)),
            **{name: dg.MetadataValue.json(r) for name, r in results.items()},
            "path": dg.MetadataValue.path(store.url(*REPORT)),
        }
    )


def _options(config: ChecksSettings, backbone: BackboneResource) -> CheckOptions:
    """The launchpad's knobs, with the backbone's batch size and max tokens."""
    settings = backbone.settings()
    return CheckOptions(
        fraction=config.fraction,
        seeds=config.seeds,
        sizes=tuple(config.sizes),
        rankers=tuple(config.rankers),
        ks=tuple(config.ks),
        max_docs=config.max_docs,
        neurons=tuple(config.neurons),
        random_seeds=config.random_seeds,
        examples=config.examples,
        batch_size=settings.batch_size,
        max_tokens=settings.max_tokens,
    )

"""Turning plain step results into Dagster events and metadata."""

import json
import time
from typing import Any

import dagster as dg
import numpy as np
from pydantic import create_model
from pydantic.fields import FieldInfo

from nag_assets.defs.resources import BackboneResource, ExecutorResource, StorageResource
from nag_assets.defs.spec import SelectionSpec
from nag_assets.executors import extraction
from nag_assets.nag import BackboneFacts
from nag_assets.pipeline.common import StepResult
from nag_assets.pipeline.extractor import Extractor
from nag_assets.storage import Storage


def storage_of(context, spec: SelectionSpec) -> StorageResource:
    """The selection's own storage (resource keys differ per selection)."""
    return getattr(context.resources, spec.storage_key)


def resources(context, spec: SelectionSpec) -> tuple[StorageResource, BackboneResource]:
    """The selection's own storage and backbone."""
    return storage_of(context, spec), getattr(context.resources, spec.backbone_key)


def executor_of(context, spec: SelectionSpec) -> ExecutorResource:
    """The selection's own executor of the backbone passes."""
    return getattr(context.resources, spec.executor_key)


def backbone_pass(
    backbone: BackboneResource, executor: ExecutorResource, store: Storage
) -> tuple[BackboneFacts, Extractor | None]:
    """(backbone, extractor) for a step's backbone pass, wherever the executor runs it: the
    one place the resources become `executors.extraction`'s arguments."""
    return extraction(
        executor.settings(), backbone.spec(), backbone.load, store, backbone.settings()
    )


def with_defaults(config_cls: type[dg.Config], defaults: dg.Config | None) -> type[dg.Config]:
    """`config_cls` whose launchpad defaults are the values of `defaults` (a selection's own
    budget and rankers), the field descriptions kept."""
    if defaults is None:
        return config_cls
    fields: dict[str, Any] = {
        name: (info.annotation, FieldInfo.merge_field_infos(info, default=getattr(defaults, name)))
        for name, info in config_cls.model_fields.items()
    }
    return create_model(config_cls.__name__, __base__=config_cls, **fields)


def result(step: StepResult, **extra) -> dg.MaterializeResult:
    """A step's facts (and `extra`) as its materialization's metadata; None facts left out."""
    values = {k: _value(v) for k, v in {**step.facts, **extra}.items()}
    meta = {k: v for k, v in values.items() if v is not None}
    meta["skipped_unchanged"] = step.skipped
    return dg.MaterializeResult(data_version=dg.DataVersion(step.version), metadata=meta)


def _value(v):
    """A fact as metadata: scalars as they are, lists and dicts as JSON (e.g. layers_scored),
    text if JSON cannot hold them, so every typed fact reaches the UI; None stays out."""
    if isinstance(v, dg.MetadataValue):
        return v
    if isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (np.bool_, np.integer, np.floating)):
        return v.item()
    if isinstance(v, (list, tuple, dict)):  # not an array: a profile is no fact to show
        data = _plain(v)
        try:
            json.dumps(data)
        except (TypeError, ValueError):
            return dg.MetadataValue.text(str(v))
        return dg.MetadataValue.json(data)
    return None


def _plain(v):
    """`v` with numpy values, tuples and non-string keys made plain JSON."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def progress_logger(context: dg.AssetExecutionContext, what: str, every_s: float = 10.0):
    """A progress callback for extraction, logged to the run: the first batch (so the run page
    shows the step is moving and how long it will take), then at most every `every_s`
    seconds, then the total. Each line: texts done, tokens per second, time left."""
    start = last = time.monotonic()
    first = True

    def report(done: int, total: int, tokens: int) -> None:
        nonlocal last, first
        now = time.monotonic()
        if not first and now - last < every_s and done < total:
            return
        first, last = False, now
        took = now - start
        rate = tokens / max(took, 1e-9)
        if done >= total:
            context.log.info(
                f"{what}: done, {total} texts, {tokens} tokens in {took:.1f}s ({rate:.0f} tokens/s)"
            )
            return
        # Texts run longest first, so this estimate errs on the long side.
        left = took / max(done, 1) * (total - done)
        context.log.info(
            f"{what}: {done}/{total} texts ({done / total:.0%}), {rate:.0f} tokens/s, "
            f"~{_duration(left)} left"
        )

    return report


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"

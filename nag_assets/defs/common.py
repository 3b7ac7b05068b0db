"""Turning plain step results into Dagster events and metadata."""

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any, Literal, get_args, get_origin

import dagster as dg
import numpy as np
from pydantic import create_model

from nag_assets.defs.resources import (
    BackboneResource,
    ExecutorResource,
    StorageResource,
    config_type,
)
from nag_assets.defs.spec import SelectionSpec
from nag_assets.executors import extraction
from nag_assets.nag import BackboneFacts
from nag_assets.pipeline.common import StepResult
from nag_assets.pipeline.extractor import Extractor
from nag_assets.pipeline.slots import backbone_slots, machine_slot
from nag_assets.settings import Section
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


@contextlib.contextmanager
def backbone_slot(context, spec: SelectionSpec) -> Iterator[None]:
    """One of this machine's backbone slots for a step that runs the backbone here (a step
    whose passes run on Ray actors takes none): the safe default when the instance sets no
    pool limit."""
    if executor_of(context, spec).executor == "ray":
        yield
        return
    backbone = getattr(context.resources, spec.backbone_key)
    with machine_slot(backbone_slots(backbone.slots, backbone.device), context.log.info):
        yield


def launchpad_config(block: Section) -> type[dg.Config]:
    """A launchpad (run config) model of a spec block: its fields, types and descriptions,
    defaulting to the block's values (a choice that may be unset is offered as text)."""
    fields: dict[str, Any] = {}
    for name, info in type(block).model_fields.items():
        field = info._copy()
        field.json_schema_extra = None
        field.default, field.default_factory = getattr(block, name), None
        annotation = info.annotation
        if any(get_origin(a) is Literal for a in get_args(annotation)):  # optional, or a list
            annotation = config_type(annotation)
        fields[name] = (annotation, field)
    return create_model(f"{type(block).__name__}Config", __base__=dg.Config, **fields)


def backbone_pass(
    backbone: BackboneResource, executor: ExecutorResource, store: Storage
) -> tuple[BackboneFacts, Extractor | None]:
    """(backbone, extractor) for a step's backbone pass, wherever the executor runs it: the
    one place the resources become `executors.extraction`'s arguments."""
    return extraction(
        executor.settings(), backbone.spec(), backbone.load, store, backbone.settings()
    )


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

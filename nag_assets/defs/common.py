"""Turning plain step results into Dagster events and metadata."""

import time

import dagster as dg
import numpy as np

from nag_assets.defs.resources import default_root
from nag_assets.pipeline.common import StepResult

# The kind badge of the assets that read or write the user's files: where the storage root
# (NAG_ASSETS_ROOT) lives when the definitions load.
STORAGE_KIND = "s3" if default_root().startswith("s3://") else "file"


def result(step: StepResult, **extra) -> dg.MaterializeResult:
    meta = {k: _value(v) for k, v in {**step.facts, **extra}.items() if _value(v) is not None}
    meta["skipped_unchanged"] = step.skipped
    return dg.MaterializeResult(data_version=dg.DataVersion(step.version), metadata=meta)


def _value(v):
    if isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    if isinstance(v, dg.MetadataValue):
        return v
    return None


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

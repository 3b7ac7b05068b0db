"""Turning plain step results into Dagster events and metadata."""

import time

import dagster as dg
import numpy as np

from nag_assets.pipeline.common import StepResult


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
    """A progress callback for extraction: logs documents, tokens/s and time left."""
    start = last = time.monotonic()

    def report(done: int, total: int, tokens: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < every_s and done < total:
            return
        last = now
        rate = tokens / max(now - start, 1e-9)
        left = (now - start) / max(done, 1) * (total - done)
        context.log.info(f"{what}: {done}/{total} texts, {rate:.0f} tokens/s, ~{left:.0f}s left")

    return report

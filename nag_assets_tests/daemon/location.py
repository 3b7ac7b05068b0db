"""The code location the daemon test serves: the project's own Definitions, plus one test hook.

When NAG_TEST_SLOW_SHARD names a shard, the first backbone pass over it writes the worker's pid
to NAG_TEST_SLOW_SIGNAL after its first batch and then holds for NAG_TEST_SLOW_SECONDS: the
test kills the worker inside that hold, so the kill lands mid-extraction however fast the
machine is. Once the signal exists (the retry), the shard runs unchanged."""

from __future__ import annotations

import os
import time
from pathlib import Path

import nag_assets.pipeline.shards as shard_steps
from nag_assets.definitions import defs

__all__ = ["defs"]

_real_shard_nag = shard_steps.shard_nag


def _slowed_shard_nag(storage, key, backbone, settings, progress=None, *args, **kwargs):
    signal = Path(os.environ.get("NAG_TEST_SLOW_SIGNAL", "slow-shard.pid"))
    if key != os.environ.get("NAG_TEST_SLOW_SHARD") or signal.exists():
        return _real_shard_nag(storage, key, backbone, settings, progress, *args, **kwargs)
    hold = float(os.environ.get("NAG_TEST_SLOW_SECONDS", "900"))

    def report(done: int, total: int, tokens: int) -> None:
        if progress:
            progress(done, total, tokens)
        if done < total and not signal.exists():
            partial = signal.with_suffix(".partial")
            partial.write_text(str(os.getpid()))
            os.replace(partial, signal)  # the test never reads a half-written pid
            time.sleep(hold)

    return _real_shard_nag(storage, key, backbone, settings, report, *args, **kwargs)


shard_steps.shard_nag = _slowed_shard_nag

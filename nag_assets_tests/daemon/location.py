"""The code location the daemon test serves: the project's own Definitions, plus one test hook.

When NAG_TEST_SLOW_SHARD names a shard, that shard's backbone pass writes the worker's pid to
NAG_TEST_SLOW_SIGNAL after each batch and then sleeps NAG_TEST_SLOW_SECONDS: a window in which
the test kills the daemon and the run worker mid-extraction. The work itself is unchanged."""

from __future__ import annotations

import os
import time
from pathlib import Path

import nag_assets.pipeline.shards as shard_steps
from nag_assets.definitions import defs

__all__ = ["defs"]

_real_shard_nag = shard_steps.shard_nag


def _slowed_shard_nag(storage, key, backbone, settings, progress=None, *args, **kwargs):
    if key != os.environ.get("NAG_TEST_SLOW_SHARD"):
        return _real_shard_nag(storage, key, backbone, settings, progress, *args, **kwargs)
    signal = Path(os.environ["NAG_TEST_SLOW_SIGNAL"])
    pause = float(os.environ.get("NAG_TEST_SLOW_SECONDS", "1"))

    def report(done: int, total: int, tokens: int) -> None:
        if progress:
            progress(done, total, tokens)
        if done < total:
            signal.write_text(str(os.getpid()))
            time.sleep(pause)

    return _real_shard_nag(storage, key, backbone, settings, report, *args, **kwargs)


shard_steps.shard_nag = _slowed_shard_nag

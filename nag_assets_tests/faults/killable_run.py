"""A real run of the whole graph in a process of its own, for the kill tests.

    python -m nag_assets_tests.faults.killable_run ROOT MODEL_DIR SIGNAL_FILE MODE

Drives pool_sensor and the declarative automation over ROOT exactly as the demo does (an
ephemeral instance, in-process runs). MODE says where the parent will kill it (SIGKILL):
- `extract:N`: while extracting a call of N texts, after its first batch the process touches
  SIGNAL_FILE and then sleeps a little after every batch (a wider window; the work is real).
- `write:SUFFIX`: when an atomic write is about to publish a file whose path ends with
  SUFFIX, the temporary file is cut to half (as a kill during the write leaves it), then the
  process touches SIGNAL_FILE and waits to be killed.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def main(root: str, model_dir: str, signal_file: str, mode: str) -> None:
    import dagster as dg
    import torch

    import nag_assets.pipeline.common as pipeline_common
    from nag_assets.definitions import build_defs
    from nag_assets.defs.driver import automation_ticks, sensor_tick
    from nag_assets.defs.resources import StorageResource
    from nag_assets_tests.faults.helpers import backbone_resource

    torch.set_num_threads(1)
    signal = Path(signal_file)
    kind, _, arg = mode.partition(":")
    if kind == "extract":
        real = pipeline_common.extract_nags

        def slowed(backbone, texts, top_k, max_tokens, batch_size, progress=None, *rest):
            def report(done: int, total: int, tokens: int) -> None:
                if progress:
                    progress(done, total, tokens)
                if len(texts) == int(arg):
                    signal.touch()
                    time.sleep(2.0)  # the parent kills at once; this only widens the window

            return real(backbone, texts, top_k, max_tokens, batch_size, report, *rest)

        pipeline_common.extract_nags = slowed
    elif kind == "write":
        real_replace = os.replace

        def replace(src, dst, *args, **kwargs):
            if str(dst).endswith(arg):
                with open(src, "r+b") as f:
                    f.truncate(os.path.getsize(src) // 2)
                signal.touch()
                time.sleep(600)
            return real_replace(src, dst, *args, **kwargs)

        os.replace = replace
    else:
        raise SystemExit(f"unknown mode {mode!r}")

    defs = build_defs(StorageResource(root=root), backbone_resource(model_dir))
    with dg.DagsterInstance.ephemeral() as instance:
        cursor, _ = automation_ticks(defs, instance)
        sensor_tick(defs, instance)
        automation_ticks(defs, instance, cursor)
    print("finished without being killed", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])

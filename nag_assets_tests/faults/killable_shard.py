"""shard_nag over one shard in a process of its own, for the streaming kill test.

    python -m nag_assets_tests.faults.killable_shard ROOT MODEL_DIR SIGNAL_FILE CHUNK_ROWS

After its second chunk is extracted (and handed to the streaming write), the process
touches SIGNAL_FILE and sleeps after every chunk, so the parent kills it mid-shard.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def main(root: str, model_dir: str, signal_file: str, chunk_rows: str) -> None:
    import torch

    import nag_assets.pipeline.extractor as extractor
    from nag_assets.nag import load_backbone
    from nag_assets.pipeline.common import NagSettings
    from nag_assets.pipeline.shards import shard_nag
    from nag_assets.storage import Storage
    from nag_assets_tests.faults.helpers import BATCH, TOP_K

    torch.set_num_threads(1)
    real = extractor.extract_chunk

    def slowed(ref, *args, **kwargs):
        out = real(ref, *args, **kwargs)
        if ref.index >= 1:
            Path(signal_file).touch()
            time.sleep(2.0)  # the parent kills at once; this only widens the window
        return out

    extractor.extract_chunk = slowed
    backbone = load_backbone(model_dir, device="cpu")
    shard_nag(
        Storage(root),
        "big-000",
        backbone,
        NagSettings(TOP_K, batch_size=BATCH, chunk_rows=int(chunk_rows)),
    )
    print("finished without being killed", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])

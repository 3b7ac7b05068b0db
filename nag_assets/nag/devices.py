"""One GPU per process on a machine with several: `device="auto"` claims a free one.

Dagster runs each backbone step in its own process; with the `backbone` pool raised to N on
an N-GPU machine, `cuda` alone would put all N models on GPU 0. Each process instead takes an
exclusive lock on one file per GPU (named by the GPU's UUID, so it holds whatever
CUDA_VISIBLE_DEVICES each process sees) and keeps it until it exits; the operating system
drops the lock when the process dies, even on SIGKILL, so a crashed step frees its GPU.
Under Ray, each actor sees only its own GPU, so there is nothing to choose."""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

_held: dict[str, int] = {}  # lock file -> open descriptor, kept for the process's life


def lock_dir() -> Path:
    """Per user, in the temporary folder: the locks are about this machine only."""
    return Path(tempfile.gettempdir()) / f"nag_assets-gpus-{os.getuid()}"


def claim_device(ids: list[str], folder: Path | None = None) -> int:
    """The index in `ids` of a device no other process holds, now held by this one. A
    process that already holds one gets it again; when every device is held, devices are
    shared by process id (pid % n), as evenly as is possible without a coordinator."""
    folder = folder or lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    names = [str(folder / f"{_safe(i)}.lock") for i in ids]
    for index, name in enumerate(names):
        if name in _held:
            return index
    for index, name in enumerate(names):
        fd = os.open(name, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        _held[name] = fd
        return index
    return os.getpid() % len(ids)


def cuda_device_ids() -> list[str]:
    """A stable id of each visible CUDA device (its UUID where torch gives one)."""
    import torch

    ids = []
    for i in range(torch.cuda.device_count()):
        uuid = getattr(torch.cuda.get_device_properties(i), "uuid", None)
        ids.append(str(uuid) if uuid else f"cuda{i}")
    return ids


def _safe(device_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in device_id)

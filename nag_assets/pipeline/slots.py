"""Machine-wide limits on backbone work, whatever the Dagster instance allows: at most N
backbone steps at once on one machine (`backbone.slots`), and one computation of each
normalized-impact baseline however many runs ask for it at once. File locks (`filelock`) in
the local cache folder, so they hold across processes and across selections."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from nag_assets.nag.backbone import cache_dir

log = logging.getLogger(__name__)


def backbone_slots(slots: int | None, device: str = "auto") -> int:
    """`slots`, or by default one per GPU this process may use, or 1 without GPUs (a backbone
    pass already uses every core)."""
    if slots:
        return slots
    if device == "cpu":
        return 1
    import torch

    return max(1, torch.cuda.device_count()) if device in ("auto", "cuda") else 1


def lock_dir() -> Path:
    folder = cache_dir() / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def machine_slot(
    slots: int, say: Callable[[str], None] = log.info, poll_s: float = 1.0
) -> Iterator[int]:
    """Hold one of `slots` backbone slots of this machine for the block; wait (saying so
    once) while all are held."""
    locks = [FileLock(lock_dir() / f"backbone-slot-{i}.lock") for i in range(slots)]
    waited = False
    start = time.monotonic()
    while True:
        for i, lock in enumerate(locks):
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            if waited:
                say(f"backbone slot {i} free after {time.monotonic() - start:.0f}s")
            try:
                yield i
            finally:
                lock.release()
            return
        if not waited:
            say(f"all {slots} backbone slots of this machine are busy: waiting (backbone.slots)")
            waited = True
        time.sleep(poll_s)


@contextlib.contextmanager
def once(name: str) -> Iterator[None]:
    """An exclusive lock named `name` on this machine (e.g. one impact baseline)."""
    with FileLock(lock_dir() / f"{name}.lock"):
        yield

"""Several backbone processes on a multi-GPU machine each take a GPU of their own.

The claim is plain file locking, so it is tested with real processes and made-up device ids
(no GPU needed): what the processes hold is what matters, not what CUDA reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nag_assets.nag import backbone, devices
from nag_assets.nag.devices import claim_device

IDS = ["GPU-aaaa", "GPU-bbbb", "GPU-cccc"]
# the module alone, loaded from its file: a holder process need not import torch
HOLDER = f"""
import importlib.util, sys, time
from pathlib import Path
spec = importlib.util.spec_from_file_location("devices", {str(Path(devices.__file__))!r})
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
ids, folder = sys.argv[1].split(","), Path(sys.argv[2])
print(mod.claim_device(ids, folder), mod.claim_device(ids, folder), flush=True)
time.sleep(float(sys.argv[3]))
"""


def _holder(folder: Path, seconds: float) -> tuple[subprocess.Popen, int]:
    """A process that claims a device and keeps it for `seconds`: (process, its device)."""
    p = subprocess.Popen(
        [sys.executable, "-c", HOLDER, ",".join(IDS), str(folder), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    first, again = p.stdout.readline().split()
    assert first == again  # asking twice in one process gives the same device
    return p, int(first)


def test_processes_take_distinct_devices_and_free_them_when_they_die(tmp_path: Path) -> None:
    held = [_holder(tmp_path, 60) for _ in IDS]
    try:
        assert sorted(d for _, d in held) == [0, 1, 2]
        # all held: one more process still gets a device, shared by its pid
        extra = subprocess.run(
            [sys.executable, "-c", HOLDER, ",".join(IDS), str(tmp_path), "0"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert int(extra.stdout.split()[0]) in (0, 1, 2)
        # a killed holder frees its device for the next process
        victim, device = held[1]
        victim.kill()
        victim.wait()
        newcomer, got = _holder(tmp_path, 0)
        newcomer.wait()
        assert got == device
    finally:
        for p, _ in held:
            p.kill()
            p.wait()


def test_auto_device_claims_one_of_several_gpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """resolve_device('auto') with 3 visible GPUs returns cuda:<claimed>, with 1 plain cuda."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(backbone, "cuda_device_ids", lambda: IDS)
    monkeypatch.setattr(backbone, "claim_device", lambda ids: claim_device(ids, tmp_path / "locks"))
    holder, taken = _holder(tmp_path / "locks", 60)
    try:
        held = dict(devices._held)  # asking only for the kind of device claims nothing
        assert backbone.resolve_device("auto", claim=False) == torch.device("cuda")
        assert devices._held == held
        dev = backbone.resolve_device("auto")
        assert dev.type == "cuda" and dev.index != taken and dev.index in (0, 1, 2)
        monkeypatch.setattr(backbone, "cuda_device_ids", lambda: IDS[:1])
        assert backbone.resolve_device("auto") == torch.device("cuda")
    finally:
        holder.kill()
        holder.wait()

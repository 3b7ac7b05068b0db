"""dtype `auto`: bf16 where the hardware computes it natively (CUDA, AVX512-BF16 or AMX CPUs),
fp32 on other CPUs, whatever the user asks otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nag_assets.nag import backbone as bb

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def _probes(monkeypatch: pytest.MonkeyPatch, avx512_bf16: bool | None, amx: bool | None) -> None:
    for name, answer in (
        ("_is_avx512_bf16_supported", avx512_bf16),
        ("_is_amx_tile_supported", amx),
    ):
        if answer is None:
            monkeypatch.delattr(torch.cpu, name, raising=False)
        else:
            monkeypatch.setattr(torch.cpu, name, lambda a=answer: a)


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "expected"),
    [
        (True, False, torch.bfloat16),
        (False, True, torch.bfloat16),
        (True, True, torch.bfloat16),
        (False, False, torch.float32),
    ],
)
def test_auto_follows_torch_cpu_probe(monkeypatch, avx512_bf16, amx, expected) -> None:
    _probes(monkeypatch, avx512_bf16, amx)
    assert bb.cpu_has_native_bf16() == (expected == torch.bfloat16)
    assert bb.resolve_dtype(None, CPU) == expected
    assert bb.resolve_dtype("auto", CPU) == expected
    # CUDA is bf16 whatever the host CPU; an explicit dtype always wins
    assert bb.resolve_dtype("auto", CUDA) == torch.bfloat16
    assert bb.resolve_dtype("fp32", CPU) == torch.float32
    assert bb.resolve_dtype("bf16", CPU) == torch.bfloat16


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ("fpu avx2 avx512f avx512_bf16 amx_tile", True),
        ("fpu avx2 amx_bf16 amx_tile", True),
        ("fpu avx2 avx512f avx512bw avx512_vnni", False),  # AVX512 without bf16: emulated
    ],
)
def test_without_torch_probe_the_cpu_flags_decide(
    monkeypatch, tmp_path: Path, flags: str, expected: bool
) -> None:
    _probes(monkeypatch, None, None)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n\n")
    monkeypatch.setattr(bb, "CPUINFO", str(cpuinfo))
    assert bb.cpu_has_native_bf16() is expected
    assert bb.resolve_dtype(None, CPU) == (torch.bfloat16 if expected else torch.float32)


def test_cpu_flags_of_a_missing_file_are_none(tmp_path: Path) -> None:
    assert bb.cpu_flags(str(tmp_path / "nope")) == set()


@pytest.mark.parametrize("native", [True, False])
def test_code_version_follows_the_dtype_auto_resolves_to(monkeypatch, native: bool) -> None:
    """When the default flips, the UI marks NAGs stale; fp32 set by hand keeps them current."""
    from nag_assets.defs.resources import BackboneResource

    _probes(monkeypatch, native, native)

    def version(dtype):
        return BackboneResource(device="cpu", dtype=dtype).code_version()

    same = "bf16" if native else "fp32"
    other = "fp32" if native else "bf16"
    assert version(None) == version("auto") == version(same) != version(other)

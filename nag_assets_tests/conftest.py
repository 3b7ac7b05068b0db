"""Fixtures for the whole suite."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
import torch

import nag_assets.nag.extract as extract


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny test models gain nothing from threads; on a busy machine they cost 40x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def extraction_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The texts of every backbone pass the package makes while the test runs: extract_nags,
    extract_impacts and neuron_baseline all run the backbone through `extract._Run` (a test's
    own calls, to compute expectations, are not counted)."""
    calls: list[list[str]] = []
    real = extract._Run.__init__

    def counting(self, backbone, texts, *args, **kwargs):
        if _called_by_the_package():
            calls.append(list(texts))
        real(self, backbone, texts, *args, **kwargs)

    monkeypatch.setattr(extract._Run, "__init__", counting)
    return calls


def _called_by_the_package() -> bool:
    """Whether the first caller outside `nag.extract` is package code, not a test."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__") == extract.__name__:
        frame = frame.f_back
    name = frame.f_globals.get("__name__", "") if frame else ""
    return name.startswith("nag_assets.")

"""Fixtures for the whole suite."""

from __future__ import annotations

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
    """The texts of every backbone pass made while the test runs: extract_nags,
    extract_impacts and neuron_baseline all run the backbone through `extract._Run`."""
    calls: list[list[str]] = []
    real = extract._Run.__init__

    def counting(self, backbone, texts, *args, **kwargs):
        calls.append(list(texts))
        real(self, backbone, texts, *args, **kwargs)

    monkeypatch.setattr(extract._Run, "__init__", counting)
    return calls

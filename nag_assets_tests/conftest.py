"""Fixtures for the whole suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

import nag_assets.pipeline.common as pipeline_common


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny test models gain nothing from threads; on a busy machine they cost 40x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def extraction_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The texts of every backbone forward call (extract_nags) made while the test runs."""
    calls: list[list[str]] = []
    real = pipeline_common.extract_nags

    def counting(backbone, texts, *args, **kwargs):
        calls.append(list(texts))
        return real(backbone, texts, *args, **kwargs)

    monkeypatch.setattr(pipeline_common, "extract_nags", counting)
    return calls

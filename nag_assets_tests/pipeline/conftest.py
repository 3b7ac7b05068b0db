"""Fixtures for the plain pipeline steps: one tiny backbone, one torch thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from nag_assets.nag import Backbone
from nag_assets_tests.tiny import tiny_backbone


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """A 3-layer model gains nothing from threads; on a busy machine they cost 40x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def backbone() -> Backbone:
    return tiny_backbone()

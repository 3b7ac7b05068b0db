"""Fixtures for the plain pipeline steps: one tiny backbone."""

from __future__ import annotations

import pytest

from nag_assets.nag import Backbone
from nag_assets_tests.tiny import tiny_backbone


@pytest.fixture(scope="session")
def backbone() -> Backbone:
    return tiny_backbone()

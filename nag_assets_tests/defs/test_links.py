"""The mixture page's input links resolve to the partition's page from every page that shows
the metadata, with or without `dagster dev --path-prefix`."""

from __future__ import annotations

from urllib.parse import urljoin

import pytest

from nag_assets.defs.mixture import partition_link


@pytest.mark.parametrize("prefix", ["", "/dagster", "/a/b"])
@pytest.mark.parametrize(
    "page", ["assets/selected_mixture", "assets/selected_mixture?view=events", "runs/1f2e3d"]
)
def test_input_links_resolve_under_any_prefix(prefix: str, page: str) -> None:
    base = f"http://host:3000{prefix}/{page}"
    assert urljoin(base, partition_link("shard_nag", "wiki 000")) == (
        f"http://host:3000{prefix}/assets/shard_nag?view=partitions&partition=wiki%20000"
    )

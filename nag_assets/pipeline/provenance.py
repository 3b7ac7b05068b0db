"""What the UI shows of a selection beyond its facts, read from storage here so the Dagster
layer reads no table: the scores of the documents several targets chose, the score tables'
footers the selection used, and a shard NAG table's source version."""

from __future__ import annotations

import polars as pl

from nag_assets.pipeline.layout import (
    SHARD_NAG,
    SHARD_SCORES,
    NagFooter,
    ShardScoresFooter,
    table,
)
from nag_assets.storage import Storage


def several_scores(storage: Storage, facts: dict) -> list[tuple[str, str, list, dict]]:
    """(shard, id, the targets that chose it, its score against each target) of the documents
    more than one target chose (the first ones, as the facts keep them)."""
    targets = list(facts["targets"])
    several = facts["chosen_by_several_sample"]  # "shard/id" -> targets; shards have no "/"
    sample = [(*doc.split("/", 1), chosen) for doc, chosen in several.items()]
    scores: dict[tuple[str, str], dict] = {}
    folder = facts.get("score_folder", SHARD_SCORES)  # the ranker's scores
    for shard in sorted({s for s, _, _ in sample}):
        ids = [i for s, i, _ in sample if s == shard]
        df = storage.read_parquet(*table(folder, shard)).filter(pl.col("id").is_in(ids))
        for row in df.select("id", *[t for t in targets if t in df.columns]).iter_rows(named=True):
            scores[(shard, row.pop("id"))] = row
    return [(s, i, chosen, scores.get((s, i), {})) for s, i, chosen in sample]


def used_score_footers(storage: Storage, facts: dict) -> dict[str, dict]:
    """Each used shard's score-table footer, as long as it is still the version the selection
    used (a newer scoring may have replaced it since)."""
    out = {}
    for s, version in facts["shards"].items():
        footer = ShardScoresFooter.read(storage, SHARD_SCORES, s)
        out[s] = footer.to_meta() if footer and footer.version == version else {}
    return out


def source_version(storage: Storage, key: str, folder: str = SHARD_NAG) -> str:
    """The shard file's content hash as its NAG table (shard_nag, distill_sample) records it:
    what the pool sensor compares with the file it sees."""
    footer = NagFooter.read(storage, folder, key)
    return f"sha256:{footer.sha256 if footer else None}"

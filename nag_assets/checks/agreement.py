"""agreement: how much the NAG selection overlaps each baseline ranker's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

from nag_assets.checks.common import jaccard, ready, selections
from nag_assets.pipeline import ranker_scores
from nag_assets.pipeline.layout import rank_ids, table
from nag_assets.rankers import BASELINES, Embedder
from nag_assets.storage import Storage


def ranker_table(storage: Storage, ranker: str, usable: dict, targets: list[str], **kw):
    """One ranker's scores over the usable shards: id, tokens, a column per target, rank."""
    footers = ranker_scores.ranker_scores(storage, ranker, usable, targets, **kw)
    folder = ranker_scores.score_folder(ranker)
    return pl.concat(
        [
            (df := storage.read_parquet(*table(folder, s))).with_columns(
                rank=pl.Series(rank_ids(df["id"], s))
            )
            for s in sorted(usable)
            if footers[s]
        ]
    )


def ranker_selections(df: pl.DataFrame, targets: list[str], fraction: float) -> dict[str, set]:
    return selections(
        df.select(targets).to_numpy(),
        df["tokens"].to_numpy(),
        df["rank"].to_numpy(),
        targets,
        fraction,
    )


def agreement(
    storage: Storage,
    fraction: float = 0.2,
    rankers: Sequence[str] = BASELINES,
    targets: list[str] | None = None,
    embedder: Embedder | None = None,
    seed: int = 0,
) -> dict:
    """Jaccard of the NAG selection with each other ranker's, per target; `random_expected`
    is the mean Jaccard of two independent random selections of the same size (the floor)."""
    targets, usable = ready(storage, targets)
    tables = {
        r: ranker_table(storage, r, usable, targets, seed=seed, embedder=embedder)
        for r in ("nag", *rankers)
    }
    picks = {r: ranker_selections(df, targets, fraction) for r, df in tables.items()}
    pool = tables["nag"].height
    out: dict = {}
    for t in targets:
        row: dict[str, Any] = {"documents": {r: len(p[t]) for r, p in picks.items()}}
        for r in rankers:
            row[f"nag_vs_{r}"] = round(jaccard(picks["nag"][t], picks[r][t]), 4)
        p = len(picks["nag"][t]) / pool
        row["random_expected"] = round(p / (2 - p), 4)  # E|A&B| / E|A|B| for two p-samples
        out[t] = row
    between = {
        r: round(jaccard(picks[r][targets[0]], picks[r][targets[1]]), 4)
        for r in picks
        if len(targets) > 1
    }
    return {
        "check": "agreement",
        "fraction": fraction,
        "pool_documents": pool,
        "jaccard": out,
        # how different two targets' selections are, per ranker (first two targets)
        "between_targets": {"targets": targets[:2], **between} if between else {},
    }

"""The mixture page's picks: top documents and the cut-off in score order, with titles, and
explanations that add up to the stored NAG score."""

from __future__ import annotations

import polars as pl

from nag_assets.pipeline import mixture
from nag_assets.pipeline.picks import picks_markdown, target_picks
from nag_assets.storage import Storage
from nag_assets_tests.pipeline.test_quality_blend import pool  # noqa: F401  (fixture)


def test_picks_follow_the_selection_and_explain_the_score(pool: Storage) -> None:  # noqa: F811
    mixture.selected_mixture(pool, ["a", "b"], ["snow"], mixture.MixtureSettings(fraction=0.5))
    mix = mixture.read_mixture(pool).sort(["score", "id"], descending=[True, False])
    picks = target_picks(pool, top=3, edge=2)["snow"]
    assert [p.id for p in picks.top] == mix["id"].head(3).to_list()
    assert [p.id for p in picks.cutoff] == mix["id"].tail(2).to_list()
    assert picks.documents == mix.height
    assert picks.top[0].title == f"Title {picks.top[0].id}"
    scores = pl.concat(
        [
            pool.read_parquet("assets/shard_scores", f"{s}.parquet").with_columns(shard=pl.lit(s))
            for s in ("a", "b")
        ]
    )
    for p in picks.top:
        stored = scores.filter((pl.col("id") == p.id) & (pl.col("shard") == p.shard))["snow"][0]
        assert p.why is not None and abs(p.why.score - stored) < 1e-6
    md = picks_markdown(picks)
    assert picks.top[0].title in md and "(cut-off)" in md and "neurons L" in md


def test_a_baseline_mixture_has_picks_without_explanations(pool: Storage) -> None:  # noqa: F811
    mixture.selected_mixture(
        pool, ["a", "b"], ["snow"], mixture.MixtureSettings(fraction=0.5, ranker="random")
    )
    picks = target_picks(pool)["snow"]
    assert picks.top and all(p.why is None for p in picks.top)

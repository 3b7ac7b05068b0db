"""The mixture's quality blend against a by-hand recomputation over the whole pool."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from nag_assets.nag import Backbone
from nag_assets.pipeline import mixture, shards, targets
from nag_assets.pipeline.common import NagSettings
from nag_assets.sources.files import InputError
from nag_assets.storage import Storage

SETTINGS = NagSettings(top_k=4)


@pytest.fixture
def pool(tmp_path: Path, backbone: Backbone) -> Storage:
    (tmp_path / "targets").mkdir()
    (tmp_path / "shards").mkdir()
    lines = "".join(json.dumps({"text": f"snow on the hill {i}"}) + "\n" for i in range(5))
    (tmp_path / "targets" / "snow.jsonl").write_text(lines)
    rng = np.random.default_rng(3)
    for s in ("a", "b"):
        n = 8
        pl.DataFrame(
            {
                "id": [f"{s}{i}" for i in range(n)],
                "text": [f"doc {s}{i}: rain {'snow ' * (i % 3)}town" for i in range(n)],
                "edu": rng.uniform(0, 5, n).round(2),
                "title": [f"Title {s}{i}" for i in range(n)],
            }
        ).write_parquet(tmp_path / "shards" / f"{s}.parquet")
    store = Storage(str(tmp_path))
    targets.target_dataset(store, "snow", backbone.count_tokens)
    targets.target_nag(store, "snow", backbone, SETTINGS)
    for s in ("a", "b"):
        shards.shard_nag(store, s, backbone, SETTINGS)
        shards.shard_scores(store, s, ["snow"])
    return store


def _by_hand(store: Storage, weight: float, direction: str, fraction: float) -> set:
    rows = []
    for s in ("a", "b"):
        sc = store.read_parquet("assets/shard_scores", f"{s}.parquet")
        edu = pl.read_parquet(store.path("shards", f"{s}.parquet"))["edu"].to_list()
        rows += [(i, s, t, x, q) for i, t, x, q in zip(sc["id"], sc["tokens"], sc["snow"], edu)]
    x = np.array([r[3] for r in rows], dtype=np.float64)
    q = np.array([r[4] for r in rows], dtype=np.float64)
    nx = (x - x.min()) / (x.max() - x.min())
    nq = (q - q.min()) / (q.max() - q.min())
    nq = nq if direction == "higher" else 1 - nq
    blended = (1 - weight) * nx + weight * nq
    budget = int(np.floor(fraction * sum(r[2] for r in rows)))
    order = sorted(
        range(len(rows)), key=lambda k: (-np.float32(blended[k]), rows[k][0], rows[k][1])
    )
    kept, used = set(), 0
    for k in order:
        if used + rows[k][2] > budget:
            break
        used += rows[k][2]
        kept.add((rows[k][1], rows[k][0]))
    return kept


@pytest.mark.parametrize(
    ("weight", "direction"), [(0.5, "higher"), (0.8, "lower"), (0.0, "higher")]
)
def test_blended_selection_matches_by_hand(pool: Storage, weight: float, direction: str) -> None:
    settings = mixture.MixtureSettings(
        fraction=0.4, quality_column="edu", quality_weight=weight, quality_direction=direction
    )
    step = mixture.selected_mixture(pool, ["a", "b"], ["snow"], settings)
    got = set(
        zip(*mixture.read_mixture(pool).select("shard", "id").to_dict(as_series=False).values())
    )
    assert got == _by_hand(pool, weight, direction, 0.4)
    assert step.facts["quality_blend"] == {
        "column": "edu",
        "weight": weight,
        "direction": direction,
    }
    if weight == 0.0:  # the ranker alone: the plain mixture's documents
        plain = mixture.selected_mixture(
            pool, ["a", "b"], ["snow"], mixture.MixtureSettings(fraction=0.4)
        )
        assert plain.version != step.version
        again = set(
            zip(*mixture.read_mixture(pool).select("shard", "id").to_dict(as_series=False).values())
        )
        assert again == got


def test_missing_or_bad_quality_column_is_named(pool: Storage) -> None:
    with pytest.raises(InputError, match=r"a\.parquet: no quality column 'fineweb'"):
        mixture.selected_mixture(
            pool, ["a", "b"], ["snow"], mixture.MixtureSettings(quality_column="fineweb")
        )
    with pytest.raises(InputError, match=r"a\.parquet: quality column 'text' is not numeric"):
        mixture.selected_mixture(
            pool, ["a", "b"], ["snow"], mixture.MixtureSettings(quality_column="text")
        )
    with pytest.raises(InputError, match=r"mixture: quality_weight must be <= 1 \(given 2"):
        mixture.MixtureSettings(quality_column="edu", quality_weight=2)

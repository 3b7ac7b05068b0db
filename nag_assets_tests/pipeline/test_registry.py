"""The ranker registry: every ranker module is found, and a new ranker is one module whose
scores the one writer stores and the mixture selects by, with no other file touched."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import nag_assets.rankers as rankers_package
from nag_assets.nag import Backbone
from nag_assets.pipeline import mixture, shards, targets
from nag_assets.pipeline.common import NagSettings
from nag_assets.pipeline.ranker_scores import score_folder
from nag_assets.rankers import registry
from nag_assets.sources.files import InputError
from nag_assets.storage import Storage

LENGTH_RANKER = """
import numpy as np
from nag_assets.rankers.registry import Ranker

def _score(inputs, state, shard):
    lengths = np.array([len(t) for t in inputs.shard_texts(shard)], dtype=np.float32)
    return np.repeat((lengths / state)[:, None], len(inputs.targets), axis=1)

def _fit(inputs):
    return max(len(t) for s in inputs.shards for t in inputs.shard_texts(s))

RANKER = Ranker("by_length", "longer texts first", score=_score, fit=_fit)
"""


def test_every_ranker_module_is_registered() -> None:
    assert registry.names() == (
        "nag",
        "hybrid",
        "nag_contrastive",
        "nag_distilled",
        "random",
        "dsir",
        "embedding",
    )
    assert registry.get("random").uses_seed and not registry.get("dsir").uses_seed
    assert registry.get("dsir").whole_pool and registry.get("nag_contrastive").whole_pool
    assert not registry.get("nag").stored  # its table is shard_scores
    with pytest.raises(InputError, match=r"unknown ranker 'nope'; choose one of \['nag'"):
        registry.get("nope")


@pytest.fixture
def length_ranker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A ranker module dropped beside the others (in a folder on the package's path)."""
    folder = tmp_path / "more_rankers"
    folder.mkdir()
    (folder / "by_length.py").write_text(LENGTH_RANKER)
    monkeypatch.setattr(rankers_package, "__path__", [*rankers_package.__path__, str(folder)])
    registry.registry.cache_clear()
    yield registry.get("by_length")
    registry.registry.cache_clear()
    sys.modules.pop("nag_assets.rankers.by_length", None)


def test_a_new_ranker_is_one_module(length_ranker, tmp_path: Path, backbone: Backbone) -> None:
    root = tmp_path / "root"
    for folder, name, texts in [
        ("targets", "t.jsonl", [f"target text number {i}" for i in range(6)]),
        ("shards", "s.jsonl", ["x" * n for n in (5, 40, 12, 30, 2, 25)]),
    ]:
        (root / folder).mkdir(parents=True)
        lines = [json.dumps({"id": f"d{i}", "text": t}) for i, t in enumerate(texts)]
        (root / folder / name).write_text("\n".join(lines) + "\n")
    store = Storage(str(root))
    settings = NagSettings(top_k=4)
    targets.target_dataset(store, "t", backbone.count_tokens)
    targets.target_nag(store, "t", backbone, settings)
    shards.shard_nag(store, "s", backbone, settings)
    shards.shard_scores(store, "s", ["t"])

    step = mixture.selected_mixture(
        store, ["s"], ["t"], mixture.MixtureSettings(fraction=0.5, ranker="by_length")
    )
    table = pl.read_parquet(root / score_folder("by_length") / "s.parquet")
    np.testing.assert_allclose(table["t"].to_numpy(), np.array([5, 40, 12, 30, 2, 25]) / 40)
    picked = mixture.read_mixture(store)
    tokens = dict(zip(table["id"], table["tokens"]))
    budget = step.facts["targets"]["t"]["budget"]
    # longest first while they fit: an independent greedy fill of the budget
    expected, used = [], 0
    for doc in sorted(tokens, key=lambda d: -table.filter(pl.col("id") == d)["t"][0]):
        if used + tokens[doc] <= budget:
            expected.append(doc)
            used += tokens[doc]
        else:
            break
    assert sorted(picked["id"].to_list()) == sorted(expected)
    assert set(picked["ranker"].to_list()) == {"by_length"}

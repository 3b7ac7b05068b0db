"""Presets and the layer subset through the steps: `paper` is the paper's method exactly,
`tuned` scores the last third of the layers, and a subset rescores without re-extracting the
pool (its NAGs stay whole)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nag_assets.defs.resources import BackboneResource
from nag_assets.nag import Backbone, build_profile, extract_nags, score_many
from nag_assets.pipeline import shards, targets
from nag_assets.pipeline.common import PRESETS, NagSettings
from nag_assets.sources.files import InputError
from nag_assets.storage import Storage, digest


def _put(root: Path, folder: str, name: str, texts: list[str]) -> None:
    (root / folder).mkdir(exist_ok=True)
    (root / folder / name).write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))


def test_paper_preset_is_the_dataclass_default_and_keeps_its_code_version() -> None:
    assert NagSettings.preset("paper") == NagSettings()
    paper = BackboneResource(preset="paper")
    assert paper.settings() == NagSettings()
    # the code version the graph always had for these settings: stored outputs stay current
    assert paper.code_version() == digest("embedded", paper.dtype_in_use(), 5, 120)
    tuned = BackboneResource()
    assert tuned.settings() == NagSettings(impact="normalized", layers="from:0.67")
    assert tuned.code_version() != paper.code_version()
    assert BackboneResource(preset="paper", layers="last").settings().layers == "last"
    assert PRESETS["tuned"]["neurons"] == PRESETS["paper"]["neurons"] == "up_proj"


def test_env_names_preset_layers_and_neurons(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAG_PRESET", "paper")
    monkeypatch.setenv("NAG_LAYERS", "20-29")
    monkeypatch.setenv("NAG_NEURONS", "down_proj")
    r = BackboneResource.from_env()
    assert (r.settings().impact, r.settings().layers, r.neuron_type()) == (
        "raw",
        "20-29",
        "down_proj",
    )


def test_bad_settings_name_the_setting() -> None:
    with pytest.raises(InputError, match="layers 'lats'"):
        NagSettings(layers="lats")
    with pytest.raises(InputError, match="preset 'best'"):
        BackboneResource(preset="best").settings()


def test_layer_subset_scores_the_sliced_nags_and_keeps_the_pool_nags(
    tmp_path: Path, backbone: Backbone
) -> None:
    store = Storage(str(tmp_path))
    examples = [f"snow fell {i} times on the hill" for i in range(6)]
    docs = [f"document {i}: rain or snow {i % 3} over town" for i in range(9)]
    _put(tmp_path, "targets", "snow.jsonl", examples)
    _put(tmp_path, "shards", "pool.jsonl", docs)
    targets.target_dataset(store, "snow", backbone.count_tokens)
    every, last = NagSettings(top_k=4), NagSettings(top_k=4, layers="last")
    for settings in (every, last):
        targets.target_nag(store, "snow", backbone, settings)
        pool = shards.shard_nag(store, "pool", backbone, settings)
        assert pool.skipped == (settings is last)  # the pool's NAGs do not depend on layers
        shards.shard_scores(store, "pool", ["snow"])
    got = store.read_parquet("assets/shard_scores", "pool.parquet")["snow"].to_numpy()
    tn, _ = extract_nags(backbone, examples, 4)
    dn, _ = extract_nags(backbone, docs, 4)
    keep = [backbone.num_layers - 1]
    want = score_many(dn[:, keep], build_profile(tn[:, keep], backbone.d_ff)[None])[:, 0]
    np.testing.assert_array_equal(got, want)
    meta = store.read_meta("assets/target_nag", "snow.parquet")
    assert meta["layer_subset"] == keep
    assert "layer_subset" not in store.read_meta("assets/shard_nag", "pool.parquet")


def test_tuned_preset_on_a_tiny_backbone(tmp_path: Path, backbone: Backbone) -> None:
    """from:0.67 of 3 layers is layer 2; impact is normalized by the embedded sample."""
    store = Storage(str(tmp_path))
    _put(tmp_path, "targets", "t.jsonl", [f"an example {i}" for i in range(5)])
    targets.target_dataset(store, "t", backbone.count_tokens)
    facts = targets.target_nag(store, "t", backbone, NagSettings.preset("tuned", top_k=4)).facts
    assert facts["layers_scored"] == [2] and facts["impact"] == "normalized"
    profile, footer = targets.load_profile(store, "t")
    assert footer.layer_subset == [2] and not profile[:2].any()
    np.testing.assert_allclose(profile[2].sum(), 3.0)  # L / |S| times a row summing to 1

"""The target assets under the default (tuned) preset: target_dataset counts tokens with the
tokenizer alone, and target_nag's typed facts (`layers_scored`, a list) reach the UI whole."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
import transformers

from nag_assets.definitions import build_defs
from nag_assets.defs.common import result
from nag_assets.defs.resources import BackboneResource, StorageResource
from nag_assets.nag import load_backbone
from nag_assets.pipeline.common import StepResult
from nag_assets.pipeline.extractor import BackboneSpec
from nag_assets_tests.defs.helpers import science_texts

TEXTS = science_texts(12)


def _no_model(*args, **kwargs):
    raise AssertionError("target_dataset loaded the model")


def _materialize(defs: dg.Definitions, asset: str, instance: dg.DagsterInstance) -> None:
    assets = list(defs.assets or [])
    key = dg.AssetKey(asset)
    run = dg.materialize(assets, selection=[key], partition_key="water", instance=instance,
                         resources=defs.resources)  # fmt: skip
    assert run.success


@pytest.mark.slow  # two graph runs (a tiny model)
def test_tuned_target_assets(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "targets").mkdir()
    lines = "".join(json.dumps({"text": t}) + "\n" for t in TEXTS)
    (tmp_path / "targets" / "water.jsonl").write_text(lines)
    backbone = BackboneResource(model=str(tiny_model_dir), top_k=4)  # the tuned preset
    defs = build_defs(StorageResource(root=str(tmp_path)), backbone)
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("targets", ["water"])
        with monkeypatch.context() as m:
            m.setattr(BackboneSpec, "load", _no_model)
            m.setattr(transformers.AutoModelForCausalLM, "from_pretrained", _no_model)
            _materialize(defs, "target_dataset", instance)
        _materialize(defs, "target_nag", instance)
        record = instance.get_latest_materialization_event(dg.AssetKey("target_nag"))
    tokens = pl.read_parquet(tmp_path / "assets" / "target_dataset" / "water.parquet")["tokens"]
    want = load_backbone(str(tiny_model_dir), device="cpu").count_tokens(TEXTS)
    np.testing.assert_array_equal(tokens.to_numpy(), want)
    meta = record.asset_materialization.metadata
    assert isinstance(meta["layers_scored"], dg.JsonMetadataValue)
    assert meta["layers_scored"].value == [2]  # from:0.67 of the tiny model's 3 layers


def test_lists_and_dicts_become_json_none_stays_out() -> None:
    facts = {"layers": (1, np.int64(2)), "by": {3: np.float32(0.5)}, "gone": None, "n": 4}
    meta = result(StepResult("v", False, facts)).metadata
    assert meta["layers"].value == [1, 2] and meta["by"].value == {"3": 0.5}
    assert "gone" not in meta and meta["n"] == 4 and meta["skipped_unchanged"] is False
    odd = result(StepResult("v", False, {"odd": [object()]})).metadata["odd"]
    assert isinstance(odd, dg.TextMetadataValue)

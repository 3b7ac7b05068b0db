"""The plain pipeline steps (no Dagster): clear errors for bad inputs, skipping when current."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from nag_assets.nag import Backbone, build_profile, extract_nags
from nag_assets.pipeline import mixture, shards, targets
from nag_assets.pipeline.common import NagSettings
from nag_assets.sources.files import InputError
from nag_assets.storage import Storage

SETTINGS = NagSettings(top_k=4)


def _texts(n: int, word: str = "rain") -> list[str]:
    return [
        f"Document {i}: the {word} fell {i} times over the hill near town {i % 3}."
        for i in range(n)
    ]


def _jsonl(texts: list[str]) -> bytes:
    return "".join(json.dumps({"text": t}) + "\n" for t in texts).encode()


@pytest.fixture
def store(tmp_path: Path) -> Storage:
    (tmp_path / "targets").mkdir()
    (tmp_path / "shards").mkdir()
    return Storage(str(tmp_path))


def _sizes(calls: list[list[str]]) -> list[int]:
    return [len(c) for c in calls]


def _put(store: Storage, folder: str, name: str, data: bytes) -> None:
    Path(store.path(folder, name)).write_bytes(data)


def _parquet(df: pl.DataFrame, path: Path) -> bytes:
    df.write_parquet(path)
    return path.read_bytes()


# ---- bad inputs: the error names the file (and the spot) ---------------------------------


def test_shard_without_text_column(store: Storage, backbone: Backbone, tmp_path: Path) -> None:
    data = _parquet(pl.DataFrame({"id": ["a", "b"], "body": ["x", "y"]}), tmp_path / "x.parquet")
    _put(store, "shards", "notext.parquet", data)
    with pytest.raises(InputError, match=r"notext\.parquet: no `text` column") as err:
        shards.shard_nag(store, "notext", backbone, SETTINGS)
    assert "body" in str(err.value)  # the columns it does have
    assert not store.exists("assets/shard_nag/notext.parquet")


def test_jsonl_with_an_invalid_line(store: Storage, backbone: Backbone) -> None:
    lines = _jsonl(_texts(2)) + b'{"text": "broken\n' + _jsonl(_texts(1))
    _put(store, "shards", "broken.jsonl", lines)
    with pytest.raises(InputError, match=r"broken\.jsonl: line 3 is not valid JSON"):
        shards.shard_nag(store, "broken", backbone, SETTINGS)
    _put(store, "targets", "badtarget.jsonl", _jsonl(_texts(6)) + b"[1, 2]\n")
    with pytest.raises(InputError, match=r"badtarget\.jsonl: line 7 is not a JSON object"):
        targets.target_dataset(store, "badtarget", backbone.count_tokens)


def test_corrupt_parquet(store: Storage, backbone: Backbone, tmp_path: Path) -> None:
    good = _parquet(pl.DataFrame({"text": _texts(5)}), tmp_path / "good.parquet")
    _put(store, "shards", "corrupt.parquet", good[: len(good) // 2])
    with pytest.raises(InputError, match=r"corrupt\.parquet: not a readable parquet file"):
        shards.shard_nag(store, "corrupt", backbone, SETTINGS)


def test_corrupt_gzip(store: Storage, backbone: Backbone) -> None:
    data = gzip.compress(_jsonl(_texts(5)))
    _put(store, "shards", "cut.jsonl.gz", data[:-10])
    with pytest.raises(InputError, match=r"cut\.jsonl\.gz: gzip data is corrupt"):
        shards.shard_nag(store, "cut", backbone, SETTINGS)


@pytest.mark.parametrize("name", ["empty.parquet", "empty.jsonl"])
def test_empty_shard(store: Storage, backbone: Backbone, tmp_path: Path, name: str) -> None:
    if name.endswith(".parquet"):
        data = _parquet(pl.DataFrame({"text": []}, schema={"text": pl.Utf8}), tmp_path / name)
    else:
        data = b"\n\n"
    _put(store, "shards", name, data)
    with pytest.raises(InputError, match=re.escape(f"{name}: the shard holds no documents")):
        shards.shard_nag(store, "empty", backbone, SETTINGS)


def test_target_with_too_few_examples(store: Storage, backbone: Backbone) -> None:
    # six lines, but two are blank or whitespace-only: four usable examples
    _put(store, "targets", "few.jsonl", _jsonl([*_texts(4), "", "   \t "]))
    with pytest.raises(
        InputError, match=r"target 'few' \(few\.jsonl\): 4 usable examples, at least 5"
    ):
        targets.target_dataset(store, "few", backbone.count_tokens)
    assert not store.exists("assets/target_dataset/few.parquet")


def test_missing_upstream_is_named(store: Storage, backbone: Backbone) -> None:
    with pytest.raises(InputError, match=r"target_dataset\[nothing\] has not been materialized"):
        targets.target_nag(store, "nothing", backbone, SETTINGS)
    with pytest.raises(InputError, match=r"shard 'nothing': no file for it"):
        shards.shard_nag(store, "nothing", backbone, SETTINGS)


# ---- the steps compute the right thing, and skip when their output is current -------------


def test_steps_compute_then_skip_when_current(
    store: Storage, backbone: Backbone, extraction_calls: list[list[str]]
) -> None:
    target_texts = _texts(6, "snow")
    doc_texts = _texts(9, "rain")
    _put(store, "targets", "snow.jsonl", _jsonl(target_texts))
    _put(store, "shards", "pool.jsonl", _jsonl(doc_texts))

    ds = targets.target_dataset(store, "snow", backbone.count_tokens)
    tn = targets.target_nag(store, "snow", backbone, SETTINGS)
    sn = shards.shard_nag(store, "pool", backbone, SETTINGS)
    sc = shards.shard_scores(store, "pool", ["snow"])
    mx = mixture.selected_mixture(store, ["pool"], ["snow"], mixture.MixtureSettings())
    assert not any(s.skipped for s in (ds, tn, sn, sc, mx))
    assert _sizes(extraction_calls) == [6, 9]
    assert ds.facts["examples"] == 6 and tn.facts["examples_extracted"] == 6
    assert sn.facts["documents_extracted"] == 9

    # stored outputs agree with a direct computation on the same backbone
    nags, _ = extract_nags(backbone, target_texts, 4)
    profile = build_profile(nags, backbone.d_ff)
    stored = store.read_npy("assets/target_nag", "snow.profile.npy")
    np.testing.assert_allclose(stored, profile, rtol=1e-6)
    table = store.read_parquet("assets/shard_nag", "pool.parquet")
    assert table["id"].to_list() == [f"pool/{i}" for i in range(9)]
    assert table["tokens"].to_list() == backbone.count_tokens(doc_texts).tolist()

    again = [
        targets.target_dataset(store, "snow", backbone.count_tokens),
        targets.target_nag(store, "snow", backbone, SETTINGS),
        shards.shard_nag(store, "pool", backbone, SETTINGS),
        shards.shard_scores(store, "pool", ["snow"]),
        mixture.selected_mixture(store, ["pool"], ["snow"], mixture.MixtureSettings()),
    ]
    assert [s.skipped for s in again] == [True] * 5
    assert [s.version for s in again] == [s.version for s in (ds, tn, sn, sc, mx)]
    assert _sizes(extraction_calls) == [6, 9]  # no backbone work the second time
    assert again[1].facts["examples_extracted"] == 0
    assert again[2].facts["documents_extracted"] == 0


def test_changed_input_or_settings_are_not_skipped(
    store: Storage, backbone: Backbone, extraction_calls: list[list[str]]
) -> None:
    _put(store, "shards", "pool.jsonl", _jsonl(_texts(8)))
    first = shards.shard_nag(store, "pool", backbone, SETTINGS)
    # other NAG settings: a new version, recomputed
    wider = shards.shard_nag(store, "pool", backbone, NagSettings(top_k=5))
    assert not wider.skipped and wider.version != first.version
    # only speed changes (batch size): the same version, skipped
    batch = shards.shard_nag(store, "pool", backbone, NagSettings(top_k=5, batch_size=3))
    assert batch.skipped and batch.version == wider.version
    # new content: recomputed
    _put(store, "shards", "pool.jsonl", _jsonl(_texts(5)))
    changed = shards.shard_nag(store, "pool", backbone, NagSettings(top_k=5))
    assert not changed.skipped and changed.facts["documents_extracted"] == 5
    assert _sizes(extraction_calls) == [8, 8, 5]


def test_mixture_leaves_out_shards_scored_against_an_older_target(
    store: Storage, backbone: Backbone
) -> None:
    _put(store, "targets", "snow.jsonl", _jsonl(_texts(6, "snow")))
    for name in ("a", "b"):
        _put(store, "shards", f"{name}.jsonl", _jsonl(_texts(7, name)))
        shards.shard_nag(store, name, backbone, SETTINGS)
    targets.target_dataset(store, "snow", backbone.count_tokens)
    targets.target_nag(store, "snow", backbone, SETTINGS)
    for name in ("a", "b"):
        shards.shard_scores(store, name, ["snow"])
    # the target changes; only shard a is re-scored against its new profile
    _put(store, "targets", "snow.jsonl", _jsonl(_texts(8, "hail")))
    targets.target_dataset(store, "snow", backbone.count_tokens)
    targets.target_nag(store, "snow", backbone, SETTINGS)
    shards.shard_scores(store, "a", ["snow"])

    mx = mixture.selected_mixture(store, ["a", "b"], ["snow"], mixture.MixtureSettings())
    assert list(mx.facts["shards"]) == ["a"]
    assert "current version of ['snow']" in mx.facts["shards_left_out"]["b"]
    assert set(mixture.read_mixture(store)["shard"].to_list()) <= {"a"}

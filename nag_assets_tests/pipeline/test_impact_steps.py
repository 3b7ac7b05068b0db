"""Baseline-normalized impact in the steps: the sample, the cached baseline, the NAGs, and
settings that keep raw and normalized NAGs apart."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nag_assets.nag import Backbone, extract_nags, neuron_baseline
from nag_assets.pipeline import impact, shards, targets
from nag_assets.pipeline.common import NagSettings, nags_of
from nag_assets.pipeline.layout import SHARD_NAG
from nag_assets.sources.files import InputError
from nag_assets.storage import Storage

SAMPLE_TEXTS = [f"Sample {i}: a river runs past mill number {i} in the valley." for i in range(6)]
POOL = [f"Pool document {i}: snow covers peak {i} every winter, said the guide." for i in range(9)]


def _jsonl(texts: list[str]) -> bytes:
    return "".join(json.dumps({"text": t}) + "\n" for t in texts).encode()


@pytest.fixture
def store(tmp_path: Path) -> Storage:
    for folder in ("targets", "shards", "samples"):
        (tmp_path / folder).mkdir()
    (tmp_path / "samples" / "mine.jsonl").write_bytes(_jsonl(SAMPLE_TEXTS))
    (tmp_path / "shards" / "pool.jsonl").write_bytes(_jsonl(POOL))
    return Storage(str(tmp_path))


NORMALIZED = NagSettings(top_k=4, impact="normalized", impact_sample="samples/mine.jsonl")


def test_shard_nag_normalizes_by_the_sample_mean(store: Storage, backbone: Backbone) -> None:
    step = shards.shard_nag(store, "pool", backbone, NORMALIZED)
    meta = store.read_meta(SHARD_NAG, "pool.parquet")
    assert meta["impact"] == "normalized" and not step.skipped
    baseline = neuron_baseline(backbone, SAMPLE_TEXTS)
    expected, _ = extract_nags(backbone, POOL, 4, baseline=baseline)
    got = nags_of(store.read_parquet(SHARD_NAG, "pool.parquet"), meta)
    np.testing.assert_array_equal(got, expected)
    assert (got != extract_nags(backbone, POOL, 4)[0]).any()
    # the baseline is kept once in the NAG store and reused
    cached = list(Path(store.nags().path(impact.FOLDER)).glob("*.npy"))
    assert len(cached) == 1
    np.testing.assert_allclose(np.load(cached[0]), baseline, rtol=1e-6)
    assert shards.shard_nag(store, "pool", backbone, NORMALIZED).skipped


def test_switching_impact_re_extracts_and_fingerprints_differ(store, backbone) -> None:
    raw = shards.shard_nag(store, "pool", backbone, NagSettings(top_k=4))
    normalized = shards.shard_nag(store, "pool", backbone, NORMALIZED)
    assert not normalized.skipped and normalized.version != raw.version
    embedded = NagSettings(top_k=4, impact="normalized")
    assert shards.shard_nag(store, "pool", backbone, embedded).version != normalized.version
    # a target made with other settings cannot be scored against these shards
    (Path(store.path("targets")) / "t.jsonl").write_bytes(_jsonl(POOL[:5]))
    targets.target_dataset(store, "t", backbone.count_tokens)
    targets.target_nag(store, "t", backbone, NagSettings(top_k=4))
    with pytest.raises(InputError, match="different backbones or NAG settings"):
        shards.shard_scores(store, "pool", ["t"])
    targets.target_nag(store, "t", backbone, embedded)
    assert not shards.shard_scores(store, "pool", ["t"]).skipped


def test_a_changed_sample_changes_the_nags(store: Storage, backbone: Backbone) -> None:
    first = shards.shard_nag(store, "pool", backbone, NORMALIZED)
    (Path(store.path("samples")) / "mine.jsonl").write_bytes(_jsonl(SAMPLE_TEXTS[:3]))
    assert shards.shard_nag(store, "pool", backbone, NORMALIZED).version != first.version


def test_embedded_sample_is_spread_wikipedia(store: Storage) -> None:
    texts, version = impact.sample_texts(store, "embedded")
    assert len(texts) == impact.EMBEDDED_DOCS == len(set(texts))
    assert impact.sample_texts(store, "embedded") == (texts, version)


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        ("samples/none.jsonl", r"impact_sample 'samples/none.jsonl': cannot read it"),
        ("../outside.jsonl", r"impact_sample '\.\./outside\.jsonl': cannot read it"),
        ("samples/bad.jsonl", r"bad\.jsonl: line 1 is not valid JSON"),
    ],
)
def test_bad_samples_are_named(store: Storage, backbone, sample: str, message: str) -> None:
    (Path(store.path("samples")) / "bad.jsonl").write_text("{oops\n")
    settings = NagSettings(top_k=4, impact="normalized", impact_sample=sample)
    with pytest.raises(InputError, match=message):
        shards.shard_nag(store, "pool", backbone, settings)
    assert not store.exists("assets/shard_nag/pool.parquet")


def test_unknown_impact_is_refused() -> None:
    with pytest.raises(InputError, match=r"impact 'mean' must be one of \['raw', 'normalized'\]"):
        NagSettings(impact="mean")

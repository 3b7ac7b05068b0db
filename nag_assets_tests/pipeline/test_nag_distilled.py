"""The nag_distilled ranker in the pipeline: trained on the sample's NAG scores, it scores
every shard from text with no backbone pass, reruns skip, and bad settings are named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from nag_assets import distill
from nag_assets.nag import Backbone
from nag_assets.pipeline import mixture, shards, targets
from nag_assets.pipeline.common import NagSettings
from nag_assets.pipeline.ranker_scores import score_folder
from nag_assets.rankers.nag_distilled import SETTINGS
from nag_assets.sources.files import InputError
from nag_assets.storage import Storage

TARGETS = ["plants", "stars"]
SHARDS = ["s0", "s1"]
TOPICS = {
    "plants": "leaf root seed flower grows water soil green",
    "stars": "star light sky planet orbit night space bright",
}


def _write(root: Path, folder: str, name: str, texts: list[str]) -> None:
    (root / folder).mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"id": f"d{i}", "text": t}) for i, t in enumerate(texts)]
    (root / folder / name).write_text("\n".join(lines) + "\n")


@pytest.fixture
def store(tmp_path: Path, backbone: Backbone) -> Storage:
    """Two targets and two shards of 40 mixed texts, NAG-scored by the plain steps."""
    rng = np.random.default_rng(0)
    words = " ".join(TOPICS.values()).split()
    for t, topic in TOPICS.items():
        _write(tmp_path, "targets", f"{t}.jsonl", [f"{topic} {i}" for i in range(8)])
    for s in SHARDS:
        texts = [" ".join(rng.choice(words, size=rng.integers(4, 12))) for _ in range(40)]
        _write(tmp_path, "shards", f"{s}.jsonl", texts)
    storage, settings = Storage(str(tmp_path)), NagSettings(top_k=4)
    for t in TARGETS:
        targets.target_dataset(storage, t, backbone.count_tokens)
        targets.target_nag(storage, t, backbone, settings)
    for s in SHARDS:
        shards.shard_nag(storage, s, backbone, settings)
        shards.shard_scores(storage, s, TARGETS)
    return storage


def _select(store: Storage, backbone: Backbone, fraction: float = 0.5):
    settings = mixture.MixtureSettings(ranker="nag_distilled", sample_fraction=fraction)
    return mixture.selected_mixture(store, SHARDS, TARGETS, settings, backbone=lambda: backbone)


def _tables(store: Storage, folder: str) -> pl.DataFrame:
    return pl.concat([store.read_parquet(folder, f"{s}.parquet") for s in SHARDS])


def test_scores_come_from_text_alone_as_the_library_computes_them(
    store: Storage, backbone: Backbone, extraction_calls: list[list[str]]
) -> None:
    extraction_calls.clear()
    _select(store, backbone)
    assert extraction_calls == []  # no backbone pass: the sample's NAGs were already there
    scores, nag = (
        _tables(store, score_folder("nag_distilled")),
        _tables(store, "assets/shard_scores"),
    )
    assert scores.select("id", "tokens").equals(nag.select("id", "tokens"))
    assert scores.columns == nag.columns and scores.schema[TARGETS[0]] == pl.Float32
    # independently: draw the sample, train on its shard_scores rows, score every text
    ids = {
        s: store.read_parquet("assets/shard_scores", f"{s}.parquet")["id"].to_list() for s in SHARDS
    }
    masks = distill.draw(ids, distill.SampleSettings(0.5))
    texts = {
        s: [
            json.loads(x)["text"]
            for x in store.read_bytes("shards", f"{s}.jsonl").decode().splitlines()
        ]
        for s in SHARDS
    }
    sample = [t for s in SHARDS for t, m in zip(texts[s], masks[s]) if m]
    labels = nag.select(TARGETS).to_numpy()[np.concatenate([masks[s] for s in SHARDS])]
    read = distill.hf_reader(backbone.tokenizer, NagSettings().max_tokens)
    emb = backbone.model.get_input_embeddings().weight.detach().float().numpy()
    scorer = distill.train(read, emb, sample, labels, TARGETS, SETTINGS, NagSettings().max_tokens)
    expected = scorer.score(read, [t for s in SHARDS for t in texts[s]])
    assert np.array_equal(scores.select(TARGETS).to_numpy(), expected)
    assert ((expected > 0) & (expected < 1)).all()


def test_reruns_skip_and_the_sample_is_part_of_the_version(
    store: Storage, backbone: Backbone
) -> None:
    first = _select(store, backbone)
    again = _select(store, backbone)
    assert again.skipped and again.version == first.version
    bigger = _select(store, backbone, fraction=0.8)
    assert bigger.version != first.version
    assert mixture.read_mixture(store)["ranker"].unique().to_list() == ["nag_distilled"]


def test_bad_settings_are_named(store: Storage) -> None:
    with pytest.raises(
        InputError, match=r"mixture.sample_fraction: sample_fraction 0(\.0)? must be in"
    ):
        mixture.MixtureSettings(ranker="nag_distilled", sample_fraction=0)
    settings = mixture.MixtureSettings(ranker="nag_distilled", sample_fraction=0.01)
    with pytest.raises(InputError, match=r"sample_fraction 0\.01 draws [01] documents"):
        mixture.selected_mixture(store, SHARDS, TARGETS, settings, backbone=lambda: None)
    settings = mixture.MixtureSettings(ranker="nag_distilled", sample_fraction=0.5)
    with pytest.raises(InputError, match="needs the backbone's tokenizer"):
        mixture.selected_mixture(store, SHARDS, TARGETS, settings)

"""The distilled scoring path's steps (`pipeline.distilled`): the backbone reads only the
hashed sample, each target's scorer learns its sample's NAG scores, shards are scored from
text into shard_scores tables, reruns skip and are byte-identical, bad settings are named."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.stats import spearmanr

from nag_assets import distill
from nag_assets.nag import Backbone, build_profile, extract_nags, score_many
from nag_assets.pipeline import distilled, mixture, targets
from nag_assets.pipeline.common import NagSettings
from nag_assets.pipeline.layout import (
    DISTILL_SAMPLE,
    SHARD_NAG,
    SHARD_SCORES,
    ScorerFooter,
    scorer_model,
    table,
)
from nag_assets.sources.files import InputError
from nag_assets.storage import Storage

TARGETS = ["plants", "stars"]
SHARDS = ["s0", "s1"]
TOPICS = {
    "plants": "leaf root seed flower grows water soil green",
    "stars": "star light sky planet orbit night space bright",
}
SETTINGS = NagSettings(top_k=4)
SAMPLE = distill.SampleSettings(fraction=0.5, seed=7)
MODEL = distill.DistillSettings()


def _write(root: Path, folder: str, name: str, texts: list[str]) -> None:
    (root / folder).mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"id": f"d{i}", "text": t}) for i, t in enumerate(texts)]
    (root / folder / name).write_text("\n".join(lines) + "\n")


def _texts(seed: int, n: int = 40) -> list[str]:
    rng = np.random.default_rng(seed)
    words = " ".join(TOPICS.values()).split()
    return [" ".join(rng.choice(words, size=rng.integers(4, 12))) for _ in range(n)]


def in_sample(shard: str, doc_id: str, sample: distill.SampleSettings = SAMPLE) -> bool:
    """The draw, recomputed from its definition: blake2b-64 of (seed, shard, id), top 53 bits."""
    h = hashlib.blake2b(f"{sample.seed}\0{shard}\0{doc_id}".encode(), digest_size=8).digest()
    return (int.from_bytes(h, "little") >> 11) / 2**53 < sample.fraction


def make_root(root: Path, backbone: Backbone) -> Storage:
    for t, topic in TOPICS.items():
        _write(root, "targets", f"{t}.jsonl", [f"{topic} {i}" for i in range(8)])
    for k, s in enumerate(SHARDS):
        _write(root, "shards", f"{s}.jsonl", _texts(k))
    storage = Storage(str(root))
    for t in TARGETS:
        targets.target_dataset(storage, t, backbone.count_tokens)
        targets.target_nag(storage, t, backbone, SETTINGS)
    return storage


def run_path(storage: Storage, backbone: Backbone) -> dict:
    """Every step of the distilled path once: sample, scorers, score tables."""
    done = {}
    for s in SHARDS:
        done[s] = distilled.distill_sample(storage, s, backbone, SETTINGS, SAMPLE)
    for t in TARGETS:
        done[t] = distilled.distilled_scorer(storage, t, SHARDS, backbone, MODEL)
    for s in SHARDS:
        done[f"scores:{s}"] = distilled.distilled_scores(storage, s, TARGETS, backbone)
    return done


@pytest.fixture
def store(tmp_path: Path, backbone: Backbone) -> Storage:
    storage = make_root(tmp_path, backbone)
    run_path(storage, backbone)
    return storage


def test_the_backbone_reads_only_the_sample(
    tmp_path: Path, backbone: Backbone, extraction_calls: list
) -> None:
    storage = make_root(tmp_path, backbone)
    extraction_calls.clear()
    run_path(storage, backbone)
    expected = sorted(t for k, s in enumerate(SHARDS) for i, t in enumerate(_texts(k))
                      if in_sample(s, f"d{i}"))  # fmt: skip
    assert 20 < len(expected) < 60  # about half of 80
    assert sorted(t for call in extraction_calls for t in call) == expected
    assert not (tmp_path / SHARD_NAG).exists()


def test_the_scorer_learns_its_training_labels(store: Storage, backbone: Backbone) -> None:
    """Labels recomputed here: the sample's NAGs from the backbone, scored against each
    target's profile built from its examples' NAGs."""
    sampled = [t for k, s in enumerate(SHARDS) for i, t in enumerate(_texts(k))
               if in_sample(s, f"d{i}")]  # fmt: skip
    rest = [t for k, s in enumerate(SHARDS) for i, t in enumerate(_texts(k))
            if not in_sample(s, f"d{i}")]  # fmt: skip
    nags, _ = extract_nags(backbone, sampled, SETTINGS.top_k, SETTINGS.max_tokens)
    read = distill.hf_reader(backbone.tokenizer, SETTINGS.max_tokens)
    for t, topic in TOPICS.items():
        examples, _ = extract_nags(
            backbone, [f"{topic} {i}" for i in range(8)], SETTINGS.top_k, SETTINGS.max_tokens
        )
        labels = score_many(nags, build_profile(examples, backbone.d_ff)[None])[:, 0]
        footer = ScorerFooter.read_json(store, t)
        scorer = distill.DistilledScorer.from_bytes(
            storage_bytes(store, f"assets/distilled_scorer/{t}/{footer.version}.npz")
        )
        assert spearmanr(scorer.score(read, sampled)[:, 0], labels)[0] > 0.9
        assert footer.documents == len(sampled) and sorted(footer.samples) == SHARDS
        # the stored table of each shard is the scorer's prediction for every document
        table = pl.concat(
            [pl.read_parquet(Path(store.root) / f"assets/shard_scores/{s}.parquet") for s in SHARDS]
        )
        every = _texts(0) + _texts(1)
        assert np.allclose(table[t].to_numpy(), scorer.score(read, every)[:, 0])
        assert table["tokens"].to_list() == [len(backbone.tokenize([x])[0]) for x in every]
    assert len(rest) > 0


def storage_bytes(storage: Storage, path: str) -> bytes:
    return storage.read_bytes(*path.split("/"))


def test_reruns_skip_and_fresh_runs_are_byte_identical(
    store: Storage, tmp_path: Path, backbone: Backbone, extraction_calls: list
) -> None:
    extraction_calls.clear()
    again = run_path(store, backbone)
    assert all(step.skipped for step in again.values()) and extraction_calls == []
    other = make_root(tmp_path / "other", backbone)
    run_path(other, backbone)
    models = [f"{t}/{ScorerFooter.read_json(store, t).version}.npz" for t in TARGETS]
    for path in [f"assets/shard_scores/{s}.parquet" for s in SHARDS] + [
        f"assets/distilled_scorer/{name}" for name in [f"{t}.json" for t in TARGETS] + models
    ]:
        assert storage_bytes(store, path) == storage_bytes(other, path), path


def test_the_mixture_selects_from_the_distilled_tables(store: Storage) -> None:
    step = mixture.selected_mixture(store, SHARDS, TARGETS, mixture.MixtureSettings(fraction=0.3))
    assert sorted(step.facts["shards"]) == SHARDS and step.facts["shards_left_out"] == {}
    assert mixture.check_mixture(store, step.facts).over_budget == {}


def test_a_retrained_scorer_leaves_tables_of_the_old_one_out(
    store: Storage, tmp_path: Path, backbone: Backbone
) -> None:
    """A mixture never mixes two versions of a scorer: after a retrain (another sample), a
    shard not yet rescored is left out, not used."""
    other = distill.SampleSettings(fraction=0.6, seed=7)
    distilled.distill_sample(store, "s0", backbone, SETTINGS, other)
    before = ScorerFooter.read_json(store, "plants").version
    distilled.distilled_scorer(store, "plants", SHARDS, backbone, MODEL)
    models = sorted((Path(store.root) / "assets/distilled_scorer/plants").iterdir())
    now = ScorerFooter.read_json(store, "plants").version
    assert now != before and [p.name for p in models] == [f"{now}.npz"]  # the old one dropped
    distilled.distilled_scores(store, "s1", TARGETS, backbone)
    step = mixture.selected_mixture(store, SHARDS, TARGETS, mixture.MixtureSettings(fraction=0.3))
    assert sorted(step.facts["shards"]) == ["s1"]
    assert "plants" in step.facts["shards_left_out"]["s0"]


def test_rankers_that_read_full_nags_say_so(store: Storage, backbone: Backbone) -> None:
    for ranker in ("nag_contrastive", "nag_distilled"):
        settings = mixture.MixtureSettings(fraction=0.3, ranker=ranker)
        with pytest.raises(InputError, match=r"scored by the distilled scorer \(scorer: distilled"):
            mixture.selected_mixture(store, SHARDS, TARGETS, settings, backbone=lambda: backbone)


def test_the_checks_say_they_need_full_nags(store: Storage) -> None:
    from nag_assets.checks.common import ready

    with pytest.raises(InputError, match=r"scorer: distilled.*scorer: nag"):
        ready(store, TARGETS)


def test_a_sample_too_small_to_learn_from_is_named(tmp_path: Path, backbone: Backbone) -> None:
    storage = make_root(tmp_path, backbone)
    tiny = distill.SampleSettings(fraction=0.001)
    for s in SHARDS:  # no document drawn: an empty sample, written and current
        first = distilled.distill_sample(storage, s, backbone, SETTINGS, tiny)
        assert first.facts["documents_extracted"] == 0
        assert distilled.distill_sample(storage, s, backbone, SETTINGS, tiny).skipped
    with pytest.raises(InputError, match=r"distilled_scorer\[plants\].*0 documents.*sample_fr"):
        distilled.distilled_scorer(storage, "plants", SHARDS, backbone, MODEL)
    with pytest.raises(InputError, match=r"no target has a distilled_scorer yet"):
        distilled.distilled_scores(storage, "s0", TARGETS, backbone)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scorer": "fast"}, r"scorer 'fast' must be one of \['nag', 'distilled'\]"),
        ({"sample": distill.SampleSettings(fraction=None, size=10)}, r"set sample_fraction"),
    ],
)
def test_bad_scoring_settings_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        distilled.Scoring(**kwargs)


@pytest.mark.parametrize("fraction", [0, -0.1, 1.5])
def test_a_bad_sample_fraction_is_named(fraction: float) -> None:
    with pytest.raises(InputError, match=rf"sample_fraction {fraction!r} must be in \(0, 1\]"):
        distill.SampleSettings(fraction=fraction)


def test_a_retrain_killed_before_its_footer_leaves_the_old_model_in_force(
    store: Storage, backbone: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = ScorerFooter.read_json(store, "plants").version
    scores = storage_bytes(store, "assets/shard_scores/s0.parquet")
    distilled.distill_sample(store, "s0", backbone, SETTINGS, distill.SampleSettings(0.6, seed=7))

    def killed(*_args) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(distilled, "_write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        distilled.distilled_scorer(store, "plants", SHARDS, backbone, MODEL)
    assert ScorerFooter.read_json(store, "plants").version == before
    (store_root := Path(store.root)).joinpath("assets/shard_scores/s0.parquet").unlink()
    distilled.distilled_scores(store, "s0", TARGETS, backbone)  # with the model in force
    assert (store_root / "assets/shard_scores/s0.parquet").read_bytes() == scores


def test_chunked_reads_give_the_same_tables(store: Storage, tmp_path: Path, backbone) -> None:
    """Shards read 7 documents at a time (chunks cut inside every shard) write the same score
    tables, byte for byte, and the same sample rows (its file's row groups follow the chunks),
    as the default one-chunk read."""
    other = make_root(tmp_path / "chunked", backbone)
    small = NagSettings(top_k=SETTINGS.top_k, chunk_rows=7)
    for s in SHARDS:
        distilled.distill_sample(other, s, backbone, small, SAMPLE)
    for t in TARGETS:
        distilled.distilled_scorer(other, t, SHARDS, backbone, MODEL)
    for s in SHARDS:
        distilled.distilled_scores(other, s, TARGETS, backbone, chunk_rows=7)
    for s in SHARDS:
        path = f"assets/shard_scores/{s}.parquet"
        assert storage_bytes(other, path) == storage_bytes(store, path), path
        for parts in (("assets", "distill_sample", f"{s}.parquet"), distilled.sample_docs(s)):
            assert other.read_parquet(*parts).equals(store.read_parquet(*parts)), parts


def test_an_id_repeated_in_a_later_chunk_is_named(tmp_path: Path, backbone: Backbone) -> None:
    storage = make_root(tmp_path, backbone)
    lines = [json.dumps({"id": f"d{i % 9}", "text": f"leaf {i}"}) for i in range(12)]
    (tmp_path / "shards" / "s0.jsonl").write_text("\n".join(lines) + "\n")
    small = NagSettings(top_k=SETTINGS.top_k, chunk_rows=5)
    with pytest.raises(InputError, match=r"s0\.jsonl.*d0"):
        distilled.distill_sample(storage, "s0", backbone, small, SAMPLE)


FROZEN = distill.SampleSettings(fraction=0.5, seed=7, shards=("s0",))


def test_a_shard_outside_sample_shards_is_scored_without_backbone_or_retraining(
    store: Storage, tmp_path: Path, backbone: Backbone, extraction_calls: list
) -> None:
    """Scorers trained on s0's sample alone; a new shard s2 outside the patterns is never
    read by the backbone, leaves every scorer as it is, and is scored by them."""
    storage = store
    for t in TARGETS:
        distilled.distilled_scorer(storage, t, SHARDS, backbone, MODEL, FROZEN)
    before = distilled.current_scorer_versions(storage, TARGETS)
    s0_only = {t: distilled.distilled_scorer(storage, t, ["s0"], backbone, MODEL) for t in TARGETS}
    assert before == {t: r.version for t, r in s0_only.items()}  # s1's sample never counted
    _write(tmp_path, "shards", "s2.jsonl", _texts(5))
    extraction_calls.clear()
    outside = distilled.distill_sample(storage, "s2", backbone, SETTINGS, FROZEN)
    assert outside.skipped and "matches none of sample_shards ['s0']" in outside.facts["in_sample"]
    assert storage.read_meta(*table(DISTILL_SAMPLE, "s2")) is None  # nothing written
    for t in TARGETS:
        again = distilled.distilled_scorer(storage, t, [*SHARDS, "s2"], backbone, MODEL, FROZEN)
        assert again.skipped and again.version == before[t]
        assert again.facts["shards_outside_sample"] == 2
    scored = distilled.distilled_scores(storage, "s2", TARGETS, backbone)
    assert extraction_calls == []
    scores = storage.read_parquet(*table(SHARD_SCORES, "s2"))
    read = distill.hf_reader(backbone.tokenizer, SETTINGS.max_tokens)
    for t in TARGETS:  # the scorer in force, loaded and applied here
        footer = ScorerFooter.read_json(storage, t)
        raw = storage.read_bytes(*scorer_model(t, footer.version))
        expected = distill.DistilledScorer.from_bytes(raw).score(read, _texts(5))[:, 0]
        np.testing.assert_allclose(scores[t].to_numpy(), expected, rtol=1e-6)
    assert not scored.skipped and scores.height == 40


def test_a_draw_limited_to_shards_covers_only_them() -> None:
    pool = {"cc-1": [f"d{i}" for i in range(50)], "cc-2": ["a", "b"], "web-1": ["x"] * 3}
    by_fraction = distill.draw(pool, distill.SampleSettings(fraction=1.0, shards=("cc-*",)))
    assert [m.tolist().count(True) for m in by_fraction.values()] == [50, 2, 0]
    sized = distill.SampleSettings(fraction=None, size=10, shards=("cc-2", "web-*"))
    by_size = distill.draw(pool, sized)  # 5 documents covered, fewer than the size: all
    assert [int(m.sum()) for m in by_size.values()] == [0, 2, 3]
    few = distill.draw(pool, distill.SampleSettings(fraction=None, size=4, shards=("cc-*",)))
    keys = np.concatenate([distill.sample_keys(s, pool[s]) for s in ("cc-1", "cc-2")])
    chosen = np.concatenate([few["cc-1"], few["cc-2"]])
    assert chosen.sum() == 4 and keys[chosen].max() < keys[~chosen].min()
    assert not few["web-1"].any()


@pytest.mark.parametrize("shards", [(), ("",), (" ",)])
def test_empty_sample_shards_are_named(shards: tuple) -> None:
    with pytest.raises(InputError, match=r"sample_shards .* must be one or more shard names"):
        distill.SampleSettings(shards=shards)

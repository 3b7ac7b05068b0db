"""What selections share and what bounds the backbone: the NAG store (tables by content and
settings), the impact baseline made once however many ask at once, machine slots, the input
index the sensor keeps, and a budget given as a token count."""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from nag_assets.nag import Backbone
from nag_assets.nag.select import target_budgets
from nag_assets.pipeline import impact, shards, slots
from nag_assets.pipeline.common import NagSettings, find_input, record_input
from nag_assets.pipeline.layout import SHARD_NAG
from nag_assets.storage import Source, Storage

POOL = [f"Pool document {i}: snow covers peak {i} every winter, said the guide." for i in range(9)]


def _jsonl(texts: list[str]) -> bytes:
    return "".join(json.dumps({"text": t}) + "\n" for t in texts).encode()


@pytest.fixture
def pool(tmp_path: Path) -> Path:
    folder = tmp_path / "downloaded" / "dump-1"
    folder.mkdir(parents=True)
    (folder / "part.jsonl").write_bytes(_jsonl(POOL))
    return folder.parent


def _selection(tmp_path: Path, name: str, pool: Path) -> Storage:
    return Storage(
        str(tmp_path / name),
        sources={"shards": Source(str(pool))},
        nag_store=str(tmp_path / "nags"),
    )


def test_a_second_root_takes_the_nags_from_the_store(tmp_path, pool, backbone) -> None:
    first, second = _selection(tmp_path, "a", pool), _selection(tmp_path, "b", pool)
    key = _keys(first)[0]
    made = shards.shard_nag(first, key, backbone, NagSettings(top_k=4))
    assert made.facts["documents_extracted"] == len(POOL)
    shared = shards.shard_nag(second, key, backbone, NagSettings(top_k=4))
    assert shared.facts == {"documents_extracted": 0, "file": "dump-1/part.jsonl",
                            "from_nag_store": True}  # fmt: skip
    assert shared.version == made.version
    a = Path(first.path(SHARD_NAG, f"{key}.parquet"))
    b = Path(second.path(SHARD_NAG, f"{key}.parquet"))
    assert a.read_bytes() == b.read_bytes()
    assert os.stat(a).st_ino == os.stat(b).st_ino  # one local disk: a link, not a copy
    assert shards.shard_nag(second, key, backbone, NagSettings(top_k=4)).skipped
    other = shards.shard_nag(second, key, backbone, NagSettings(top_k=3))  # other settings
    assert other.facts["documents_extracted"] == len(POOL)


def _keys(storage: Storage) -> list[str]:
    from nag_assets.pipeline.watch import scan

    return list(scan(storage, "shards", {}).seen)


def test_the_impact_baseline_is_made_once_however_many_ask(
    tmp_path: Path, backbone: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NAG_ASSETS_CACHE", str(tmp_path / "cache"))
    made = []
    real = impact.neuron_baseline

    def slow(*args, **kwargs):
        made.append(threading.get_ident())
        time.sleep(0.3)  # wide enough for every caller to arrive meanwhile
        return real(*args, **kwargs)

    monkeypatch.setattr(impact, "neuron_baseline", slow)
    (tmp_path / "sample.jsonl").write_bytes(_jsonl(POOL))
    settings = NagSettings(top_k=4, impact="normalized", impact_sample="sample.jsonl")
    roots = [Storage(str(tmp_path), nag_store=str(tmp_path / "nags")) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda s: impact.impact_baseline(s, backbone, settings), roots))
    assert len(made) == 1
    for baseline, fp in got:
        np.testing.assert_array_equal(baseline, got[0][0])
        assert fp == got[0][1]


def test_a_legacy_root_s_baseline_moves_into_the_store(tmp_path, backbone, monkeypatch) -> None:
    monkeypatch.setenv("NAG_ASSETS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "sample.jsonl").write_bytes(_jsonl(POOL))
    settings = NagSettings(top_k=4, impact="normalized", impact_sample="sample.jsonl")
    old = Storage(str(tmp_path))
    baseline, _ = impact.impact_baseline(old, backbone, settings)
    store_file = next(Path(old.nags().path(impact.FOLDER)).glob("*.npy"))
    legacy = Path(old.path(impact.LEGACY_FOLDER, store_file.name))
    legacy.parent.mkdir(parents=True)
    os.replace(store_file, legacy)  # as a root made before the store kept it
    monkeypatch.setattr(impact, "neuron_baseline", lambda *a, **k: pytest.fail("recomputed"))
    again, _ = impact.impact_baseline(old, backbone, settings)
    np.testing.assert_array_equal(again, baseline)
    assert store_file.exists()


def test_backbone_slots_hold_one_step_at_a_time(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NAG_ASSETS_CACHE", str(tmp_path))
    said, order = [], []

    def step(name: str) -> None:
        with slots.machine_slot(1, said.append, poll_s=0.05):
            order.append(f"{name} in")
            time.sleep(0.2)
            order.append(f"{name} out")

    threads = [threading.Thread(target=step, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join()
    assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])
    assert any("busy: waiting" in m for m in said)
    assert slots.backbone_slots(None, "cpu") == 1 and slots.backbone_slots(3, "cpu") == 3


def test_a_step_finds_its_file_from_the_index_without_listing(tmp_path, pool, monkeypatch):
    storage = _selection(tmp_path, "a", pool)
    key = _keys(storage)[0]
    record_input(storage, "shards", key, "dump-1/part.jsonl")
    monkeypatch.setattr(Storage, "list_inputs", lambda self: pytest.fail("listed the pool"))
    source, path, name = find_input(storage, "shards", key)
    assert (name, Path(path)) == ("dump-1/part.jsonl", pool / "dump-1" / "part.jsonl")
    assert source.root == str(pool)


def test_a_budget_as_a_token_count() -> None:
    budgets = target_budgets(10_000, ["a", "b", "c"], weights={"a": 2}, tokens=1_000)
    assert budgets == {"a": 500, "b": 250, "c": 250}
    assert sum(target_budgets(10_000, ["a"], fraction=0.5).values()) == 5_000


def test_include_patterns_choose_the_pool_s_files(tmp_path: Path, pool: Path) -> None:
    pl.DataFrame({"text": ["x"]}).write_parquet(pool / "dump-1" / "extra.parquet")
    storage = Storage(str(tmp_path), sources={"shards": Source(str(pool), ("*/*.jsonl",))})
    assert [f.name for f in storage.inputs("shards").list_inputs()] == ["dump-1/part.jsonl"]

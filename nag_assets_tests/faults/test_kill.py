"""A real run killed with SIGKILL, mid-extraction and mid-write, then rerun: nothing partial is
ever read, the rerun redoes only what is missing or stale, and the selection is byte-identical
to an uninterrupted run's."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from nag_assets.defs.resources import StorageResource
from nag_assets.nag import load_backbone
from nag_assets.pipeline.common import NagSettings, nag_table
from nag_assets.pipeline.mixture import FOLDER, POINTER, mixture_digest, read_mixture
from nag_assets.pipeline.shards import shard_nag
from nag_assets.sources.wiki import write_shards
from nag_assets.storage import TEMP_MAX_AGE_S, TEMP_PREFIX, Storage
from nag_assets_tests.defs.helpers import science_texts, write_jsonl
from nag_assets_tests.faults.helpers import BATCH, TOP_K, StorageGraph, plain_run

pytestmark = pytest.mark.slow  # graph runs, servers or subprocesses

REPO = Path(__file__).resolve().parents[2]
SMALL, BIG = 20, 120
CHILD = "nag_assets_tests.faults.killable_run"


def _inputs(root: Path, pool: pl.DataFrame, big_rows: slice) -> Path:
    (root / "targets").mkdir(parents=True, exist_ok=True)
    write_jsonl(root / "targets" / "water.jsonl", science_texts(12))
    write_shards(pool.head(SMALL), root / "shards", 1, prefix="a-small")
    write_shards(pool[big_rows], root / "shards", 1, prefix="big")
    return root


def _copy_inputs(src: Path, dst: Path) -> Path:
    for folder in ("targets", "shards"):
        shutil.copytree(src / folder, dst / folder)
    return dst


def _kill_mid_run(root: Path, model_dir: Path, mode: str, tmp: Path) -> None:
    """Start killable_run, wait for its signal, SIGKILL it."""
    ready = tmp / f"ready-{mode.replace('/', '_')}"
    log = tmp / "child.log"
    _kill_at_signal([CHILD, str(root), str(model_dir), str(ready), mode], ready, log)


def _kill_at_signal(args: list[str], ready: Path, log: Path) -> None:
    """Run `python -m *args`, SIGKILL it once it creates `ready` (its kill point)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 120
            while not ready.exists():
                assert proc.poll() is None, f"child exited early:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, "child never reached the kill point"
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _rerun(root: Path, model_dir: Path) -> StorageGraph:
    with dg.DagsterInstance.ephemeral() as instance:
        graph = StorageGraph(StorageResource(root=str(root)), model_dir, instance)
        graph.step()
        assert graph.runs and all(r["success"] for r in graph.runs), graph.runs
        return graph


def _temps(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"{TEMP_PREFIX}*"))


def test_killed_mid_extraction_then_rerun(
    tmp_path: Path,
    tiny_model_dir: Path,
    wiki_pool: pl.DataFrame,
    extraction_calls: list[list[str]],
) -> None:
    root = _inputs(tmp_path / "root", wiki_pool, slice(SMALL, SMALL + BIG))
    expected = plain_run(Storage(str(_copy_inputs(root, tmp_path / "ref"))), tiny_model_dir)
    extraction_calls.clear()

    _kill_mid_run(root, tiny_model_dir, f"extract:{BIG}", tmp_path)
    store = Storage(str(root))
    # what finished before the kill is complete; the shard being extracted left nothing
    assert (
        store.read_meta("assets/shard_nag", "a-small-000.parquet")["file"] == "a-small-000.parquet"
    )
    assert store.read_parquet("assets/shard_nag", "a-small-000.parquet").height == SMALL
    assert not store.exists("assets/shard_nag/big-000.parquet")
    assert not store.exists(FOLDER)
    assert _temps(root / "assets" / "shard_nag") == []

    graph = _rerun(root, tiny_model_dir)
    small_texts = set(pl.read_parquet(root / "shards" / "a-small-000.parquet")["text"])
    extracted = [t for call in extraction_calls for t in call]
    assert not small_texts & set(extracted), "the finished shard was extracted again"
    assert sorted(len(c) for c in extraction_calls) == [12, BIG]  # the target, the big shard
    assert mixture_digest(graph.storage) == expected


def test_killed_mid_write_keeps_the_previous_version(
    tmp_path: Path,
    tiny_model_dir: Path,
    wiki_pool: pl.DataFrame,
    extraction_calls: list[list[str]],
) -> None:
    root = _inputs(tmp_path / "root", wiki_pool, slice(SMALL, SMALL + BIG))
    store = Storage(str(root))
    first = plain_run(store, tiny_model_dir)
    old_meta = store.read_meta("assets/shard_nag", "big-000.parquet")
    old_pointer = store.read_bytes(FOLDER, POINTER)
    extraction_calls.clear()
    # the big shard changes; an uninterrupted run over the new inputs is the reference
    _inputs(root, wiki_pool, slice(SMALL + 40, SMALL + 40 + BIG))  # 40 docs changed
    expected = plain_run(Storage(str(_copy_inputs(root, tmp_path / "ref"))), tiny_model_dir)
    assert expected != first
    extraction_calls.clear()

    _kill_mid_run(root, tiny_model_dir, "write:assets/shard_nag/big-000.parquet", tmp_path)
    # the killed write left a half temporary file that nothing reads
    folder = root / "assets" / "shard_nag"
    (temp,) = _temps(folder)
    assert [f.name for f in store.list_files("assets/shard_nag")] == [
        "a-small-000.parquet",
        "big-000.parquet",
    ]
    # the previous version is intact and in force everywhere
    assert store.read_meta("assets/shard_nag", "big-000.parquet") == old_meta
    assert store.read_parquet("assets/shard_nag", "big-000.parquet").height == BIG
    assert store.read_bytes(FOLDER, POINTER) == old_pointer
    assert mixture_digest(store) == first and read_mixture(store).height > 0

    # a leftover this old belongs to a dead writer: the next write into the folder removes it
    stale = time.time() - TEMP_MAX_AGE_S - 60
    os.utime(temp, (stale, stale))
    graph = _rerun(root, tiny_model_dir)
    assert [len(c) for c in extraction_calls] == [BIG]  # only the stale shard is redone
    assert _temps(folder) == []
    assert mixture_digest(graph.storage) == expected
    # the version CURRENT.json names and the one before it are left, no orphan
    versions = sorted(
        p.name for p in (root / FOLDER).iterdir() if p.is_dir() and p.suffix != ".manifest"
    )
    now = json.loads(store.read_bytes(FOLDER, POINTER))["version"]
    assert versions == sorted([now, json.loads(old_pointer)["version"]])


def test_killed_mid_shard_stream_keeps_the_previous_version(
    tmp_path: Path, tiny_model_dir: Path, wiki_pool: pl.DataFrame
) -> None:
    """SIGKILL while a shard streams chunk by chunk into its temporary file: the previous
    version stays whole and in force, the half file is never listed, a rerun finishes it."""
    root = tmp_path / "root"
    write_shards(pool_rows := wiki_pool.head(48), root / "shards", 1, prefix="big")
    store = Storage(str(root))
    backbone = load_backbone(str(tiny_model_dir), device="cpu")
    settings = NagSettings(TOP_K, batch_size=BATCH, chunk_rows=8)
    shard_nag(store, "big-000", backbone, settings)
    before = store.read_bytes("assets/shard_nag", "big-000.parquet")
    write_shards(wiki_pool.slice(48, 48), root / "shards", 1, prefix="big")  # a new version
    assert not pool_rows.equals(wiki_pool.slice(48, 48))

    ready, log = tmp_path / "ready", tmp_path / "child.log"
    shard_child = "nag_assets_tests.faults.killable_shard"
    _kill_at_signal([shard_child, str(root), str(tiny_model_dir), str(ready), "8"], ready, log)

    folder = root / "assets" / "shard_nag"
    assert len(_temps(folder)) == 1  # the stream's unfinished file, never published
    assert [f.name for f in store.list_files("assets/shard_nag")] == ["big-000.parquet"]
    assert store.read_bytes("assets/shard_nag", "big-000.parquet") == before

    step = shard_nag(store, "big-000", backbone, settings)
    assert not step.skipped and step.facts["documents_extracted"] == 48
    docs = pl.read_parquet(root / "shards" / "big-000.parquet")
    expected = nag_table(backbone, docs["id"], docs["text"].to_list(), settings)
    assert store.read_parquet("assets/shard_nag", "big-000.parquet").equals(expected)

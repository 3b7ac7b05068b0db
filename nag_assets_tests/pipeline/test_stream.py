"""Shards in bounded chunks: the table is the one-chunk table whatever the chunk size and
executor path, bad rows in later chunks are named by their place in the file, ids are
unique across chunks, and a file that changes mid-read is never mixed."""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import json
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nag_assets.nag import Backbone, build_profile
from nag_assets.nag.profile import neuron_use
from nag_assets.pipeline import shards, targets
from nag_assets.pipeline.common import NagSettings, nag_footer, nag_table, nags_of
from nag_assets.pipeline.extractor import (
    ChunkNags,
    InProcessExtractor,
    NagJob,
    extract_chunk,
)
from nag_assets.pipeline.stream import UniqueIds
from nag_assets.sources.chunks import iter_frames, plan_file, read_chunk
from nag_assets.sources.files import InputError, read_documents
from nag_assets.storage import Storage, digest

SETTINGS = NagSettings(top_k=4, max_tokens=16, batch_size=4)


def _texts(n: int) -> list[str]:
    """Lengths repeat in runs of 3 (and some pass max_tokens), so a chunk boundary of 5 or
    7 rows falls inside a run of equal lengths: inside a length bucket."""
    words = ["rain", "snow", "wind", "hail", "sun"]
    return [
        " ".join(words[(i * 7 + j) % 5] for j in range(1 + (i // 3) % 6)) + f" {i % 10}"
        for i in range(n)
    ]


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _parquet(df: pl.DataFrame, row_group_size: int | None = None) -> bytes:
    buf = io.BytesIO()
    pq.write_table(df.to_arrow(), buf, row_group_size=row_group_size)
    return buf.getvalue()


@pytest.fixture
def store(tmp_path: Path) -> Storage:
    (tmp_path / "shards").mkdir()
    return Storage(str(tmp_path))


def _put(store: Storage, name: str, data: bytes) -> None:
    Path(store.path("shards", name)).write_bytes(data)


def _one_shot(store: Storage, backbone: Backbone, name: str, key: str) -> pl.DataFrame:
    """The table as the whole-file step made it: every document read, then one nag_table."""
    docs = read_documents(store.read_bytes("shards", name), name, key)
    return nag_table(backbone, docs["id"], docs["text"].to_list(), SETTINGS)


SHARDS = {
    "plain.jsonl": lambda rows: b"\n" + _jsonl(rows).replace(b"}\n", b"}\n\n", 3),
    "packed.jsonl.gz": lambda rows: gzip.compress(b"\xef\xbb\xbf" + _jsonl(rows)),
    "groups.parquet": lambda rows: _parquet(pl.DataFrame(rows), row_group_size=11),
}


@pytest.mark.parametrize("name", sorted(SHARDS))
@pytest.mark.parametrize("chunk_rows", [1, 5, 7, 1000])
def test_chunked_table_is_the_one_chunk_table(
    store: Storage, backbone: Backbone, name: str, chunk_rows: int
) -> None:
    texts = _texts(31)
    rows = [{"text": t, "n": i} for i, t in enumerate(texts)]  # no ids: <key>/<global row>
    _put(store, name, SHARDS[name](rows))
    key = name.split(".")[0]
    step = shards.shard_nag(store, key, backbone, replace(SETTINGS, chunk_rows=chunk_rows))
    got = store.read_parquet("assets/shard_nag", f"{key}.parquet")
    expected = _one_shot(store, backbone, name, key)
    assert got.equals(expected)
    assert got["id"].to_list() == [f"{key}/{i}" for i in range(31)]
    assert step.facts["documents_extracted"] == 31
    assert step.facts["tokens"] == int(expected["tokens"].sum())
    assert step.facts["truncated_documents"] == int(
        (expected["tokens"] > expected["nag_tokens"]).sum()
    )
    meta = store.read_meta("assets/shard_nag", f"{key}.parquet")
    assert {k: step.facts[k] for k in neuron_use(nags_of(expected, meta))} == neuron_use(
        nags_of(expected, meta)
    )
    # one row group per chunk; within a row group of the source file, never across
    groups = pq.ParquetFile(store.path("assets/shard_nag", f"{key}.parquet")).metadata
    sizes = [groups.row_group(g).num_rows for g in range(groups.num_row_groups)]
    plan = plan_file(store, f"shards/{name}", name, key, chunk_rows)
    assert sizes == [c.rows for c in plan.chunks]
    if name.endswith(".parquet"):
        assert all(c.group_offset + c.rows <= 11 for c in plan.chunks)


def test_one_chunk_file_is_byte_identical_to_the_whole_file_write(
    store: Storage, backbone: Backbone, tmp_path: Path
) -> None:
    _put(store, "a.jsonl", _jsonl([{"id": f"d{i}", "text": t} for i, t in enumerate(_texts(9))]))
    step = shards.shard_nag(store, "a", backbone, SETTINGS)
    # what the step wrote before streaming: nag_table of all documents, one write_parquet
    data = store.read_bytes("shards", "a.jsonl")
    sha = hashlib.sha256(data).hexdigest()[:32]
    fp = SETTINGS.fingerprint(backbone)
    meta = nag_footer(
        digest("shard_nag", "1", sha, fp), backbone, SETTINGS, fp, file="a.jsonl", sha256=sha
    ).to_meta()
    assert step.version == meta["version"]
    ref = Storage(str(tmp_path / "ref"))
    ref.write_parquet(_one_shot(store, backbone, "a.jsonl", "a"), "x.parquet", meta=meta)
    assert store.read_bytes("assets/shard_nag", "a.parquet") == ref.read_bytes("x.parquet")


@pytest.mark.parametrize("name", sorted(SHARDS))
def test_a_worker_reads_the_same_chunks_from_a_pickled_ref(store: Storage, name: str) -> None:
    _put(store, name, SHARDS[name]([{"text": t} for t in _texts(23)]))
    plan = plan_file(store, f"shards/{name}", name, "k", 5)
    frames = list(iter_frames(plan))
    assert [f.ref for f in frames] == list(plan.chunks) and plan.rows == 23
    for frame in frames:
        alone = read_chunk(pickle.loads(pickle.dumps(frame.ref)))
        assert alone.df.equals(frame.df) and alone.lines == frame.lines
    assert pl.concat([f.df for f in frames])["text"].to_list() == _texts(23)


def test_extract_chunk_refuses_another_backbone(store: Storage, backbone: Backbone) -> None:
    _put(store, "a.jsonl", _jsonl([{"text": t} for t in _texts(3)]))
    (ref,) = plan_file(store, "shards/a.jsonl", "a.jsonl", "a", 10).chunks
    with pytest.raises(ValueError, match="is not the one the step planned with"):
        extract_chunk(ref, backbone, NagJob(SETTINGS, "another-fingerprint"))


def test_a_bad_row_in_a_later_chunk_names_its_line_or_row(
    store: Storage, backbone: Backbone
) -> None:
    small = replace(SETTINGS, chunk_rows=5)
    rows = [{"text": t} for t in _texts(14)]
    # JSONL: line numbers count from 1 and include the blank line at the top
    _put(store, "bad.jsonl", b"\n" + _jsonl([*rows[:12], {"text": 7}, *rows[12:]]))
    with pytest.raises(InputError, match=r"^bad\.jsonl: line 14, field `text` is a number"):
        shards.shard_nag(store, "bad", backbone, small)
    # parquet: rows count from 0 over the whole file, across row groups
    df = pl.DataFrame({"text": [*_texts(12), None, "x"]})
    _put(store, "nul.parquet", _parquet(df, row_group_size=6))
    with pytest.raises(InputError, match=r"^nul\.parquet: row 12, column `text` is null"):
        shards.shard_nag(store, "nul", backbone, small)
    raw = pa.array([t.encode() for t in _texts(11)] + [b"bad \xff"], pa.binary())
    table = pa.table({"text": raw.view(pa.string())})
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=4)
    _put(store, "utf.parquet", buf.getvalue())
    with pytest.raises(InputError, match=r"^utf\.parquet: row 11, column `text` is not valid UTF"):
        shards.shard_nag(store, "utf", backbone, small)
    for key in ("bad", "nul", "utf"):
        assert not store.exists(f"assets/shard_nag/{key}.parquet")
    assert list(Path(store.path("assets", "shard_nag")).iterdir()) == []  # no temporary left


def test_ids_repeated_across_chunks_are_named_and_nothing_is_written(
    store: Storage, backbone: Backbone
) -> None:
    ids = [f"d{i}" for i in range(12)]
    ids[10] = "d3"  # chunk 0 and chunk 2 at 4 rows a chunk
    ids[11] = "d7"
    _put(store, "dup.jsonl", _jsonl([{"id": i, "text": t} for i, t in zip(ids, _texts(12))]))
    with pytest.raises(InputError) as err:
        shards.shard_nag(store, "dup", backbone, replace(SETTINGS, chunk_rows=4))
    assert str(err.value) == (
        "dup.jsonl: id 'd3' appears more than once (line 4, line 11); ids must be unique "
        "within a file (2 ids repeated)"
    )
    assert not store.exists("assets/shard_nag/dup.parquet")


def test_an_id_repeated_many_chunks_later_is_found(store: Storage, backbone: Backbone) -> None:
    """One row a chunk: the first row's hash has been merged into ever larger runs by the
    time its repeat comes."""
    ids = [f"d{i}" for i in range(40)]
    ids[38] = "d1"
    _put(store, "far.jsonl", _jsonl([{"id": i, "text": t} for i, t in zip(ids, _texts(40))]))
    with pytest.raises(InputError, match=r"id 'd1' appears more than once \(line 2, line 39\)"):
        shards.shard_nag(store, "far", backbone, replace(SETTINGS, chunk_rows=1))


def test_unique_ids_keep_few_sorted_runs_of_every_hash(store: Storage) -> None:
    _put(store, "u.jsonl", _jsonl([{"text": t} for t in _texts(3)]))
    seen = UniqueIds(plan_file(store, "shards/u.jsonl", "u.jsonl", "u", 4))
    rng = np.random.default_rng(0)
    every: list[str] = []
    for size in rng.integers(0, 10, size=60):
        chunk = [f"x{len(every) + j}" for j in range(size)]
        every += chunk
        seen.add(pa.array(chunk, pa.string()))  # no repeat: never re-reads the file
        sizes = [len(r) for r in seen.runs]
        assert all(a >= 2 * b for a, b in itertools.pairwise(sizes))  # <= log2(n) + 1 runs
        assert all((r[1:] >= r[:-1]).all() for r in seen.runs)
    expected = np.sort(pl.Series(every).hash(seed=0).to_numpy())
    assert np.array_equal(np.sort(np.concatenate(seen.runs)), expected)
    assert len(seen.runs) <= int(np.log2(len(every))) + 1


def test_file_changed_between_plan_and_read_is_never_mixed(
    store: Storage, backbone: Backbone
) -> None:
    _put(store, "a.jsonl", _jsonl([{"text": t} for t in _texts(8)]))
    plan = plan_file(store, "shards/a.jsonl", "a.jsonl", "a", 3)
    _put(store, "a.jsonl", _jsonl([{"text": t} for t in _texts(9)]))
    job = NagJob(SETTINGS, backbone.fingerprint)
    with pytest.raises(InputError, match=r"^a\.jsonl: changed while being read"):
        list(InProcessExtractor(backbone).run(job, plan))
    with pytest.raises(InputError, match=r"^a\.jsonl: changed while being read"):
        read_chunk(plan.chunks[1])


def test_the_stream_keeps_the_previous_version_when_a_chunk_fails(
    store: Storage, backbone: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    _put(store, "a.jsonl", _jsonl([{"text": t} for t in _texts(10)]))
    shards.shard_nag(store, "a", backbone, SETTINGS)
    before = store.read_bytes("assets/shard_nag", "a.parquet")
    _put(store, "a.jsonl", _jsonl([{"text": t} for t in _texts(12)]))
    real = InProcessExtractor.run

    def dies_in_chunk_two(self, job, plan, progress=None):
        for chunk in real(self, job, plan, progress):
            if chunk.index == 2:
                raise RuntimeError("the backbone died")
            yield chunk

    monkeypatch.setattr(InProcessExtractor, "run", dies_in_chunk_two)
    with pytest.raises(RuntimeError, match="the backbone died"):
        shards.shard_nag(store, "a", backbone, replace(SETTINGS, chunk_rows=3))
    assert store.read_bytes("assets/shard_nag", "a.parquet") == before
    assert sorted(p.name for p in Path(store.path("assets", "shard_nag")).iterdir()) == [
        "a.parquet"
    ]


def test_progress_counts_the_whole_file(store: Storage, backbone: Backbone) -> None:
    _put(store, "a.jsonl", _jsonl([{"text": t} for t in [*_texts(10), ""]]))
    seen: list[tuple[int, int, int]] = []
    step = shards.shard_nag(
        store, "a", backbone, replace(SETTINGS, chunk_rows=4), lambda *a: seen.append(a)
    )
    assert all(total == 11 for _, total, _ in seen)
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)
    assert seen[-1] == (11, 11, step.facts["nag_tokens"])


def test_target_nag_streams_to_the_same_table_and_profile(
    store: Storage, backbone: Backbone
) -> None:
    (Path(store.path("targets"))).mkdir()
    texts = _texts(13)
    Path(store.path("targets", "t.jsonl")).write_bytes(_jsonl([{"text": t} for t in texts]))
    targets.target_dataset(store, "t", lambda xs: backbone.count_tokens(xs))
    step = targets.target_nag(store, "t", backbone, replace(SETTINGS, chunk_rows=4))
    ds = store.read_parquet("assets/target_dataset", "t.parquet")
    expected = nag_table(backbone, ds["id"], ds["text"].to_list(), SETTINGS)
    table = store.read_parquet("assets/target_nag", "t.parquet")
    assert table.equals(expected)
    meta = store.read_meta("assets/target_nag", "t.parquet")
    profile = build_profile(nags_of(expected, meta), backbone.d_ff)
    np.testing.assert_array_equal(step.facts["profile"], profile)
    np.testing.assert_array_equal(
        store.read_npy("assets/target_nag", "t.profile.npy"), profile.astype("float32")
    )
    # a skipping run repairs a stale .npy (a run killed between the table and the .npy)
    store.write_npy(np.zeros_like(profile, dtype="float32"), "assets/target_nag", "t.profile.npy")
    again = targets.target_nag(store, "t", backbone, SETTINGS)
    assert again.skipped
    np.testing.assert_array_equal(
        store.read_npy("assets/target_nag", "t.profile.npy"), profile.astype("float32")
    )


def test_chunk_nags_table_has_the_stored_columns(store: Storage, backbone: Backbone) -> None:
    _put(store, "a.jsonl", _jsonl([{"text": t} for t in _texts(6)]))
    plan = plan_file(store, "shards/a.jsonl", "a.jsonl", "a", 4)
    job = NagJob(SETTINGS, backbone.fingerprint)
    out = list(InProcessExtractor(backbone).run(job, plan))
    assert [c.index for c in out] == [0, 1] and all(isinstance(c, ChunkNags) for c in out)
    assert out[0].table.column_names == ["id", "tokens", "nag_tokens", "nag"]
    assert [c.first_row for c in out] == [0, 4]


def test_chunk_rows_below_one_is_refused_by_name(store: Storage, backbone: Backbone) -> None:
    _put(store, "few.jsonl", _jsonl([{"text": t} for t in _texts(3)]))
    with pytest.raises(ValueError, match=r"chunk_rows=0 must be >= 1"):
        shards.shard_nag(store, "few", backbone, replace(SETTINGS, chunk_rows=0))

"""Partition keys of pools as they are laid out: nested folders, upper case, any characters.

The expected keys are recomputed here from the rule (a flat safe name keeps its stem; any
other path is a lowercase slug plus the first 10 hex digits of the sha256 of the exact path
without extensions), so a change of rule, which would re-extract every shard of a user's pool
under new keys, fails these tests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nag_assets.nag import Backbone
from nag_assets.pipeline import shards
from nag_assets.pipeline.common import NagSettings, find_input
from nag_assets.pipeline.watch import scan
from nag_assets.storage import Storage, check_key, partition_key

SETTINGS = NagSettings(top_k=4)


def _hash(stem: str) -> str:
    return hashlib.sha256(stem.encode()).hexdigest()[:10]


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("wiki-000.parquet", "wiki-000"),
        ("x.jsonl.gz", "x"),
        ("a.b.json", "a.b"),
        ("part_7.jsonl", "part_7"),
        ("0" * 100 + ".parquet", "0" * 100),
    ],
)
def test_flat_safe_names_keep_their_keys(name: str, key: str) -> None:
    """Existing roots keep every key: no partition renamed, no shard re-extracted."""
    assert partition_key(name) == key


def test_fineweb_dumps_get_distinct_readable_stable_keys() -> None:
    a = partition_key("CC-MAIN-2024-10/000_00000.parquet")
    b = partition_key("CC-MAIN-2024-18/000_00000.parquet")
    assert a == f"cc-main-2024-10.000_00000-{_hash('CC-MAIN-2024-10/000_00000')}"
    assert b == f"cc-main-2024-18.000_00000-{_hash('CC-MAIN-2024-18/000_00000')}"
    assert a != b
    assert partition_key("CC-MAIN-2024-10/000_00000.parquet") == a  # same at every call


@pytest.mark.parametrize(
    "names",
    [
        ["Upper.parquet", "upper.parquet", "UPPER.parquet", "uPPER.parquet"],
        ["a/b.parquet", "a.b.parquet", "a/B.parquet", "A/b.parquet"],
        ["my shard.parquet", "my-shard.parquet", "my_shard.parquet", "my  shard.parquet"],
        ["café.jsonl", "cafe.jsonl", "caf-.jsonl", "cafè.jsonl"],
        ["d/" + "x" * 120 + ".parquet", "e/" + "x" * 120 + ".parquet", "x" * 120 + ".parquet"],
    ],
)
def test_names_that_fold_to_one_slug_get_distinct_keys(names: list[str]) -> None:
    keys = [partition_key(n) for n in names]
    assert len(set(keys)) == len(names), keys
    for k in keys:
        assert check_key(k) == k and len(k) <= 100 and "/" not in k


_segment = st.text(alphabet=st.sampled_from("aZ09_-. é/ü#~A"), min_size=1, max_size=30).filter(
    lambda s: "/" not in s and s not in (".", "..")
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_segment, min_size=1, max_size=4), min_size=2, max_size=8))
def test_every_path_gets_a_safe_key_and_distinct_paths_distinct_keys(
    paths: list[list[str]],
) -> None:
    names = {"/".join(p) + ".parquet" for p in paths}
    keys = {}
    for name in names:
        key = partition_key(name)
        assert check_key(key) == key  # never a path outside the folder
        keys.setdefault(key, set()).add(name[: -len(".parquet")])
    assert all(len(stems) == 1 for stems in keys.values()), keys


def _jsonl(texts: list[str], ids: list[str]) -> bytes:
    return "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in zip(ids, texts)).encode()


@pytest.fixture
def nested_root(tmp_path: Path) -> Path:
    """A pool laid out as downloaded: dump folders, a name recurring in each, hidden parts."""
    texts = [f"Page {i} tells of rivers, hills and the town of {i % 4}." for i in range(9)]
    for dump, part in [("CC-MAIN-2024-10", 0), ("CC-MAIN-2024-18", 1), ("CC-MAIN-2024-18", 2)]:
        folder = tmp_path / "shards" / dump
        folder.mkdir(parents=True, exist_ok=True)
        chunk = texts[3 * part : 3 * part + 3]
        name = "000_00000.jsonl" if part < 2 else "Extra Part.jsonl"
        (folder / name).write_bytes(_jsonl(chunk, [f"d{3 * part + j}" for j in range(3)]))
    (tmp_path / "shards" / "flat.jsonl").write_bytes(_jsonl(texts[:2], ["f0", "f1"]))
    (tmp_path / "shards" / ".cache").mkdir()
    (tmp_path / "shards" / ".cache" / "x.jsonl").write_bytes(b"{}")
    (tmp_path / "shards" / "_tmp" / "y").mkdir(parents=True)
    (tmp_path / "shards" / "_tmp" / "y" / "z.jsonl").write_bytes(b"{}")
    return tmp_path


def test_nested_pool_is_listed_and_keyed(nested_root: Path) -> None:
    store = Storage(str(nested_root))
    names = [f.name for f in store.list_files("shards", recursive=True)]
    assert names == [
        "CC-MAIN-2024-10/000_00000.jsonl",
        "CC-MAIN-2024-18/000_00000.jsonl",
        "CC-MAIN-2024-18/Extra Part.jsonl",
        "flat.jsonl",
    ]
    assert [f.name for f in store.list_files("shards")] == ["flat.jsonl"]  # direct children
    found = scan(store, "shards", {})
    assert not found.rejected
    assert found.added == [partition_key(n) for n in names]
    assert found.seen["flat"]["name"] == "flat.jsonl"
    for name in names:
        assert find_input(store, "shards", partition_key(name))[2] == name


def test_a_nested_shard_is_extracted_under_its_safe_key(
    nested_root: Path, backbone: Backbone
) -> None:
    """Same documents, same NAG table as a flat file; the output is named by the key."""
    store = Storage(str(nested_root))
    key = partition_key("CC-MAIN-2024-18/Extra Part.jsonl")
    step = shards.shard_nag(store, key, backbone, SETTINGS)
    assert step.facts["file"] == "CC-MAIN-2024-18/Extra Part.jsonl"
    assert (nested_root / "assets/shard_nag" / f"{key}.parquet").is_file()
    flat = nested_root / "shards" / "copy.jsonl"
    flat.write_bytes((nested_root / "shards/CC-MAIN-2024-18/Extra Part.jsonl").read_bytes())
    shards.shard_nag(store, "copy", backbone, SETTINGS)
    got = store.read_parquet("assets/shard_nag", f"{key}.parquet")
    assert got.equals(store.read_parquet("assets/shard_nag", "copy.parquet"))
    assert got["id"].to_list() == ["d6", "d7", "d8"]
    # a rerun finds the same file by the same key and skips
    assert shards.shard_nag(store, key, backbone, SETTINGS).skipped


def test_default_ids_of_a_nested_shard_use_its_key(nested_root: Path, backbone: Backbone) -> None:
    store = Storage(str(nested_root))
    (nested_root / "shards/CC-MAIN-2024-10/noid.jsonl").write_text('{"text": "one"}\n')
    key = partition_key("CC-MAIN-2024-10/noid.jsonl")
    shards.shard_nag(store, key, backbone, SETTINGS)
    table = store.read_parquet("assets/shard_nag", f"{key}.parquet")
    assert table["id"].to_list() == [f"{key}/0"]

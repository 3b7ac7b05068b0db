"""Faults in-process: a step that dies between writes, temporary files, and shards that change
while they are read or after they were scored. Never a partial file read, never a mix."""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import time
from pathlib import Path

import pytest

import nag_assets.storage as storage_module
from nag_assets.nag import Backbone
from nag_assets.pipeline import mixture, shards, targets
from nag_assets.pipeline.common import NagSettings
from nag_assets.sources.files import InputError
from nag_assets.storage import TEMP_MAX_AGE_S, Storage, remove_stale_temps
from nag_assets_tests.tiny import tiny_backbone

SETTINGS = NagSettings(top_k=4)


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    return tiny_backbone()


def _jsonl(texts: list[str]) -> bytes:
    return "".join(json.dumps({"text": t}) + "\n" for t in texts).encode()


def _texts(n: int, word: str) -> list[str]:
    return [f"Item {i}: the {word} rose {i} metres by the river {i % 4}." for i in range(n)]


@pytest.fixture
def store(tmp_path: Path, backbone: Backbone) -> Storage:
    """A root with one target (scored) and two shards."""
    for folder in ("targets", "shards"):
        (tmp_path / folder).mkdir()
    (tmp_path / "targets/snow.jsonl").write_bytes(_jsonl(_texts(6, "snow")))
    for name in ("a", "b"):
        (tmp_path / f"shards/{name}.jsonl").write_bytes(_jsonl(_texts(8, f"{name} water")))
    s = Storage(str(tmp_path))
    targets.target_dataset(s, "snow", backbone.count_tokens)
    targets.target_nag(s, "snow", backbone, SETTINGS)
    return s


def _score(store: Storage, backbone: Backbone, *keys: str) -> None:
    for k in keys:
        shards.shard_nag(store, k, backbone, SETTINGS)
        shards.shard_scores(store, k, ["snow"])


def _select(store: Storage, fraction: float = 0.3):
    return mixture.selected_mixture(
        store, ["a", "b"], ["snow"], mixture.MixtureSettings(fraction=fraction)
    )


def test_mixture_dying_before_its_pointer_leaves_the_previous_one(
    store: Storage, backbone: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    _score(store, backbone, "a", "b")
    first = _select(store)
    before = (store.read_bytes("mixture_versions/CURRENT.json"), mixture.mixture_digest(store))

    real = Storage.write_bytes

    def dies_at_pointer(self, data, *parts):
        if parts[-1] == "CURRENT.json":
            raise KeyboardInterrupt("killed after the parts, before the pointer")
        return real(self, data, *parts)

    monkeypatch.setattr(Storage, "write_bytes", dies_at_pointer)
    with pytest.raises(KeyboardInterrupt):
        _select(store, fraction=0.6)
    # the new version's parts exist, but nothing points at them: readers see the old mixture
    root = Path(store.root)
    assert (
        len(
            [
                p
                for p in (root / "mixture_versions").iterdir()
                if p.is_dir() and p.suffix != ".manifest"
            ]
        )
        == 2
    )
    assert store.read_bytes("mixture_versions/CURRENT.json") == before[0]
    assert mixture.mixture_digest(store) == before[1]
    assert (
        mixture.read_mixture(store)["id"].n_unique() == first.facts["targets"]["snow"]["documents"]
    )

    monkeypatch.undo()
    again = _select(store, fraction=0.6)
    assert not again.skipped
    # the version in force and the one before it are left (a reader may still be on it)
    dirs = sorted(
        p.name
        for p in (root / "mixture_versions").iterdir()
        if p.is_dir() and p.suffix != ".manifest"
    )
    assert dirs == sorted([first.version, again.version])
    # one switch later the oldest goes, as does any orphan
    (root / "mixture_versions" / "orphan").mkdir()
    third = _select(store, fraction=0.4)
    dirs = sorted(
        p.name
        for p in (root / "mixture_versions").iterdir()
        if p.is_dir() and p.suffix != ".manifest"
    )
    assert dirs == sorted([again.version, third.version])


def test_temporary_files_are_never_listed_and_stale_ones_go(tmp_path: Path) -> None:
    store = Storage(str(tmp_path))
    store.write_bytes(b"whole", "shards", "x.jsonl")
    folder = tmp_path / "shards"
    fresh, stale = folder / ".tmp-fresh", folder / ".tmp-stale"
    fresh.write_bytes(b"half")
    stale.write_bytes(b"ha")
    old = time.time() - TEMP_MAX_AGE_S - 1
    os.utime(stale, (old, old))
    assert [f.name for f in store.list_files("shards")] == ["x.jsonl"]
    assert remove_stale_temps(str(folder)) == [str(stale)]
    assert fresh.exists() and not stale.exists()
    # a write that fails midway removes its own temporary file and keeps the old content
    real_fsync = os.fsync

    def broken_fsync(fd):
        raise OSError("disk full")

    os.fsync = broken_fsync
    try:
        with pytest.raises(OSError, match="disk full"):
            store.write_bytes(b"new but never complete", "shards", "x.jsonl")
    finally:
        os.fsync = real_fsync
    assert (folder / "x.jsonl").read_bytes() == b"whole"
    assert sorted(p.name for p in folder.iterdir()) == [".tmp-fresh", "x.jsonl"]


def _rewrites_in_place(path: Path, versions: list[bytes], monkeypatch: pytest.MonkeyPatch):
    """After each read of `path`, a writer rewrites it in place (same inode) with the next of
    `versions`, as a producer that does not write atomically would."""
    real_open = builtins.open
    left = list(versions)

    class Racing:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def read(self, *args):
            data = self.f.read(*args)
            if left:
                time.sleep(0.002)  # a different mtime
                with real_open(path, "r+b") as w:
                    w.write(left.pop(0))
                    w.truncate()
            return data

    def racing_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return Racing(f) if str(file) == str(path) and "r" in mode else f

    monkeypatch.setattr(storage_module, "open", racing_open, raising=False)


def test_shard_changing_while_read_is_read_again_whole(
    store: Storage, backbone: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = Path(store.path("shards", "a.jsonl"))
    new = _jsonl(_texts(5, "new water"))
    _rewrites_in_place(path, [new], monkeypatch)
    step = shards.shard_nag(store, "a", backbone, SETTINGS)
    # the first read saw the file change under it; the retry read the new version whole
    assert step.facts["documents_extracted"] == 5
    assert (
        store.read_meta("assets/shard_nag", "a.parquet")["sha256"]
        == (hashlib.sha256(new).hexdigest()[:32])
    )


def test_shard_that_never_settles_fails_its_partition_clearly(
    store: Storage, backbone: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = Path(store.path("shards", "a.jsonl"))
    _rewrites_in_place(path, [_jsonl(_texts(n, "w")) for n in (3, 4, 5, 6)], monkeypatch)
    with pytest.raises(InputError, match=r"^a\.jsonl: changed while being read, again and again"):
        shards.shard_nag(store, "a", backbone, SETTINGS)
    assert not store.exists("assets/shard_nag/a.parquet")


def test_shard_changed_after_scoring_is_never_mixed(store: Storage, backbone: Backbone) -> None:
    """The mixture copies text from the shard file: if the file is no longer the version that
    was scored, the mixture stops (keeping the previous one) until the new version is scored."""
    _score(store, backbone, "a", "b")
    first = _select(store)
    pointer = store.read_bytes("mixture_versions/CURRENT.json")
    Path(store.path("shards", "a.jsonl")).write_bytes(_jsonl(_texts(8, "other water")))
    with pytest.raises(InputError, match=r"^a\.jsonl changed after it was scored: this mixture"):
        _select(store, fraction=0.9)  # a new mixture version, which must read shard a again
    assert store.read_bytes("mixture_versions/CURRENT.json") == pointer
    _score(store, backbone, "a")
    second = _select(store, fraction=0.9)
    assert second.version != first.version
    texts = set(mixture.read_mixture(store).filter(shard="a")["text"].to_list())
    assert texts and all("other water" in t for t in texts)

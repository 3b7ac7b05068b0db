"""The corpus of a selection: the chosen documents' text and columns, written per shard from
the selection's manifest, apart from choosing them.

The selection (`selected_mixture`) is a manifest computed from the score tables alone:
`mixture_versions/<version>.manifest/<shard>.parquet` (id, target, score, shard, tokens,
ranker, row) and `mixture_versions/CURRENT.json`. The corpus is written from it shard by shard
(`write_corpus`, in parallel by the executor's map): each part is cached by the shard's content
and its manifest (`corpus_parts/`), so a shard whose chosen rows did not change is linked, not
copied again. Then `mixture_versions/CORPUS.json` names the version whose corpus is whole, and
`selected_mixture/` is made to hold exactly its parts (local: a symlink switched atomically;
S3: its files copied in, the others removed).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import polars as pl

from nag_assets.pipeline.common import StepResult
from nag_assets.pipeline.layout import (
    MIXTURE_POINTER,
    MIXTURE_VERSIONS,
    SELECTED_MIXTURE,
    read_json,
)
from nag_assets.pipeline.shards import read_shard
from nag_assets.sources.files import InputError, read_documents
from nag_assets.storage import Storage, digest

CORPUS = SELECTED_MIXTURE  # the parts of the corpus in force, nothing else
FOLDER = MIXTURE_VERSIONS  # every version's manifest, parts and facts, and the pointers
POINTER = MIXTURE_POINTER  # the selection in force (its manifest)
CORPUS_POINTER = "CORPUS.json"  # the version whose corpus is written whole
PREVIEWS = "previews"
PART_CACHE = "corpus_parts"  # parts by shard content and manifest: reused across versions
FIRST = ("id", "text", "target", "score", "shard", "tokens", "ranker")

Map = Callable[[Callable[[str], Any], list[str]], Iterable[Any]]


def manifest_file(version: str, shard: str) -> str:
    """Beside the version's folder, never in it: the corpus folder holds its parts alone."""
    return f"{version}.manifest/{shard}.parquet"


def part_file(version: str, shard: str) -> str:
    return f"{version}/part-{shard}.parquet"


def write_corpus(
    storage: Storage,
    version: str | None = None,
    folder: str = FOLDER,
    workers: int = 1,
    map_fn: Map | None = None,
    publish: bool = True,
    facts: dict | None = None,
) -> StepResult:
    """Write the corpus of a selection (default: the one in force) from its manifest, one part
    per shard, `workers` at a time (or through `map_fn`, e.g. Ray tasks); with `publish`,
    then name it in CORPUS.json and show it in `selected_mixture/`. `facts`: the selection's,
    when it is not published yet."""
    facts = {"version": version, "facts": facts} if facts else _facts_of(storage, folder, version)
    version = version or facts["version"]
    done = read_json(storage, folder, CORPUS_POINTER) if publish else None
    if done and done["version"] == version and corpus_shows(storage, version):
        return StepResult(version, True, {"parts": len(done["parts"]), "reused": 0})
    shards = [f.rsplit("/", 1)[-1][: -len(".parquet")] for f in facts["facts"]["manifest"]]
    start = time.monotonic()

    def one(shard: str) -> tuple[str, bool]:
        return write_part(storage, folder, version, shard)

    if map_fn is None:
        with ThreadPoolExecutor(max(1, workers)) as pool:
            results = list(pool.map(one, shards))
    else:
        results = list(map_fn(one, shards))
    parts = [name for name, _ in results]
    if publish:
        publish_corpus(storage, version, facts["facts"]["files"], parts)
    reused = sum(r for _, r in results)
    took = round(time.monotonic() - start, 2)
    facts = {"parts": len(parts), "reused": reused, "seconds": took, "part_names": parts}
    return StepResult(version, False, facts)


def _facts_of(storage: Storage, folder: str, version: str | None) -> dict:
    parts = (folder, f"{version}.json") if version else (FOLDER, POINTER)
    found = read_json(storage, *parts)
    if found is None:
        raise InputError(f"no selection {version or 'in force'} under {storage.url(folder)} yet")
    return found


def write_part(storage: Storage, folder: str, version: str, shard: str) -> tuple[str, bool]:
    """The shard's corpus part of this version: linked from the part cache when the shard's
    content and chosen rows are the same as before, else written afresh. (cache name, reused)"""
    raw = storage.read_bytes(folder, manifest_file(version, shard))
    sha = (storage.read_meta(folder, manifest_file(version, shard)) or {})["sha256"]
    name = f"{shard}-{digest('part', sha, hashlib.sha256(raw).hexdigest())}.parquet"
    reused = storage.exists(PART_CACHE, name)
    if not reused:
        manifest = storage.read_parquet(folder, manifest_file(version, shard))
        storage.write_parquet(_part(storage, shard, sha, manifest), PART_CACHE, name)
    storage.copy_from(storage, (PART_CACHE, name), (folder, part_file(version, shard)))
    return name, reused


def _part(storage: Storage, shard: str, sha: str, manifest: pl.DataFrame) -> pl.DataFrame:
    """The chosen rows of the shard with their text and every column of the shard."""
    name, data, now_sha = read_shard(storage, shard)
    if now_sha != sha:
        raise InputError(
            f"{name} changed after it was scored: this mixture is retried once the new "
            "version of the shard is scored"
        )
    docs = read_documents(data, name, shard)
    picked = docs[manifest["row"].to_list()]
    if picked["id"].to_list() != manifest["id"].to_list():
        raise InputError(f"{name}: documents do not line up with their scores")
    return (
        manifest.drop("id", "row")
        .hstack(picked.rename({"ranker": "shard_ranker"}, strict=False))  # a shard's own
        .select(*FIRST, pl.exclude(*FIRST))
    )


def publish_corpus(storage: Storage, version: str, files: list[str], parts: list[str]) -> None:
    """Name the version's corpus whole, show it, and drop cached parts no kept corpus uses."""
    before = read_json(storage, FOLDER, CORPUS_POINTER) or {}
    pointer = {"version": version, "files": files, "parts": parts}
    storage.write_bytes(json.dumps(pointer).encode(), FOLDER, CORPUS_POINTER)
    show_corpus(storage, version, files)
    keep = set(parts) | set(before.get("parts", []))
    for f in storage.list_files(PART_CACHE):
        if f.name not in keep:
            storage.fs.rm(f.path)


def show_corpus(storage: Storage, version: str, files: list[str]) -> None:
    """Make `selected_mixture/` hold the version's parts and nothing else. Local: a relative
    symlink to its folder, replaced atomically (a folder left by an older release is removed
    first). Elsewhere: its parts copied in, then every other file removed."""
    if storage.is_local:
        link = storage.path(CORPUS)
        if os.path.isdir(link) and not os.path.islink(link):
            storage.fs.rm(link, recursive=True)  # the old layout: versions inside
        os.makedirs(storage.path(FOLDER, version), exist_ok=True)  # an empty selection
        tmp = storage.path(f".tmp-{CORPUS}-{os.getpid()}")
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(os.path.join(FOLDER, version), tmp)
        os.replace(tmp, link)
        return
    names = {f.split("/", 1)[1] for f in files}
    for name in sorted(names):
        storage.copy_from(storage, (FOLDER, version, name), (CORPUS, name))
    for f in storage.list_files(CORPUS, recursive=True):
        if f.name not in names:
            storage.fs.rm(f.path)


def corpus_shows(storage: Storage, version: str) -> bool:
    """Whether `selected_mixture/` is already the version's (local: the link's target)."""
    link = storage.path(CORPUS)
    if storage.is_local:
        return os.path.islink(link) and os.readlink(link) == os.path.join(FOLDER, version)
    return storage.exists(CORPUS)


def read_mixture(where: Storage | str, preview: str | None = None) -> pl.DataFrame:
    """The selected corpus in force under a storage root (a Storage, a local folder or an
    s3:// URL), as one table; or the preview of that version."""
    storage = where if isinstance(where, Storage) else Storage(str(where))
    folder = PREVIEWS if preview else FOLDER
    found = (
        read_json(storage, PREVIEWS, f"{preview}.json")
        if preview
        else read_json(storage, FOLDER, CORPUS_POINTER)
    )
    if found is None:
        raise FileNotFoundError(f"no selected_mixture under {storage.url(folder)} yet")
    files = found["facts"]["files"] if preview else found["files"]
    if not files:
        return pl.DataFrame()
    return pl.concat([storage.read_parquet(folder, f) for f in files], how="diagonal_relaxed")


def read_manifest(storage: Storage) -> pl.DataFrame:
    """The selection in force without its text: id, target, score, shard, tokens, ranker."""
    pointer = read_json(storage, FOLDER, POINTER)
    if pointer is None:
        raise FileNotFoundError(f"no selected_mixture under {storage.url(FOLDER)} yet")
    files = pointer["facts"]["manifest"]
    if not files:
        return pl.DataFrame()
    return pl.concat([storage.read_parquet(FOLDER, f) for f in files]).drop("row")


def mixture_digest(storage: Storage, preview: str | None = None) -> str:
    """sha256 over the corpus in force (or a preview's): equal across byte-identical reruns."""
    folder = PREVIEWS if preview else FOLDER
    if preview:
        files = (read_json(storage, PREVIEWS, f"{preview}.json") or {})["facts"]["files"]
    else:
        files = (read_json(storage, FOLDER, CORPUS_POINTER) or {}).get("files", [])
    h = hashlib.sha256()
    for f in files:
        h.update(storage.read_bytes(folder, f))
    return h.hexdigest()

"""One storage root (local folder or s3://bucket/prefix) for inputs and outputs.

Layout under the root:
    targets/                 target files dropped by users (parquet, JSONL, or a benchmark spec)
    shards/                  candidate shard files (parquet, JSONL, JSONL.gz)
    assets/<asset>/<key>.*   what the assets write, one file per partition
    selected_mixture/        the selected corpus, versioned folders + CURRENT pointer

Every write is atomic: local files go through a temporary file and `os.replace`, S3 objects
are a single PUT. A reader therefore sees the previous version or the new one, never a part.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import fsspec
import numpy as np
import polars as pl
import pyarrow.parquet as pq

SAFE_KEY = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
MAX_KEY = 100
META_KEY = "nag_assets"


class UnsafeKeyError(ValueError):
    """A file name that cannot become a partition key without leaving the storage root."""


def partition_key(file_name: str) -> str:
    """The partition key of an input file: its name without extensions, checked for safety."""
    stem = file_name
    for ext in (".gz", ".parquet", ".jsonl", ".json"):
        stem = stem[: -len(ext)] if stem.endswith(ext) else stem
    if not SAFE_KEY.fullmatch(stem) or ".." in stem:
        raise UnsafeKeyError(
            f"file {file_name!r}: a partition key must be lowercase letters, digits, '_', '.'"
            f" or '-', start with a letter or digit, at most {MAX_KEY} characters, no '..'"
        )
    return stem


def check_key(key: str) -> str:
    if not SAFE_KEY.fullmatch(key) or ".." in key:
        raise UnsafeKeyError(f"partition key {key!r} is not safe as a file name")
    return key


@dataclass(frozen=True)
class FileInfo:
    path: str  # full path or URL
    name: str
    signature: str  # cheap change detector: size + mtime, or the S3 ETag
    etag: str | None  # a content version the store already knows (S3), else None


class Storage:
    """Paths, listing and atomic I/O under one root, the same on local disk and S3."""

    def __init__(self, root: str, storage_options: dict | None = None):
        self.root = root.rstrip("/")
        self.fs, self._base = fsspec.core.url_to_fs(self.root, **(storage_options or {}))
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        self.is_local = "file" in protocols

    def path(self, *parts: str) -> str:
        return "/".join([self._base, *parts])

    def url(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def exists(self, *parts: str) -> bool:
        return self.fs.exists(self.path(*parts))

    def list_files(self, folder: str) -> list[FileInfo]:
        """Files directly under `folder`, sorted by name; hidden and temporary ones skipped."""
        base = self.path(folder)
        if not self.fs.exists(base):
            return []
        self.fs.invalidate_cache(base)
        out = []
        for d in self.fs.ls(base, detail=True):
            name = d["name"].rstrip("/").rsplit("/", 1)[-1]
            if d.get("type") != "file" or name.startswith((".", "_", "~")):
                continue
            etag = d.get("ETag") or d.get("etag")
            sig = etag or f"{d.get('size')}:{d.get('mtime') or d.get('LastModified')}"
            out.append(FileInfo(d["name"], name, str(sig), etag.strip('"') if etag else None))
        return sorted(out, key=lambda f: f.name)

    def content_version(self, info: FileInfo) -> str:
        """A version of the file's content: the ETag on S3, else a sha256 of the bytes."""
        if info.etag:
            return f"etag:{info.etag}"
        return f"sha256:{sha256_file(self.fs, info.path)}"

    def read_bytes(self, *parts: str) -> bytes:
        return self.fs.cat_file(self.path(*parts))

    def write_bytes(self, data: bytes, *parts: str) -> str:
        target = self.path(*parts)
        if not self.is_local:
            self.fs.pipe_file(target, data)
            return target
        folder = os.path.dirname(target)
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def write_parquet(self, df: pl.DataFrame, *parts: str, meta: dict | None = None) -> str:
        """Write a table; `meta` (JSON) rides in the file's footer, so both land together."""
        table = df.to_arrow()
        if meta is not None:
            table = table.replace_schema_metadata({META_KEY: json.dumps(meta, sort_keys=True)})
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        return self.write_bytes(buf.getvalue(), *parts)

    def read_parquet(self, *parts: str) -> pl.DataFrame:
        return pl.read_parquet(io.BytesIO(self.read_bytes(*parts)))

    def read_meta(self, *parts: str) -> dict | None:
        """The `meta` a file was written with, or None if the file is missing or has none."""
        try:
            with self.fs.open(self.path(*parts), "rb") as f:
                raw = (pq.read_schema(f).metadata or {}).get(META_KEY.encode())
        except FileNotFoundError:
            return None
        return json.loads(raw) if raw else None

    def write_npy(self, array: np.ndarray, *parts: str) -> str:
        buf = io.BytesIO()
        np.save(buf, array, allow_pickle=False)
        return self.write_bytes(buf.getvalue(), *parts)

    def read_npy(self, *parts: str) -> np.ndarray:
        return np.load(io.BytesIO(self.read_bytes(*parts)), allow_pickle=False)

    def delete(self, *parts: str) -> None:
        path = self.path(*parts)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)


def sha256_file(fs, path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()[:32]


def digest(*parts: object) -> str:
    """Short stable hash of strings/numbers: data versions of derived assets."""
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:16]

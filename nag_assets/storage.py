"""One storage root (local folder or s3://bucket/prefix) for inputs and outputs.

Layout under the root:
    targets/                 target files dropped by users (parquet, JSONL, or a benchmark spec)
    shards/                  candidate shard files, at any depth (unless the spec puts the pool
                             elsewhere: `Storage.inputs`)
    assets/<asset>/<key>.*   what the assets write, one file per partition
    mixture_versions/        each selection: manifest, parts, facts; CURRENT and CORPUS pointers
    selected_mixture/        the parts of the corpus in force, nothing else (local: a symlink)
    nag_store/               NAG tables by content and settings (default; shareable)

Every write is atomic: local files go through a temporary file (`.tmp-*`, never listed, and
removed once stale) and `os.replace`; S3 objects are a single PUT (or one multipart upload,
which S3 also publishes whole). A reader sees the previous version or the new one, never a part.
Reads of inputs are checked the other way round: a file that changes while it is being read is
read again, never returned mixed (`read_whole`).

S3 endpoint and credentials come from the usual AWS settings (AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, AWS_PROFILE, ...; botocore reads them) or from `storage_options`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import fsspec
import numpy as np
import polars as pl
import pyarrow.parquet as pq

SAFE_KEY = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
MAX_KEY = 100
META_KEY = "nag_assets"
TEMP_PREFIX = ".tmp-"
TEMP_MAX_AGE_S = 3600.0  # a temporary file this old belongs to a writer that died
READ_TRIES = 3


class UnsafeKeyError(ValueError):
    """A file name that cannot become a partition key without leaving the storage root."""


INPUT_EXTENSIONS = (".gz", ".parquet", ".jsonl", ".json")
KEY_HASH_CHARS = 10
HIDDEN_PREFIXES = (".", "_", "~")  # hidden, temporary (.tmp-*), markers (_SUCCESS), backups


def partition_key(rel_path: str) -> str:
    """The partition key of an input file, from its path under targets/ or shards/.

    A file directly in the folder whose name (without extensions) is already a safe key keeps
    it, so existing roots keep their keys. Any other path (sub-folders, upper case, spaces,
    other characters, too long) becomes a lowercase slug of the path plus a hash of the exact
    path: FineWeb's `CC-MAIN-2024-10/000_00000.parquet` is
    `cc-main-2024-10.000_00000-<hash>`, distinct from the same name in another dump, and the
    same at every listing. The key names outputs; the input is only ever found by listing."""
    segments = rel_path.split("/")
    if rel_path.startswith("/") or any(s in ("", ".", "..") for s in segments):
        raise UnsafeKeyError(f"file {rel_path!r}: a path under the folder must not leave it")
    stem = rel_path
    for ext in INPUT_EXTENSIONS:
        stem = stem[: -len(ext)] if stem.endswith(ext) else stem
    if not stem.rsplit("/", 1)[-1]:
        raise UnsafeKeyError(f"file {rel_path!r}: no name left once its extensions are dropped")
    if len(segments) == 1 and SAFE_KEY.fullmatch(stem) and ".." not in stem:
        return stem
    slug = ".".join(re.sub(r"[^a-z0-9_.-]+", "-", s.lower()) for s in stem.split("/"))
    slug = re.sub(r"\.{2,}", ".", slug)
    slug = slug[-(MAX_KEY - KEY_HASH_CHARS - 1) :].strip("._-") or "file"
    return f"{slug}-{hashlib.sha256(stem.encode()).hexdigest()[:KEY_HASH_CHARS]}"


def check_key(key: str) -> str:
    if not SAFE_KEY.fullmatch(key) or ".." in key:
        raise UnsafeKeyError(
            f"partition key {key!r} is not safe as a file name: use lowercase letters, digits, "
            f"'_', '.' or '-', starting with a letter or digit, at most {MAX_KEY} characters, "
            "no '..'"
        )
    return key


class ChangedWhileReading(OSError):
    """A file kept changing while it was read; it is read again once it settles."""


@dataclass(frozen=True)
class Source:
    """Where an input folder's files lie ("": under the storage root), the fnmatch patterns
    of the files it takes (none: all), and the filesystem options to open it with."""

    url: str
    patterns: tuple[str, ...] = ()
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class FileInfo:
    path: str  # full path or URL
    name: str  # path under the listed folder: the file name, or sub/folders/name
    signature: str  # cheap change detector: size + mtime, or the S3 ETag
    etag: str | None  # a content version the store already knows (S3), else None


class Storage:
    """Paths, listing and atomic I/O under one root, the same on local disk and S3."""

    def __init__(
        self,
        root: str,
        storage_options: dict | None = None,
        sources: dict[str, Source] | None = None,
        nag_store: str | None = None,
        patterns: tuple[str, ...] = (),
    ):
        self.root = root.rstrip("/")
        self.sources = dict(sources or {})  # input folder -> where its files lie
        self.nag_store = nag_store  # None: <root>/nag_store
        self.patterns = patterns  # an input folder's own: the files it takes
        self._inputs: dict[str, Storage] = {}
        options = dict(storage_options or {})
        if self.root.startswith(("s3://", "s3a://")):
            # other processes add and replace objects: never answer from a stale listing
            options.setdefault("use_listings_cache", False)
        self.options = options  # what a worker elsewhere needs to open the same root
        self.fs, self._base = fsspec.core.url_to_fs(self.root, **options)
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        self.is_local = "file" in protocols

    def inputs(self, folder: str) -> Storage:
        """Where the input folder (`shards`: the pool, `targets`) lies: its own location when
        the spec names one (read-only, anywhere), else `<root>/<folder>`."""
        if folder not in self._inputs:
            source = self.sources.get(folder) or Source("")
            if source.url:
                store = Storage(source.url, source.options, patterns=source.patterns)
            else:
                store = Storage(self.url(folder), self.options, patterns=source.patterns)
            self._inputs[folder] = store
        return self._inputs[folder]

    def nags(self) -> Storage:
        """The NAG store: NAG tables by content and settings, shared by every selection that
        names it (default `<root>/nag_store`)."""
        if "_nags" not in self._inputs:
            given = self.sources.get("nag_store") or Source(self.nag_store or "")
            url = given.url or self.url("nag_store")
            same_fs = url.split("://")[0] == self.root.split("://")[0]
            options = given.options or (self.options if same_fs else {})
            self._inputs["_nags"] = Storage(url, options)
        return self._inputs["_nags"]

    def list_inputs(self) -> list[FileInfo]:
        """Every file under this (input) root at any depth that its patterns take (all when
        it has none), sorted by path."""
        files = self.list_files("", recursive=True)
        if not self.patterns:
            return files
        return [f for f in files if any(fnmatch.fnmatchcase(f.name, p) for p in self.patterns)]

    def copy_from(self, other: Storage, src: tuple[str, ...], dst: tuple[str, ...]) -> None:
        """Place `other`'s file at `src` here at `dst`, atomically: a hard link on one local
        disk, a server-side copy within one S3, else a streamed copy."""
        source, target = other.path(*src), self.path(*dst)
        if self.is_local and other.is_local:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            tmp = f"{os.path.dirname(target)}/{TEMP_PREFIX}{os.getpid()}-{os.path.basename(target)}"
            Path(tmp).unlink(missing_ok=True)
            try:
                os.link(source, tmp)
            except OSError:  # another device, or no hard links here
                shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        elif type(self.fs) is type(other.fs) and self.options == other.options:
            self.fs.copy(source, target)
        else:
            with other.fs.open(source, "rb") as f, self.open_atomic(*dst) as out:
                shutil.copyfileobj(f, out, 1 << 20)

    def path(self, *parts: str) -> str:
        """The full path of `parts` under the root; never a path outside it."""
        parts = tuple(p for p in parts if p != "")
        for part in parts:
            segments = part.split("/")
            if part.startswith("/") or any(p in ("", ".", "..") for p in segments):
                raise UnsafeKeyError(f"path part {part!r} would leave the storage root")
        return "/".join([self._base, *parts])

    def relative(self, path: str) -> str:
        """The part under the root of a full path (as `list_files` gives), e.g. "shards/a.jsonl"."""
        if not path.startswith(self._base + "/"):
            raise UnsafeKeyError(f"{path!r} is not under the storage root {self.root!r}")
        return path[len(self._base) + 1 :]

    def url(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def exists(self, *parts: str) -> bool:
        return self.fs.exists(self.path(*parts))

    def list_files(self, folder: str, recursive: bool = False) -> list[FileInfo]:
        """Files under `folder` (directly, or at any depth), sorted by their path under it;
        hidden and temporary files and folders skipped. `FileInfo.name` is that path."""
        base = self.path(folder)
        if not self.fs.exists(base):
            return []
        self.fs.invalidate_cache(base)
        if recursive:
            entries = list(self.fs.find(base, detail=True).values())
        else:
            entries = self.fs.ls(base, detail=True)
        prefix = self.fs._strip_protocol(base).rstrip("/") + "/"
        out = []
        for d in entries:
            full = self.fs._strip_protocol(d["name"]).rstrip("/")
            rel = full[len(prefix) :] if full.startswith(prefix) else full.rsplit("/", 1)[-1]
            hidden = any(s.startswith(HIDDEN_PREFIXES) for s in rel.split("/"))
            if d.get("type") != "file" or hidden:
                continue  # hidden, temporary (.tmp-*) or a folder
            etag = d.get("ETag") or d.get("etag")
            sig = etag or f"{d.get('size')}:{d.get('mtime') or d.get('LastModified')}"
            out.append(FileInfo(d["name"], rel, str(sig), etag.strip('"') if etag else None))
        return sorted(out, key=lambda f: f.name)

    def content_version(self, info: FileInfo) -> str:
        """A version of the file's content: the ETag on S3, else a sha256 of the bytes."""
        if info.etag:
            return f"etag:{info.etag}"
        return f"sha256:{sha256_file(self.fs, info.path)}"

    def open_read(self, path: str) -> IO[bytes]:
        """A binary file open for reading at `path` (full path): for reads in pieces."""
        return open(path, "rb") if self.is_local else self.fs.open(path, "rb")

    def signature(self, path: str) -> str:
        """A cheap version of the file at `path` (full path) that changes with its content:
        local size, mtime and inode; S3 the ETag."""
        if self.is_local:
            st = os.stat(path)
            return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
        self.fs.invalidate_cache(path)
        info = self.fs.info(path)
        return str(info.get("ETag") or info.get("etag") or info.get("size"))

    def read_bytes(self, *parts: str) -> bytes:
        return self.fs.cat_file(self.path(*parts))

    def read_whole(self, path: str, tries: int = READ_TRIES) -> bytes:
        """The bytes of one version of the file at `path` (full path), never a mix of two.

        Local: the size, mtime and inode must be the same before and after the read (a file
        replaced by rename is safe anyway; this catches writers that rewrite in place). S3:
        the read is pinned to the object's ETag, so a replaced object fails the read. Either
        way the read is retried, and `ChangedWhileReading` raised if it never settles."""
        for attempt in range(tries):
            if attempt:
                time.sleep(0.1 * 2**attempt)
            try:
                if self.is_local:
                    before = os.stat(path)
                    with open(path, "rb") as f:
                        data = f.read()
                    after = os.stat(path)
                    same = (before.st_size, before.st_mtime_ns, before.st_ino) == (
                        after.st_size,
                        after.st_mtime_ns,
                        after.st_ino,
                    )
                    if same and len(data) == after.st_size:
                        return data
                else:
                    # s3fs pins every ranged GET of an open file to the ETag seen at open
                    with self.fs.open(path, "rb", cache_type="none") as f:
                        return f.read()
            except FileNotFoundError:
                raise
            except OSError as e:  # s3fs FileExpired: the object was replaced mid-read
                if not _changed_error(e):
                    raise
        raise ChangedWhileReading(f"{path}: changed while being read ({tries} tries)")

    def write_bytes(self, data: bytes, *parts: str) -> str:
        target = self.path(*parts)
        if not self.is_local:  # one PUT: S3 publishes it whole
            self.fs.pipe_file(target, data)
            return target
        with self.open_atomic(*parts) as f:
            f.write(data)
        return target

    @contextlib.contextmanager
    def open_atomic(self, *parts: str) -> Iterator[IO[bytes]]:
        """A binary file that appears at `parts` whole when the block ends without error, and
        not at all otherwise (the previous version stays): for writes too big to hold in
        memory. Local: a temporary file, fsync and `os.replace`. S3: one multipart upload,
        completed only on success (aborted on error; a killed process never completes it)."""
        target = self.path(*parts)
        if not self.is_local:
            f = self.fs.open(target, "wb")
            try:
                yield f
            except BaseException:
                f.discard()  # aborts the multipart upload: nothing is published
                f.closed = True  # and closing it later (or on garbage collection) does nothing
                raise
            f.close()
            return
        folder = os.path.dirname(target)
        os.makedirs(folder, exist_ok=True)
        remove_stale_temps(folder)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

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


def remove_stale_temps(folder: str, max_age_s: float = TEMP_MAX_AGE_S) -> list[str]:
    """Delete the temporary files (`.tmp-*`) in a local folder older than `max_age_s`: what a
    killed writer left. Younger ones may belong to a writer still at work."""
    removed: list[str] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return removed
    for e in entries:
        if not e.name.startswith(TEMP_PREFIX):
            continue
        try:
            if now - e.stat().st_mtime > max_age_s:
                os.unlink(e.path)
                removed.append(e.path)
        except FileNotFoundError:
            pass
    return removed


def _changed_error(e: OSError) -> bool:
    try:
        from s3fs.utils import FileExpired
    except ImportError:  # pragma: no cover - s3fs is a dependency
        return False
    return isinstance(e, FileExpired)


def sha256_file(fs, path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()[:32]


def digest(*parts: object) -> str:
    """Short stable hash of strings/numbers: data versions of derived assets."""
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:16]

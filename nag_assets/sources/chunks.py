"""A documents file as a list of bounded chunks: what lets a shard of any size stream.

A chunk is defined by the file alone (never by who reads it), so every executor computes
exactly the same chunks:
- parquet: each row group cut into pieces of `chunk_rows` rows (a chunk never spans two
  row groups, so a reader decodes at most one row group's prefix to reach it);
- JSONL / JSONL.gz: `chunk_rows` non-blank lines in a row, found by one pass over the bytes.

`plan_file` makes that one pass (streaming, bounded memory): the file's sha256, its
signature (local: size, mtime, inode; S3: ETag) and the `ChunkRef`s. A `ChunkRef` is small
and picklable (storage root and options, the file's path under the root, the chunk's
bounds, its global first row and line), so a remote worker reads its chunk straight from
storage with `read_chunk`. `iter_frames` reads the same chunks one after the other in one
open of the file (cheaper in-process; same frames, tested). Either way a file that is no
longer the version that was planned raises `InputError`, never returns a mix of versions.

The frames are raw (as parsed); `sources.files.normalize` with `first_row` and the lines
checks and repairs them with messages naming the file's global row or line.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from nag_assets.sources.files import SUFFIXES, InputError, check_jsonl_line, jsonl_frame
from nag_assets.storage import ChangedWhileReading, Storage

CHUNK_ROWS = 4096  # documents per chunk: a few MB of text, length-sorted within
READ_TRIES = 3
HASH_BLOCK = 1 << 20


@dataclass(frozen=True)
class ChunkRef:
    """One chunk of one file: everything a worker needs to read it itself."""

    root: str  # storage root URL (local folder or s3://bucket/prefix)
    storage_options: tuple[tuple[str, object], ...]  # Storage options, as sorted items
    path: str  # the file, relative to the root (e.g. "shards/web-000.parquet")
    name: str  # the file's name, for messages
    key: str  # its partition key (missing ids become "<key>/<row>")
    signature: str  # the file version the plan was made from
    index: int  # chunk number in the file, from 0
    first_row: int  # global row of the chunk's first document (from 0)
    rows: int  # documents in the chunk
    row_group: int = -1  # parquet: the row group, and the first row within it
    group_offset: int = 0
    byte_offset: int = 0  # JSONL: where the chunk's first line starts (decompressed)
    byte_size: int = 0  # and how many bytes its lines take
    first_line: int = 0  # JSONL: line number (from 1) of its first line

    def storage(self) -> Storage:
        return Storage(self.root, dict(self.storage_options))


@dataclass(frozen=True)
class FilePlan:
    """A file's version and chunks, from one streaming pass."""

    name: str
    key: str
    sha256: str  # first 32 hex digits, as `read_input` gives
    signature: str
    rows: int
    chunks: tuple[ChunkRef, ...] = field(repr=False)


def plan_file(storage: Storage, path: str, name: str, key: str, chunk_rows: int) -> FilePlan:
    """Hash the file and cut it into chunks in one read (retried while the file changes)."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows={chunk_rows} must be >= 1")
    if not name.endswith(SUFFIXES) or name.endswith(".json"):
        raise InputError(f"{name}: unsupported file type (use .parquet, .jsonl or .jsonl.gz)")
    full = storage.path(*path.split("/"))
    for _ in range(READ_TRIES):
        before = signature(storage, full)
        try:
            sha, bounds = _scan(storage, full, name, chunk_rows)
        except ChangedWhileReading:
            continue
        if signature(storage, full) == before:
            break
    else:
        raise InputError(
            f"{name}: changed while being read, again and again; it is read afresh once the "
            "writer is done (the pool sensor sees the new version)"
        )
    base: dict[str, Any] = dict(
        root=storage.root,
        storage_options=tuple(sorted(storage.options.items())),
        path=path,
        name=name,
        key=key,
        signature=before,
    )
    chunks = tuple(ChunkRef(index=i, **base, **b) for i, b in enumerate(bounds))
    return FilePlan(name, key, sha, before, sum(c.rows for c in chunks), chunks)


def signature(storage: Storage, full: str) -> str:
    try:
        return storage.signature(full)
    except FileNotFoundError as e:
        name = full.rsplit("/", 1)[-1]
        raise InputError(f"{name}: removed while being read; nothing to do until it is back") from e


class _Hashing(io.RawIOBase):
    """A read-only file that hashes every byte read through it, in order, and stops at the
    size the file had when the pass began (a grown file is caught by its signature)."""

    def __init__(self, f, size: int):
        self.f, self.h, self.left = f, hashlib.sha256(), size

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.f.read(min(len(b), self.left)) if self.left > 0 else b""
        self.left -= len(data)
        self.h.update(data)
        b[: len(data)] = data
        return len(data)


def _scan(storage: Storage, full: str, name: str, chunk_rows: int) -> tuple[str, list[dict]]:
    size = storage.fs.size(full)
    with storage.open_read(full) as f:
        raw = _Hashing(f, size)
        if name.endswith(".parquet"):
            while raw.read(HASH_BLOCK):
                pass
            bounds = _parquet_bounds(storage, full, name, chunk_rows)
        else:
            bounds = _jsonl_bounds(io.BufferedReader(raw, HASH_BLOCK), name, chunk_rows)
            while raw.read(HASH_BLOCK):  # a gzip member's trailing bytes
                pass
    return raw.h.hexdigest()[:32], bounds


def _parquet_bounds(storage: Storage, full: str, name: str, chunk_rows: int) -> list[dict]:
    try:
        with storage.open_read(full) as f:
            meta = pq.ParquetFile(f).metadata
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise InputError(f"{name}: not a readable parquet file ({type(e).__name__}: {e})") from e
    bounds, row = [], 0
    for g in range(meta.num_row_groups):
        n = meta.row_group(g).num_rows
        for off in range(0, n, chunk_rows):
            rows = min(chunk_rows, n - off)
            bounds.append(dict(first_row=row, rows=rows, row_group=g, group_offset=off))
            row += rows
    return bounds


def _jsonl_bounds(f, name: str, chunk_rows: int) -> list[dict]:
    """Chunks of `chunk_rows` non-blank lines: byte offset and size, first line and row."""
    stream = gzip.GzipFile(fileobj=f) if name.endswith(".gz") else f
    bounds: list[dict] = []
    pos = line_no = row = 0
    start = rows = first_line = 0
    try:
        for line in stream:
            line_no += 1
            if line_no == 1 and line.startswith(b"\xef\xbb\xbf"):
                pos, line = pos + 3, line[3:]  # a UTF-8 byte-order mark is not part of line 1
            if line.strip():
                if rows == 0:
                    start, first_line = pos, line_no
                rows += 1
                if rows == chunk_rows:
                    bounds.append(_jsonl_bound(row, rows, start, pos + len(line), first_line))
                    row, rows = row + rows, 0
            pos += len(line)
    except (OSError, EOFError, zlib.error) as e:
        raise InputError(f"{name}: gzip data is corrupt or ends early ({e})") from e
    if rows:
        bounds.append(_jsonl_bound(row, rows, start, pos, first_line))
    return bounds


def _jsonl_bound(row: int, rows: int, start: int, end: int, first_line: int) -> dict:
    return dict(first_row=row, rows=rows, byte_offset=start, byte_size=end - start,
                first_line=first_line)  # fmt: skip


@dataclass(frozen=True)
class Frame:
    """A chunk's raw rows and, for JSONL, the line number of each (messages)."""

    ref: ChunkRef
    df: pl.DataFrame
    lines: list[int] | None


def read_chunk(ref: ChunkRef) -> Frame:
    """One chunk, read straight from storage by whoever holds the ref (e.g. a Ray worker)."""
    storage = ref.storage()
    full = storage.path(*ref.path.split("/"))
    _same_version(storage, full, ref)
    with storage.open_read(full) as f:
        if ref.row_group >= 0:
            frame = _parquet_frame(f, ref, ref.row_group, ref.group_offset)
        else:
            frame = _jsonl_chunk(f, ref, seek=not ref.name.endswith(".gz"))
    _same_version(storage, full, ref)
    return frame


def iter_frames(plan: FilePlan) -> Iterator[Frame]:
    """Every chunk of `plan` in order, read in one pass: the frames `read_chunk` gives."""
    if not plan.chunks:
        return
    first = plan.chunks[0]
    storage = first.storage()
    full = storage.path(*first.path.split("/"))
    _same_version(storage, full, first)
    with storage.open_read(full) as f:
        if first.row_group >= 0:
            yield from _parquet_frames(f, plan)
        else:
            stream = gzip.GzipFile(fileobj=f) if first.name.endswith(".gz") else f
            pos = 0
            for ref in plan.chunks:
                stream.read(ref.byte_offset - pos)  # blank lines between chunks
                yield _jsonl_frame(stream.read(ref.byte_size), ref)
                pos = ref.byte_offset + ref.byte_size
    _same_version(storage, full, first)


def _same_version(storage: Storage, full: str, ref: ChunkRef) -> None:
    if signature(storage, full) != ref.signature:
        raise InputError(
            f"{ref.name}: changed while being read; it is read afresh once the writer is done "
            "(the pool sensor sees the new version)"
        )


def _parquet_frames(f, plan: FilePlan) -> Iterator[Frame]:
    pf = _parquet_file(f, plan.name)
    by_group: dict[int, list[ChunkRef]] = {}
    for ref in plan.chunks:
        by_group.setdefault(ref.row_group, []).append(ref)
    for group, refs in by_group.items():
        batches = pf.iter_batches(batch_size=refs[0].rows, row_groups=[group], use_threads=False)
        pending = _Rows(batches, plan.name, refs[0])
        for ref in refs:
            yield Frame(ref, pending.take(ref), None)


def _parquet_frame(f, ref: ChunkRef, group: int, offset: int) -> Frame:
    pf = _parquet_file(f, ref.name)
    batches = pf.iter_batches(batch_size=CHUNK_ROWS, row_groups=[group], use_threads=False)
    rows = _Rows(batches, ref.name, ref)
    rows.skip(offset)
    return Frame(ref, rows.take(ref), None)


def _parquet_file(f, name: str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(f)
    except Exception as e:
        raise InputError(f"{name}: not a readable parquet file ({type(e).__name__}: {e})") from e


class _Rows:
    """Record batches of one row group re-cut into exact row counts."""

    def __init__(self, batches, name: str, ref: ChunkRef):
        self.batches, self.name, self.ref = batches, name, ref
        self.buffer: list[pa.RecordBatch] = []
        self.buffered = 0

    def _fill(self, n: int, ref: ChunkRef) -> None:
        while self.buffered < n:
            try:
                batch = next(self.batches)
            except StopIteration:
                break
            except Exception as e:
                raise InputError(
                    f"{self.name}: rows {ref.first_row}-{ref.first_row + ref.rows - 1} are not "
                    f"readable parquet ({type(e).__name__}: {e})"
                ) from e
            self.buffer.append(batch)
            self.buffered += batch.num_rows

    def _split(self, n: int) -> pa.Table:
        table = pa.Table.from_batches(self.buffer, schema=self.buffer[0].schema)
        head, rest = table.slice(0, n), table.slice(n)
        self.buffer = rest.to_batches() if rest.num_rows else []
        self.buffered = rest.num_rows
        return head

    def skip(self, n: int) -> None:
        while n:
            self._fill(1, self.ref)
            step = min(n, self.buffered)
            self._split(step)
            n -= step

    def take(self, ref: ChunkRef) -> pl.DataFrame:
        self._fill(ref.rows, ref)
        return _to_polars(self._split(ref.rows), ref)


def _to_polars(table: pa.Table, ref: ChunkRef) -> pl.DataFrame:
    try:
        table.validate(full=True)  # polars would take strings that are not UTF-8 as they are
        return cast(pl.DataFrame, pl.from_arrow(table))  # a table gives a frame
    except Exception as e:
        if spot := _bad_utf8_cell(table):
            col, row, err = spot
            raise InputError(
                f"{ref.name}: row {ref.first_row + row}, column `{col}` is not valid UTF-8 ({err})"
            ) from e
        what = f"{type(e).__name__}: {e}"
        raise InputError(f"{ref.name}: not a readable parquet file ({what})") from e


def _bad_utf8_cell(table: pa.Table) -> tuple[str, int, str] | None:
    for col in table.column_names:
        kind = table.schema.field(col).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            continue
        for row, value in enumerate(table.column(col).cast(pa.large_binary()).to_pylist()):
            try:
                if value is not None:
                    value.decode("utf-8")
            except UnicodeDecodeError as e:
                return col, row, f"byte 0x{value[e.start]:02x} at byte {e.start + 1}"
    return None


def _jsonl_chunk(f, ref: ChunkRef, seek: bool) -> Frame:
    if seek:
        f.seek(ref.byte_offset)
        return _jsonl_frame(f.read(ref.byte_size), ref)
    stream = gzip.GzipFile(fileobj=f)
    stream.seek(ref.byte_offset)  # decompresses the prefix: gzip cannot seek
    return _jsonl_frame(stream.read(ref.byte_size), ref)


def _jsonl_frame(data: bytes, ref: ChunkRef) -> Frame:
    rows, lines = [], []
    for i, line in enumerate(data.split(b"\n")):
        if line.strip():
            row = check_jsonl_line(line, f"{ref.name}: line {ref.first_line + i}")
            rows.append(row)
            lines.append(ref.first_line + i)
    if len(rows) != ref.rows:
        raise InputError(f"{ref.name}: changed while being read (chunk {ref.index} moved)")
    return Frame(ref, jsonl_frame(rows, ref.name), lines)

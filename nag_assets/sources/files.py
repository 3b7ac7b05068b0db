"""Reading target and shard files into (id, text, ...) tables, with errors that name the spot.

Accepted: parquet, JSONL and gzipped JSONL with a `text` column and an optional `id` column;
for targets also a JSON spec `{"benchmark": "hellaswag", "limit": 200}` naming a built-in
benchmark. Missing ids become `<key>/<row>`. Ids must be unique within a file.
"""

from __future__ import annotations

import gzip
import io
import json
import zlib

import polars as pl

from nag_assets.sources.benchmarks import BENCHMARK_PREFIX, load_benchmark

SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz", ".json")
_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"  # C0 controls but tab, newline, CR


class InputError(ValueError):
    """A bad input file; the message names the file and, where it applies, row and column."""


def is_input_file(name: str) -> bool:
    return name.endswith(SUFFIXES)


def read_documents(data: bytes, name: str, key: str) -> pl.DataFrame:
    """Parse one file's bytes into a table with `id` and `text` first, other columns kept."""
    if name.endswith(".parquet"):
        df = _read_parquet(data, name)
    elif name.endswith((".jsonl", ".jsonl.gz")):
        df = _read_jsonl(data, name)
    else:
        raise InputError(f"{name}: unsupported file type (use one of {', '.join(SUFFIXES)})")
    return normalize(df, name, key)


def read_target(data: bytes, name: str, key: str) -> pl.DataFrame:
    """A target file, or a JSON benchmark spec."""
    if name.endswith(".json") and not name.endswith(".jsonl"):
        return benchmark_spec(data, name)
    return read_documents(data, name, key)


def benchmark_target(key: str) -> pl.DataFrame:
    """A target with no file whose key names a built-in benchmark: `bench__<name>`."""
    return load_benchmark(key[len(BENCHMARK_PREFIX) :])


def benchmark_spec(data: bytes, name: str) -> pl.DataFrame:
    try:
        spec = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{name}: not valid JSON: {e}") from e
    if not isinstance(spec, dict) or not isinstance(spec.get("benchmark"), str):
        raise InputError(f'{name}: a JSON target must look like {{"benchmark": "hellaswag"}}')
    limit = spec.get("limit")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise InputError(f"{name}: limit must be a positive integer, got {limit!r}")
    try:
        return load_benchmark(spec["benchmark"], limit=limit)
    except ValueError as e:
        raise InputError(f"{name}: {e}") from e


def _read_parquet(data: bytes, name: str) -> pl.DataFrame:
    try:
        return pl.read_parquet(io.BytesIO(data))
    except Exception as e:  # polars raises several types for corrupt files
        raise InputError(f"{name}: not a readable parquet file ({type(e).__name__}: {e})") from e


def _read_jsonl(data: bytes, name: str) -> pl.DataFrame:
    if name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise InputError(f"{name}: gzip data is corrupt or ends early ({e})") from e
    rows = []
    for line_no, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8", errors="replace"))
        except json.JSONDecodeError as e:
            raise InputError(f"{name}: line {line_no} is not valid JSON ({e.msg})") from e
        if not isinstance(row, dict):
            raise InputError(f"{name}: line {line_no} is not a JSON object")
        rows.append(row)
    if not rows:
        return pl.DataFrame({"text": []}, schema={"text": pl.Utf8})
    return pl.DataFrame(rows, infer_schema_length=None, strict=False)


def normalize(df: pl.DataFrame, name: str, key: str) -> pl.DataFrame:
    """Check `text`, derive ids, strip control characters; keep every other column."""
    if "text" not in df.columns:
        raise InputError(f"{name}: no `text` column (columns: {df.columns})")
    if df.schema["text"] not in (pl.Utf8, pl.String, pl.Null) and df.height:
        raise InputError(f"{name}: column `text` has type {df.schema['text']}, not string")
    nulls = df["text"].is_null()
    if nulls.any():
        row = int(nulls.arg_true()[0])
        raise InputError(f"{name}: row {row}, column `text` is null ({int(nulls.sum())} such)")
    if "id" in df.columns:
        ids = df["id"].cast(pl.Utf8)
        if ids.is_null().any():
            raise InputError(f"{name}: row {int(ids.is_null().arg_true()[0])}, `id` is null")
    else:
        ids = pl.Series("id", [f"{key}/{i}" for i in range(df.height)], dtype=pl.Utf8)
    dup = ids.is_duplicated()
    if dup.any():
        rows = dup.arg_true().to_list()[:5]
        raise InputError(f"{name}: duplicate ids {ids[rows].unique().to_list()} at rows {rows}")
    text = df["text"].cast(pl.Utf8).str.replace_all(_CONTROL, " ")
    rest = [c for c in df.columns if c not in ("id", "text")]
    return pl.DataFrame([ids.alias("id"), text.alias("text")]).hstack(df.select(rest))

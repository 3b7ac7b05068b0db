"""Reading target and shard files into (id, text, ...) tables, with errors that name the spot.

Accepted: parquet, JSONL and gzipped JSONL with a `text` column and an optional `id` column;
for targets also a JSON spec `{"benchmark": "hellaswag", "limit": 200}` naming a built-in
benchmark. Missing ids become `<key>/<row>`. Ids must be unique within a file (a document is
known by (file, id): the same id in two shards is two documents, see pipeline/mixture.py).

Rules, each broken one an `InputError` naming the file and the spot (JSONL `line N`, counted
from 1 as editors do; parquet `row N`, counted from 0 as polars and pandas do):
- the bytes must parse (parquet, gzip, JSON per line, UTF-8);
- `text` must be present and a string on every row (empty is allowed: 0 tokens, never chosen);
- `id`, when given, must be a non-empty string or integer with no control characters;
- control characters in `text` (C0 but tab, newline and CR, and DEL) become spaces; the number
  of rows so changed is reported (`report["control_character_rows"]`).
"""

from __future__ import annotations

import gzip
import io
import json
import re
import zlib

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from nag_assets.sources.benchmarks import BENCHMARK_PREFIX, load_benchmark

SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz", ".json")
_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"  # C0 controls but tab, newline, CR
_ID_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_JSON_TYPES = {dict: "an object", list: "a list", bool: "a boolean", int: "a number"}


class InputError(ValueError):
    """A bad input file; the message names the file and, where it applies, row and column."""


def is_input_file(name: str) -> bool:
    return name.endswith(SUFFIXES)


def read_documents(data: bytes, name: str, key: str, report: dict | None = None) -> pl.DataFrame:
    """Parse one file's bytes into a table with `id` and `text` first, other columns kept.
    `report`, if given, receives what was repaired (rows whose control characters became
    spaces, and the first such row)."""
    lines = None
    if name.endswith(".parquet"):
        df = _read_parquet(data, name)
    elif name.endswith((".jsonl", ".jsonl.gz")):
        df, lines = _read_jsonl(data, name)
    else:
        raise InputError(f"{name}: unsupported file type (use one of {', '.join(SUFFIXES)})")
    return normalize(df, name, key, lines, report)


def read_target(data: bytes, name: str, key: str, report: dict | None = None) -> pl.DataFrame:
    """A target file, or a JSON benchmark spec."""
    if name.endswith(".json") and not name.endswith(".jsonl"):
        return benchmark_spec(data, name)
    return read_documents(data, name, key, report)


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
        if "utf-8" in str(e).lower() and (spot := _bad_utf8_cell(data)):
            col, row, err = spot
            raise InputError(f"{name}: row {row}, column `{col}` is not valid UTF-8 ({err})") from e
        raise InputError(f"{name}: not a readable parquet file ({type(e).__name__}: {e})") from e


def _bad_utf8_cell(data: bytes) -> tuple[str, int, str] | None:
    """(column, row, what) of the first string cell that is not UTF-8, if pyarrow can tell."""
    try:
        table = pq.read_table(pa.BufferReader(data))
    except Exception:
        return None
    for col in table.column_names:
        kind = table.schema.field(col).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            continue
        raw = table.column(col).cast(pa.large_binary())
        for row, value in enumerate(raw.to_pylist()):
            try:
                if value is not None:
                    value.decode("utf-8")
            except UnicodeDecodeError as e:
                return col, row, f"byte 0x{value[e.start]:02x} at byte {e.start + 1}"
    return None


def _read_jsonl(data: bytes, name: str) -> tuple[pl.DataFrame, list[int]]:
    """The rows, and the line number (from 1) each came from; blank lines are skipped."""
    if name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise InputError(f"{name}: gzip data is corrupt or ends early ({e})") from e
    data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark
    rows, lines = [], []
    for line_no, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        rows.append(check_jsonl_line(line, f"{name}: line {line_no}"))
        lines.append(line_no)
    return jsonl_frame(rows, name), lines


def check_jsonl_line(line: bytes, where: str) -> dict:
    """One JSONL line as a row with a string `text`, or an InputError naming `where`."""
    try:
        row = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise InputError(
            f"{where} is not valid UTF-8 (byte 0x{line[e.start]:02x} at byte {e.start + 1})"
        ) from e
    except json.JSONDecodeError as e:
        raise InputError(f"{where} is not valid JSON ({e.msg}, column {e.colno})") from e
    if not isinstance(row, dict):
        raise InputError(f"{where} is not a JSON object")
    _check_row(row, where)
    return row


def jsonl_frame(rows: list[dict], name: str) -> pl.DataFrame:
    """The checked rows of a JSONL file (or chunk) as one table."""
    if not rows:
        return pl.DataFrame({"text": []}, schema={"text": pl.Utf8})
    try:
        return pl.DataFrame(rows, infer_schema_length=None, strict=False)
    except Exception as e:  # a field holding different JSON types on different lines
        raise InputError(f"{name}: the fields do not form a table ({type(e).__name__}: {e})") from e


def duplicate_ids_error(
    ids: pl.Series, name: str, lines: list[int] | None = None, first_row: int = 0
) -> None:
    """Raise if an id repeats: the first repeated id, its first rows (or lines), and how many."""
    dup = ids.is_duplicated()
    if not dup.any():
        return
    rows = dup.arg_true().to_list()
    first = ids[rows[0]]
    same = [r for r in rows if ids[r] == first][:5]
    at = [f"line {lines[r]}" if lines else f"row {first_row + r}" for r in same]
    raise InputError(
        f"{name}: id {first!r} appears more than once ({', '.join(at)}); "
        f"ids must be unique within a file ({ids[rows].n_unique()} ids repeated)"
    )


def _check_row(row: dict, where: str) -> None:
    if "text" not in row:
        raise InputError(f"{where} has no `text` field (fields: {sorted(row)})")
    text = row["text"]
    if text is None:
        raise InputError(f"{where}, field `text` is null")
    if not isinstance(text, str):
        kind = _JSON_TYPES.get(type(text), "a number")
        raise InputError(f"{where}, field `text` is {kind}, not a string")
    for field_name, value in row.items():
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as e:
                raise InputError(
                    f"{where}, field `{field_name}` is not valid Unicode (lone surrogate "
                    f"{value[e.start]!r} at character {e.start + 1})"
                ) from e


def normalize(
    df: pl.DataFrame,
    name: str,
    key: str,
    lines: list[int] | None = None,
    report: dict | None = None,
    first_row: int = 0,
) -> pl.DataFrame:
    """Check `text` and `id`, derive missing ids, turn control characters in `text` into
    spaces; keep every other column. `lines`: the JSONL line of each row, for messages;
    `first_row`: the file's row of the table's first (a chunk of a larger file)."""

    def at(row: int) -> str:
        return f"line {lines[row]}" if lines else f"row {first_row + row}"

    if "text" not in df.columns:
        raise InputError(f"{name}: no `text` column (columns: {df.columns})")
    if df.schema["text"] not in (pl.Utf8, pl.String, pl.Null) and df.height:
        raise InputError(f"{name}: column `text` has type {df.schema['text']}, not string")
    nulls = df["text"].is_null()
    if nulls.any():
        row = int(nulls.arg_true()[0])
        raise InputError(f"{name}: {at(row)}, column `text` is null ({int(nulls.sum())} such)")
    if "id" in df.columns:
        try:
            ids = df["id"].cast(pl.Utf8)
        except Exception as e:
            raise InputError(
                f"{name}: column `id` has type {df.schema['id']}; ids must be strings or integers"
            ) from e
        if ids.is_null().any():
            raise InputError(f"{name}: {at(int(ids.is_null().arg_true()[0]))}, `id` is null")
        bad = ids.str.contains(_ID_CONTROL.pattern) | (ids == "")
        if bad.any():
            row = int(bad.arg_true()[0])
            raise InputError(
                f"{name}: {at(row)}, `id` {ids[row]!r} is empty or holds a control character"
            )
    else:
        rows = range(first_row, first_row + df.height)
        ids = pl.Series("id", [f"{key}/{i}" for i in rows], dtype=pl.Utf8)
    duplicate_ids_error(ids, name, lines, first_row)
    text = df["text"].cast(pl.Utf8)
    control = text.str.contains(_CONTROL)
    if report is not None:
        n = int(control.sum())
        report["control_character_rows"] = n
        if n:
            report["first_control_character_row"] = at(int(control.arg_true()[0]))
    text = text.str.replace_all(_CONTROL, " ")
    rest = [c for c in df.columns if c not in ("id", "text")]
    return pl.DataFrame([ids.alias("id"), text.alias("text")]).hstack(df.select(rest))

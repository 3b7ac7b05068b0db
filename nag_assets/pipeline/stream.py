"""The step side of the extractor seam: a file's NAG rows, chunk by chunk, into one atomic
parquet write, with the file-wide rules checked on the way (bounded memory: per document
only an 8-byte id hash is kept, and (L, d_ff) neuron counts for the whole file)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from nag_assets.pipeline.extractor import ChunkNags
from nag_assets.sources.chunks import FilePlan, iter_frames
from nag_assets.sources.files import InputError, duplicate_ids_error, normalize
from nag_assets.storage import META_KEY, Storage


@dataclass
class NagTally:
    """Totals of a NAG table, added up chunk by chunk."""

    layers: int
    top_k: int
    d_ff: int
    documents: int = 0
    tokens: int = 0
    nag_tokens: int = 0
    empty_documents: int = 0
    truncated_documents: int = 0
    control_character_rows: int = 0
    first_control_character_row: str | None = None
    counts: np.ndarray = field(init=False, repr=False)  # (L, d_ff): texts holding each neuron

    def __post_init__(self) -> None:
        self.counts = np.zeros((self.layers, self.d_ff), dtype=np.int64)

    def add(self, chunk: ChunkNags) -> None:
        t = chunk.table
        tokens = np.asarray(t["tokens"])
        used = np.asarray(t["nag_tokens"])
        self.documents += t.num_rows
        self.tokens += int(tokens.sum())
        self.nag_tokens += int(used.sum())
        self.empty_documents += int((used == 0).sum())
        self.truncated_documents += int((tokens > used).sum())
        self.control_character_rows += chunk.control_character_rows
        if self.first_control_character_row is None:
            self.first_control_character_row = chunk.first_control_character_row
        nags = nags_of_arrow(t, self.layers, self.top_k)[used > 0]
        flat = nags.astype(np.int64) + (np.arange(self.layers) * self.d_ff)[None, :, None]
        self.counts += np.bincount(flat.ravel(), minlength=self.counts.size).reshape(
            self.counts.shape
        )

    @property
    def valid(self) -> int:
        return self.documents - self.empty_documents

    def profile(self) -> np.ndarray:
        """What `build_profile` gives for all the file's NAGs."""
        if self.valid == 0:
            raise ValueError("a profile needs at least one NAG")
        return self.counts / (self.valid * self.top_k)

    def neuron_use(self) -> dict:
        """What `neuron_use` gives for all the file's NAGs."""
        if self.valid == 0:
            return {}
        distinct = (self.counts > 0).sum(axis=1)
        return {
            "distinct_neurons_per_layer": round(float(np.mean(distinct)), 1),
            "distinct_neurons_per_layer_min": int(np.min(distinct)),
            "top_neuron_share": round(float(np.mean(self.counts.max(axis=1) / self.valid)), 4),
        }


def nags_of_arrow(table: pa.Table, layers: int, top_k: int) -> np.ndarray:
    flat = table["nag"].combine_chunks().flatten().to_numpy()
    return flat.reshape(table.num_rows, layers, top_k)


class UniqueIds:
    """Ids unique within a file, checked as chunks come: 64-bit hashes kept as sorted numpy
    runs (8 bytes per document; a Python set of ints took ~70), each at least twice the next,
    so a chunk is looked up in at most log2(documents) runs; a repeated hash re-reads the
    file's ids to name the rows (or to find it was a hash collision)."""

    def __init__(self, plan: FilePlan):
        self.plan = plan
        self.runs: list = []

    def add(self, ids: pa.Array | pa.ChunkedArray) -> None:
        hashes = np.sort(pl.Series(ids).hash(seed=0).to_numpy())
        if not len(hashes):
            return
        if (hashes[1:] == hashes[:-1]).any() or any(_holds(r, hashes) for r in self.runs):
            self._name_the_rows()
        self.runs.append(hashes)
        while len(self.runs) > 1 and len(self.runs[-2]) < 2 * len(self.runs[-1]):
            last = self.runs.pop()
            self.runs[-1] = np.sort(np.concatenate([self.runs[-1], last]))

    def _name_the_rows(self) -> None:
        ids, lines = [], []
        for frame in iter_frames(self.plan):
            ref = frame.ref
            docs = normalize(frame.df, ref.name, ref.key, frame.lines, None, ref.first_row)
            ids.append(docs["id"])
            lines.extend(frame.lines or [])
        duplicate_ids_error(pl.concat(ids), self.plan.name, lines or None)


def iter_documents(plan: FilePlan) -> Iterator[pl.DataFrame]:
    """The file's documents chunk by chunk, checked as shard_nag checks them (text, ids unique
    across the whole file): for steps that read texts but never hold a whole shard."""
    if plan.rows == 0:
        raise InputError(f"{plan.name}: the file holds no documents")
    ids = UniqueIds(plan)
    for frame in iter_frames(plan):
        ref = frame.ref
        docs = normalize(frame.df, ref.name, ref.key, frame.lines, None, ref.first_row)
        ids.add(docs["id"])
        yield docs


def _holds(run: np.ndarray, values: np.ndarray) -> bool:
    """Whether the sorted `run` holds any of `values`."""
    at = np.minimum(np.searchsorted(run, values), len(run) - 1)
    return bool((run[at] == values).any())


def write_nag_stream(
    storage: Storage,
    parts: tuple[str, ...],
    meta: dict,
    chunks: Iterable[ChunkNags],
    plan: FilePlan,
    tally: NagTally,
) -> NagTally:
    """Write the chunks' rows (one row group per chunk) with `meta` in the footer, atomically:
    the file appears whole at the end, or (error, kill) the previous version stays."""
    if plan.rows == 0:
        raise InputError(f"{plan.name}: the file holds no documents")
    ids = UniqueIds(plan)
    with contextlib.ExitStack() as opened:
        writer = None
        try:
            for chunk in chunks:
                ids.add(chunk.table["id"])
                tally.add(chunk)
                if writer is None:  # opened with the first rows: a kill before leaves no file
                    f = opened.enter_context(storage.open_atomic(*parts))
                    footer = {META_KEY: json.dumps(meta, sort_keys=True)}
                    schema = chunk.table.schema.with_metadata(footer)
                    writer = pq.ParquetWriter(f, schema, compression="zstd")
                writer.write_table(chunk.table)
        except BaseException:
            if writer is not None:
                writer.is_open = False  # no footer: the temporary file is dropped unfinished
            raise
        if writer is None:
            raise InputError(f"{plan.name}: the file holds no documents")
        writer.close()
    return tally

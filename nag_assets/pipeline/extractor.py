"""The extractor seam: the one place where a step hands documents to a backbone.

    step (shard_nag, target_nag)  --FilePlan (chunks)-->  Extractor  --ChunkNags, in order-->
        write_nag_stream: checks across chunks, one atomic streaming write

The contract, which every extractor (in-process here, Ray elsewhere) keeps:
- A file's chunks are fixed by the file (`sources.chunks.plan_file`), never by the executor;
  length sorting and batching happen within a chunk, so any executor does exactly the same
  computations and the written table is byte-identical.
- The work on one chunk is the plain function `extract_chunk(ref, backbone, job)`: read the
  chunk from storage (unless the caller passes the frame it already read), check and repair
  its rows, tokenize, extract, return the chunk's NAG rows (`ChunkNags`). A remote worker gets
  only picklable things: the `ChunkRef`, the `NagJob`, and a `BackboneSpec` it loads once
  (`BackboneSpec.load`, cached per process) and keeps across chunks and files.
- `Extractor.run(job, plan, progress)` yields one `ChunkNags` per chunk of `plan`, in chunk
  order, whatever order they were computed in. It raises what `extract_chunk` raises
  (`InputError` naming the file and global row/line for a bad row).
- File-wide rules are the step's (`write_nag_stream`), on the rows as they come: ids unique
  within the file, at least one document, totals and neuron use; the footer metadata is
  known before the first chunk; a failure or a kill leaves the previous version or nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pyarrow as pa

import nag_assets.pipeline.common as common
from nag_assets.nag import Backbone, BackboneFacts, load_backbone, loaded
from nag_assets.nag.adapters import UP
from nag_assets.pipeline.common import NagSettings, Progress
from nag_assets.sources.chunks import ChunkRef, FilePlan, Frame, iter_frames, read_chunk
from nag_assets.sources.files import normalize


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone as a worker elsewhere loads it: what `load_backbone` takes."""

    model: str = "embedded"
    device: str = "auto"
    dtype: str | None = None
    neuron_type: str = UP  # `nag.adapters`: which neurons a NAG holds
    compile: bool = False  # the compiled trunk (`nag.trunk`): compiled once per process

    def load(self) -> Backbone:
        """Loaded once per process and kept: many chunks and files, one model load (and,
        with `compile`, one compilation)."""
        return _load(self.model, self.device, self.dtype, self.neuron_type, self.compile)


@functools.lru_cache(maxsize=2)
def _load(model: str, device: str, dtype: str | None, neuron_type: str, compile: bool) -> Backbone:
    return load_backbone(model, device, dtype, neuron_type, compile)


@dataclass(frozen=True)
class NagJob:
    """What every chunk of a step is extracted with (picklable, small)."""

    settings: NagSettings
    fingerprint: str  # the driver's backbone fingerprint: a worker with another one refuses
    baseline: np.ndarray | None = None  # (L, d_ff) for normalized impact, else None


@dataclass(frozen=True)
class ChunkNags:
    """One chunk's NAG rows in file order, and what was repaired in it."""

    index: int
    first_row: int
    table: pa.Table  # id, tokens, nag_tokens, nag (flattened L*K int16): `nag_table`'s columns
    control_character_rows: int = 0
    first_control_character_row: str | None = None


class Extractor(Protocol):
    """Runs `extract_chunk` over a file's chunks somewhere, yielding results in chunk order."""

    def run(
        self, job: NagJob, plan: FilePlan, progress: Progress | None = None
    ) -> Iterator[ChunkNags]: ...


def extract_chunk(
    ref: ChunkRef,
    backbone: Backbone,
    job: NagJob,
    frame: Frame | None = None,
    progress: Progress | None = None,
) -> ChunkNags:
    """The per-chunk work, the same for every executor: read -> check -> tokenize -> extract."""
    if backbone.fingerprint != job.fingerprint:
        raise ValueError(
            f"this worker's backbone ({backbone.name}, {backbone.fingerprint}) is not the "
            f"one the step planned with ({job.fingerprint})"
        )
    frame = frame if frame is not None else read_chunk(ref)
    report: dict = {}
    docs = normalize(frame.df, ref.name, ref.key, frame.lines, report, first_row=ref.first_row)
    table = common.nag_table(
        backbone, docs["id"], docs["text"].to_list(), job.settings, progress, job.baseline
    )
    return ChunkNags(
        ref.index,
        ref.first_row,
        table.to_arrow(),
        report.get("control_character_rows", 0),
        report.get("first_control_character_row"),
    )


class InProcessExtractor:
    """The backbone loaded in this process; the file read once, chunk after chunk."""

    def __init__(self, backbone: Backbone):
        self.backbone = backbone

    def run(
        self, job: NagJob, plan: FilePlan, progress: Progress | None = None
    ) -> Iterator[ChunkNags]:
        done = tokens = 0
        for frame in iter_frames(plan):
            report = _offset(progress, done, tokens, plan.rows)
            result = extract_chunk(frame.ref, self.backbone, job, frame, report)
            done += frame.ref.rows
            tokens += int(np.asarray(result.table["nag_tokens"]).sum())
            if progress:
                progress(done, plan.rows, tokens)
            yield result


def _offset(progress: Progress | None, done: int, tokens: int, total: int) -> Progress | None:
    """A chunk's progress as the file's: texts and tokens of the chunks before added."""
    if progress is None:
        return None
    return lambda d, _t, k: progress(done + d, total, tokens + k)


def extractor_for(backbone: BackboneFacts, extractor: Extractor | None) -> Extractor:
    """`extractor`, else the in-process one, which runs the model loaded here."""
    if extractor is not None:
        return extractor
    return InProcessExtractor(loaded(backbone, "extraction in this process"))

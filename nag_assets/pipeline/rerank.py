"""`scorer: distilled` with `rerank`: the distilled scorer as a filter before exact NAG.

Per shard, each target's top `rerank` share of documents by distilled score (ties by id) are
the candidates; the backbone reads the candidates only, and each gets its exact NAG score
against every target. Every other document scores its distilled score minus 1: below every
exact score (NAG scores lie in [0, 1]), in the distilled order. The shard decides alone, so
no pass over the whole pool is needed first.

The NAGs read are kept per shard (`rerank_nag/<shard>.parquet`, with the distill_sample's
NAGs also reused), so a new target extracts only the candidates no earlier run read. What a
table holds depends only on the shard, the targets and the settings: the kept NAGs are a
cache, never a reason to score a document exactly.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from nag_assets.nag import BackboneFacts, score_many
from nag_assets.pipeline.common import NagSettings, nag_footer, nags_of
from nag_assets.pipeline.extractor import Extractor, NagJob, extractor_for
from nag_assets.pipeline.impact import impact_baseline
from nag_assets.pipeline.layout import DISTILL_SAMPLE, RERANK_NAG, NagFooter, table
from nag_assets.pipeline.stream import NagTally, iter_documents, write_nag_stream
from nag_assets.sources.chunks import FilePlan, plan_file
from nag_assets.sources.files import InputError
from nag_assets.storage import Storage, digest

CODE_VERSION = "1"
COLUMNS = ["id", "tokens", "nag_tokens", "nag"]
BELOW = 1.0  # what a document outside the candidates loses: its distilled score - 1 < 0


def check_share(share: float | None) -> None:
    if share is not None and not (
        isinstance(share, (int, float)) and not isinstance(share, bool) and 0 < share <= 1
    ):
        raise InputError(f"distill rerank {share!r} must be a share in (0, 1] (or unset)")


def candidates(ids: list[str], distilled: np.ndarray, share: float) -> np.ndarray:
    """(n,) bool: in some target's top ceil(share * n) by distilled score, ties by id."""
    n = len(ids)
    top = min(n, math.ceil(share * n))
    by_id = np.argsort(np.asarray(ids, dtype=object), kind="stable").argsort()
    picked = np.zeros(n, dtype=bool)
    for j in range(distilled.shape[1]):
        picked[np.lexsort((by_id, -distilled[:, j]))[:top]] = True
    return picked


def reranked(
    storage: Storage,
    shard: FilePlan,
    ids: list[str],
    distilled: np.ndarray,
    profiles: np.ndarray,
    backbone: BackboneFacts,
    settings: NagSettings,
    share: float,
    fingerprint: str,
    extractor: Extractor | None = None,
    progress=None,
) -> tuple[np.ndarray, dict]:
    """((n, T) float32 scores: exact NAG for the candidates, distilled - 1 for the rest,
    facts). `profiles` (T, L, d_ff) are the targets' in the columns' order, made with the
    NAG settings `fingerprint` names: the candidates' NAGs must be made with the same."""
    picked = candidates(ids, distilled, share)
    want = [ids[i] for i in np.flatnonzero(picked)]
    nags, extracted = candidate_nags(
        storage, shard, want, backbone, settings, extractor, progress, fingerprint
    )
    out = distilled.astype(np.float32) - BELOW
    out[picked] = score_many(nags, profiles)
    return out, {"reranked": len(want), "rerank_extracted": extracted}


def candidate_nags(
    storage: Storage,
    shard: FilePlan,
    want: list[str],
    backbone: BackboneFacts,
    settings: NagSettings,
    extractor: Extractor | None = None,
    progress=None,
    fingerprint: str | None = None,
) -> tuple[np.ndarray, int]:
    """((m, L, K) NAGs of the `want` ids in their order, how many the backbone read now):
    the kept ones, the shard's distill_sample's, and the rest extracted and kept."""
    baseline, fp = impact_baseline(storage, backbone, settings, progress)
    if fingerprint is not None and fp != fingerprint:
        raise InputError(
            f"rerank of {shard.name}: the targets' profiles were made with other backbone or "
            "NAG settings than the backbone resource's: rematerialize the older ones"
        )
    version = digest("rerank_nag", CODE_VERSION, shard.sha256, fp)
    footer = nag_footer(version, backbone, settings, fp, file=shard.name, sha256=shard.sha256)
    known = _known_rows(storage, shard, version, fp)
    have = set() if known is None else set(known["id"].to_list())
    missing = {i for i in want if i not in have}
    if missing:
        job = NagJob(settings, backbone.fingerprint, baseline)
        extract = extractor_for(backbone, extractor)
        new = _extract(storage, shard, missing, job, extract, footer, progress)
        known = new if known is None else pl.concat([known, new], rechunk=True)
        storage.write_parquet(known, *table(RERANK_NAG, shard.key), meta=footer.to_meta())
    if not want or known is None:  # known is None only when nothing is wanted
        return np.zeros((0, backbone.num_layers, settings.top_k), dtype=np.int16), 0
    at = dict(zip(known["id"].to_list(), range(known.height)))
    return nags_of(known[pl.Series([at[i] for i in want])], footer), len(missing)


def _known_rows(storage: Storage, shard: FilePlan, version: str, fp: str) -> pl.DataFrame | None:
    """The NAG rows already read for this shard's content and these settings, each id once:
    the rerank's own, then its distill_sample's (None: none yet)."""
    parts = []
    mine = NagFooter.read(storage, RERANK_NAG, shard.key)
    if mine is not None and mine.version == version:
        parts.append(storage.read_parquet(*table(RERANK_NAG, shard.key)))
    sample = NagFooter.read(storage, DISTILL_SAMPLE, shard.key)
    if sample is not None and sample.sha256 == shard.sha256 and sample.nag_fingerprint == fp:
        parts.append(storage.read_parquet(*table(DISTILL_SAMPLE, shard.key)))
    if not parts:
        return None
    rows = pl.concat([p.select(COLUMNS) for p in parts], rechunk=True)
    return rows.unique("id", keep="first", maintain_order=True)  # the sample's are kept too


def _extract(storage, shard: FilePlan, missing: set, job, extractor, footer, progress):
    """The backbone over the missing candidates (their texts copied out chunk by chunk into
    a file of their own, read chunk by chunk like any shard), their NAG rows back."""
    folder, name = f"{RERANK_NAG}/_docs", f"{shard.key}.parquet"
    wanted = pl.Series(sorted(missing), dtype=pl.Utf8)
    with storage.open_atomic(folder, name) as f:
        writer = None
        for docs in iter_documents(shard):
            part = docs.filter(pl.col("id").is_in(wanted)).select("id", "text").to_arrow()
            writer = writer or pq.ParquetWriter(f, part.schema, compression="zstd")
            writer.write_table(part)
        if writer is None:
            raise InputError(f"{shard.name}: the rerank candidates are no longer in it")
        writer.close()
    plan = plan_file(storage, f"{folder}/{name}", name, shard.key, job.settings.chunk_rows)
    out = (f"{RERANK_NAG}/_new", name)
    tally = NagTally(footer.layers, footer.top_k, footer.d_ff)
    write_nag_stream(storage, out, footer.to_meta(), extractor.run(job, plan, progress),
                     plan, tally)  # fmt: skip
    new = storage.read_parquet(*out)
    for parts in (out, (folder, name)):
        storage.delete(*parts)
    return new.select(COLUMNS)

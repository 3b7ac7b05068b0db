"""shard_nag and shard_scores: every document's NAG, then its score against every target."""

from __future__ import annotations

import numpy as np
import polars as pl

from nag_assets.nag import BackboneFacts, score_many
from nag_assets.pipeline.common import (
    STEP_CODE_VERSION,
    NagSettings,
    StepResult,
    find_input,
    nag_footer,
    nags_of,
    read_input,
    require,
)
from nag_assets.pipeline.extractor import Extractor, NagJob, extractor_for
from nag_assets.pipeline.impact import impact_baseline
from nag_assets.pipeline.layout import (
    SHARD_NAG,
    SHARD_NAG_STORE,
    SHARD_SCORES,
    TARGET_NAG,
    NagFooter,
    ShardScoresFooter,
    is_current,
    table,
)
from nag_assets.pipeline.stream import NagTally, write_nag_stream
from nag_assets.pipeline.targets import load_profile
from nag_assets.sources.chunks import FilePlan, plan_file
from nag_assets.sources.files import InputError
from nag_assets.storage import Storage, check_key, digest


def read_shard(storage: Storage, key: str) -> tuple[str, bytes, str]:
    """(file name, bytes, sha256) of a shard, read once so the hash matches what is parsed."""
    found = read_input(storage, "shards", key)
    if found is None:
        raise InputError(f"shard {key!r}: no file for it in {storage.inputs('shards').root}")
    return found


def plan_shard(storage: Storage, key: str, chunk_rows: int) -> FilePlan:
    """The shard's version (sha256, streamed) and chunks, in one read of the file."""
    check_key(key)
    found = find_input(storage, "shards", key)
    if found is None:
        raise InputError(f"shard {key!r}: no file for it in {storage.inputs('shards').root}")
    pool, path, name = found
    try:
        return plan_file(pool, pool.relative(path), name, key, chunk_rows)
    except FileNotFoundError as e:
        raise InputError(f"{name}: removed while being read; nothing to do until it is back") from e


def shard_nag(
    storage: Storage,
    key: str,
    backbone: BackboneFacts,
    settings: NagSettings,
    progress=None,
    extractor: Extractor | None = None,
) -> StepResult:
    """The one costly step: run the backbone over the shard's documents, chunk by chunk
    (`extractor`, default in this process), into one atomic write."""
    plan = plan_shard(storage, key, settings.chunk_rows)
    name = plan.name
    baseline, fp = impact_baseline(storage, backbone, settings, progress)
    version = digest("shard_nag", STEP_CODE_VERSION, plan.sha256, fp)
    out = table(SHARD_NAG, key)
    stored = stored_nags(version)
    if is_current(storage, version, *out):
        _keep(storage, out, version)
        return StepResult(version, True, {"documents_extracted": 0, "file": name})
    if is_current(storage.nags(), version, *stored):  # another selection extracted it
        storage.copy_from(storage.nags(), stored, out)
        facts = {"documents_extracted": 0, "file": name, "from_nag_store": True}
        return StepResult(version, False, facts)
    if plan.rows == 0:
        raise InputError(f"{name}: the shard holds no documents")
    footer = nag_footer(version, backbone, settings, fp, file=name, sha256=plan.sha256)
    job = NagJob(settings, backbone.fingerprint, baseline)
    chunks = extractor_for(backbone, extractor).run(job, plan, progress)
    tally = NagTally(backbone.num_layers, settings.top_k, backbone.d_ff)
    write_nag_stream(storage, out, footer.to_meta(), chunks, plan, tally)
    _keep(storage, out, version)
    return StepResult(
        version,
        False,
        {
            "documents_extracted": tally.documents,
            "tokens": tally.tokens,
            "nag_tokens": tally.nag_tokens,
            "empty_documents": tally.empty_documents,
            # longer than max_tokens: the NAG reads the first max_tokens, the budget counts all
            "truncated_documents": tally.truncated_documents,
            "control_character_rows": tally.control_character_rows,
            "file": name,
            "impact": settings.impact,
            **tally.neuron_use(),
        },
    )


def stored_nags(version: str) -> tuple[str, str]:
    """Where the NAG store keeps a shard's NAG table: by its version, which is a digest of
    the file's content and the NAG fingerprint (never of the selection)."""
    return SHARD_NAG_STORE, f"{version}.parquet"


def _keep(storage: Storage, out: tuple[str, str], version: str) -> None:
    """Put the selection's NAG table in the store, unless it is there (a link, not a copy,
    on one local disk): what lets another selection over the same pool skip the backbone."""
    if not is_current(storage.nags(), version, *stored_nags(version)):
        storage.nags().copy_from(storage, out, stored_nags(version))


def shard_scores(storage: Storage, key: str, targets: list[str]) -> StepResult:
    """Scores of the shard's documents, one float32 column per target that has its profile.
    A target without one (not extracted yet, or its file is bad) is left out and reported, so
    one bad target never blocks the others; the shard is re-scored once it has a profile."""
    check_key(key)
    if not targets:
        raise InputError("no targets: add a target file under targets/ first")
    nag = require(NagFooter.read(storage, SHARD_NAG, key), f"shard_nag[{key}]")
    waiting = [t for t in targets if storage.read_meta(*table(TARGET_NAG, t)) is None]
    targets = [t for t in targets if t not in waiting]
    if not targets:
        raise InputError(
            f"no target has a target_nag yet ({', '.join(waiting)}): see those targets' runs"
        )
    profiles, versions = [], {}
    for t in targets:
        profile, target = load_profile(storage, t)
        if target.nag_fingerprint != nag.nag_fingerprint:
            raise InputError(
                f"target_nag[{t}] and shard_nag[{key}] were made with different backbones or "
                "NAG settings: rematerialize the older one"
            )
        profiles.append(profile)
        versions[t] = target.version
    version = digest("shard_scores", STEP_CODE_VERSION, nag.version, sorted(versions.items()))
    out = table(SHARD_SCORES, key)
    left_out = {"targets_without_target_nag": ", ".join(waiting)} if waiting else {}
    if is_current(storage, version, *out):
        return StepResult(version, True, {"targets": len(targets), **left_out})
    rows = storage.read_parquet(*table(SHARD_NAG, key))
    scores = score_many(nags_of(rows, nag), np.stack(profiles))
    df = rows.select("id", "tokens").hstack(
        [pl.Series(t, scores[:, i]) for i, t in enumerate(targets)]
    )
    if nag.file is None or nag.sha256 is None:  # every shard_nag footer names its file
        raise InputError(f"shard_nag[{key}] names no source file: rematerialize it")
    footer = ShardScoresFooter(version, targets, versions, nag.file, nag.sha256, nag.version)
    storage.write_parquet(df, *out, meta=footer.to_meta())
    return StepResult(version, False, {"documents": df.height, "targets": len(targets), **left_out})

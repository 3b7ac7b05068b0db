"""shard_nag and shard_scores: every document's NAG, then its score against every target."""

from __future__ import annotations

import numpy as np
import polars as pl

from nag_assets.nag import Backbone, score_many
from nag_assets.nag.profile import neuron_use
from nag_assets.pipeline.common import (
    STEP_CODE_VERSION,
    NagSettings,
    StepResult,
    nag_meta,
    nag_table,
    nags_of,
    read_input,
    require,
)
from nag_assets.pipeline.impact import impact_baseline
from nag_assets.pipeline.targets import NAG as TARGET_NAG
from nag_assets.pipeline.targets import load_profile
from nag_assets.sources.files import InputError, read_documents
from nag_assets.storage import Storage, check_key, digest

NAG = "assets/shard_nag"
SCORES = "assets/shard_scores"


def read_shard(storage: Storage, key: str) -> tuple[str, bytes, str]:
    """(file name, bytes, sha256) of a shard, read once so the hash matches what is parsed."""
    found = read_input(storage, "shards", key)
    if found is None:
        raise InputError(f"shard {key!r}: no file for it under {storage.url('shards')}")
    return found


def shard_nag(
    storage: Storage, key: str, backbone: Backbone, settings: NagSettings, progress=None
) -> StepResult:
    """The one costly step: run the backbone over the shard's documents."""
    name, data, sha = read_shard(storage, key)
    baseline, fp = impact_baseline(storage, backbone, settings, progress)
    version = digest("shard_nag", STEP_CODE_VERSION, sha, fp)
    out = (NAG, f"{key}.parquet")
    if (storage.read_meta(*out) or {}).get("version") == version:
        return StepResult(version, True, {"documents_extracted": 0, "file": name})
    repaired: dict = {}
    docs = read_documents(data, name, key, repaired)
    if docs.height == 0:
        raise InputError(f"{name}: the shard holds no documents")
    table = nag_table(backbone, docs["id"], docs["text"].to_list(), settings, progress, baseline)
    meta = nag_meta(version, backbone, settings, fp, file=name, sha256=sha)
    storage.write_parquet(table, *out, meta=meta)
    empty = int((table["nag_tokens"] == 0).sum())
    return StepResult(
        version,
        False,
        {
            "documents_extracted": table.height,
            "tokens": int(table["tokens"].sum()),
            "nag_tokens": int(table["nag_tokens"].sum()),
            "empty_documents": empty,
            # longer than max_tokens: the NAG reads the first max_tokens, the budget counts all
            "truncated_documents": int((table["tokens"] > table["nag_tokens"]).sum()),
            "control_character_rows": repaired.get("control_character_rows", 0),
            "file": name,
            "impact": settings.impact,
            **neuron_use(nags_of(table, meta)),
        },
    )


def shard_scores(storage: Storage, key: str, targets: list[str]) -> StepResult:
    """Scores of the shard's documents, one float32 column per target that has its profile.
    A target without one (not extracted yet, or its file is bad) is left out and reported, so
    one bad target never blocks the others; the shard is re-scored once it has a profile."""
    check_key(key)
    if not targets:
        raise InputError("no targets: add a target file under targets/ first")
    meta = require(storage.read_meta(NAG, f"{key}.parquet"), f"shard_nag[{key}]")
    waiting = [
        t for t in targets if storage.read_meta(TARGET_NAG, f"{check_key(t)}.parquet") is None
    ]
    targets = [t for t in targets if t not in waiting]
    if not targets:
        raise InputError(
            f"no target has a target_nag yet ({', '.join(waiting)}): see those targets' runs"
        )
    profiles, versions = [], {}
    for t in targets:
        profile, tmeta = load_profile(storage, t)
        if tmeta["nag_fingerprint"] != meta["nag_fingerprint"]:
            raise InputError(
                f"target_nag[{t}] and shard_nag[{key}] were made with different backbones or "
                "NAG settings: rematerialize the older one"
            )
        profiles.append(profile)
        versions[t] = tmeta["version"]
    version = digest("shard_scores", STEP_CODE_VERSION, meta["version"], sorted(versions.items()))
    out = (SCORES, f"{key}.parquet")
    left_out = {"targets_without_target_nag": ", ".join(waiting)} if waiting else {}
    if (storage.read_meta(*out) or {}).get("version") == version:
        return StepResult(version, True, {"targets": len(targets), **left_out})
    table = storage.read_parquet(NAG, f"{key}.parquet")
    scores = score_many(nags_of(table, meta), np.stack(profiles))
    df = table.select("id", "tokens").hstack(
        [pl.Series(t, scores[:, i]) for i, t in enumerate(targets)]
    )
    storage.write_parquet(
        df,
        *out,
        meta={
            "version": version,
            "targets": targets,
            "target_versions": versions,
            "file": meta["file"],
            "sha256": meta["sha256"],
            "shard_nag_version": meta["version"],
        },
    )
    return StepResult(version, False, {"documents": df.height, "targets": len(targets), **left_out})

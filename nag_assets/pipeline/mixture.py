"""selected_mixture: the token-budget selection over all shards, with provenance.

Output: `selected_mixture/<version>/part-<shard>.parquet` (the chosen documents, their text and
every column of the shard, plus target, score, shard) and `selected_mixture/CURRENT.json`,
which names the version in force. The pointer is written last, so readers following it never
see a half-written mixture; a rerun with the same inputs writes the same version.

Documents are known by (shard, id): ids need only be unique within a shard. The same id in two
shards is two documents; both can be chosen, their rows told apart by `shard`, and ties in
score rank by (id, shard). How many ids occur in several shards is reported in the facts
(`ids_in_several_shards`), never silently merged or dropped.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from nag_assets.nag import Cutoff, ScoredBatch, find_cutoffs, keep_mask, mixture_rows
from nag_assets.pipeline import baselines
from nag_assets.pipeline.common import STEP_CODE_VERSION, StepResult
from nag_assets.pipeline.shards import NAG as SHARD_NAG
from nag_assets.pipeline.shards import SCORES, read_shard
from nag_assets.pipeline.targets import NAG
from nag_assets.rankers import NAG as NAG_RANKER
from nag_assets.rankers import RANKERS
from nag_assets.sources.files import InputError, read_documents
from nag_assets.storage import Storage, UnsafeKeyError, check_key, digest

FOLDER = "selected_mixture"
POINTER = "CURRENT.json"
PLOT_BINS = 200
RANK_SEP = "\x01"  # id + RANK_SEP + shard sorts as (id, shard): ids hold no control characters
SAMPLE = 20
FORMAT = "2"  # 2: a `ranker` column and facts; bump when the mixture's files change


@dataclass(frozen=True)
class MixtureSettings:
    fraction: float = 0.2
    weights: dict[str, float] = field(default_factory=dict)
    dedup: bool = False
    ranker: str = "nag"  # or a baseline of nag_assets.rankers: random, dsir, embedding
    seed: int = 0  # the random ranker's seed

    def __post_init__(self) -> None:
        if self.ranker not in RANKERS:
            raise InputError(f"unknown ranker {self.ranker!r}; choose one of {list(RANKERS)}")
        if not (isinstance(self.fraction, (int, float)) and 0 < self.fraction <= 1):
            raise InputError(
                f"budget fraction {self.fraction!r} must be in (0, 1]: the share of all pool "
                "tokens to select (0.2 = a fifth)"
            )
        bad = {
            t: w
            for t, w in self.weights.items()
            if not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0
        }
        if bad:
            raise InputError(f"target weights {bad} must be finite numbers >= 0")


def scored_shards(storage: Storage, shards: list[str], targets: list[str]):
    """(usable shards with their score-file meta, shards left out with the reason, target
    versions). A shard is usable only if scored against the current version of every target,
    so a mixture never mixes scores from two versions of a profile."""
    current = {t: (storage.read_meta(NAG, f"{t}.parquet") or {}).get("version") for t in targets}
    usable, left_out = {}, {}
    for s in shards:
        try:
            check_key(s)
        except UnsafeKeyError as e:
            left_out[s] = str(e)
            continue
        meta = storage.read_meta(SCORES, f"{s}.parquet")
        scored = (meta or {}).get("target_versions", {})
        stale = sorted(t for t in targets if scored.get(t) != current[t])
        if meta is None and storage.read_meta(SHARD_NAG, f"{s}.parquet") is None:
            left_out[s] = "no shard_nag yet: not extracted yet, or its file is bad (see its run)"
        elif meta is None:
            left_out[s] = "no shard_scores yet"
        elif stale:
            left_out[s] = f"not scored against the current version of {stale} yet"
        else:
            usable[s] = meta
    return usable, left_out, current


def selected_mixture(
    storage: Storage,
    shards: list[str],
    targets: list[str],
    settings: MixtureSettings,
    embedder=None,
) -> StepResult:
    """The budgeted selection by `settings.ranker` (NAG by default; a baseline's scores are
    computed, or reused, under `assets/baseline_scores/<ranker>/` first). `embedder`: the
    embedding ranker's model (default: all-MiniLM-L6-v2, loaded when needed)."""
    if not targets:
        raise InputError(
            f"no targets: add a target file under {storage.url('targets')}/ (or a bench__<name> "
            "partition) to select for; the selection in force, if any, is left as it was"
        )
    for t in targets:
        check_key(t)
    unknown = sorted(set(settings.weights) - set(targets))
    if unknown:
        raise InputError(f"weights name unknown targets {unknown}; targets are {targets}")
    if not shards:
        raise InputError(
            f"no shards: add parquet or JSONL files under {storage.url('shards')}/ to select "
            "from; the selection in force, if any, is left as it was"
        )
    targets_left_out = {
        t: "no target_nag yet: not extracted yet, or its file is bad (see its run)"
        for t in targets
        if storage.read_meta(NAG, f"{t}.parquet") is None
    }
    targets = [t for t in targets if t not in targets_left_out]
    if not targets:
        raise InputError(f"no target is ready to select for: {targets_left_out}")
    weights = {t: w for t, w in settings.weights.items() if t in targets}
    usable, left_out, target_versions = scored_shards(storage, shards, targets)
    if not usable:
        raise InputError(f"none of the shards is scored yet, nothing to select from: {left_out}")
    keys = sorted(usable)
    ranker = settings.ranker
    folder = baselines.score_folder(ranker)
    if ranker != NAG_RANKER:  # same documents, ids and tokens; the ranker's own scores
        tables = baselines.baseline_scores(
            storage, ranker, usable, targets, settings.seed, embedder
        )
        usable = {s: {**usable[s], "version": tables[s]["version"]} for s in keys}

    def load(s: str, with_ids: bool = False) -> tuple[ScoredBatch, np.ndarray | None]:
        """A shard's scores ranked by (id, shard), and (if asked) its plain ids."""
        df = storage.read_parquet(folder, f"{s}.parquet")
        rank = (df["id"] + f"{RANK_SEP}{s}").to_numpy()
        batch = ScoredBatch(df.select(targets).to_numpy(), df["tokens"].to_numpy(), rank)
        return batch, df["id"].to_numpy() if with_ids else None

    def batches():
        for s in keys:
            yield load(s)[0]

    cutoffs = find_cutoffs(batches, targets, settings.fraction, weights)
    inputs = [
        targets,
        settings.fraction,
        sorted(settings.weights.items()),
        settings.dedup,
        [(s, usable[s]["version"]) for s in keys],
    ]
    if ranker != NAG_RANKER:
        inputs.append([ranker, settings.seed])
    version = digest("selected_mixture", STEP_CODE_VERSION, FORMAT, json.dumps(inputs))
    pointer = _read_pointer(storage)
    if pointer and pointer["version"] == version:
        return StepResult(version, True, pointer["facts"])
    hist = np.zeros((len(targets), PLOT_BINS))
    chosen_by, files, pool_tokens, id_hashes = {}, [], 0, []
    lowest = np.full(len(targets), np.inf)
    for s in keys:
        batch, ids = load(s, with_ids=True)
        mask = keep_mask(batch, cutoffs)
        hist += _histograms(batch)
        kept = np.where(mask, batch.scores, np.inf)
        lowest = np.minimum(lowest, kept.min(axis=0, initial=np.inf))
        pool_tokens += int(np.maximum(batch.tokens, 0).sum())
        id_hashes.append(pl.Series(ids, dtype=pl.Utf8).hash(seed=0).to_numpy())
        for doc in np.nonzero(mask.sum(1) > 1)[0]:
            chosen_by[f"{s}/{ids[doc]}"] = [targets[t] for t in np.nonzero(mask[doc])[0]]
        if not mask.any():
            continue
        part = _part(storage, s, usable[s]["sha256"], batch, ids, mask, targets, settings)
        storage.write_parquet(part, FOLDER, version, f"part-{s}.parquet")
        files.append(f"{version}/part-{s}.parquet")
    facts = _facts(cutoffs, lowest, usable, left_out, chosen_by, hist, files, settings)
    facts["pool_tokens"] = pool_tokens
    facts["target_versions"] = target_versions
    facts["ids_in_several_shards"] = _shared_ids(storage, keys, id_hashes)
    facts["targets_left_out"] = targets_left_out
    storage.write_bytes(
        json.dumps({"version": version, "facts": facts}, indent=1).encode(),
        FOLDER,
        version,
        "_manifest.json",
    )
    storage.write_bytes(json.dumps({"version": version, "facts": facts}).encode(), FOLDER, POINTER)
    _drop_old_versions(storage, {version, (pointer or {}).get("version")})
    return StepResult(version, False, facts)


def _part(storage, shard, sha, batch, ids, mask, targets, settings) -> pl.DataFrame:
    rows, cols = mixture_rows(mask, settings.dedup)
    name, data, now_sha = read_shard(storage, shard)
    if now_sha != sha:
        raise InputError(
            f"{name} changed after it was scored: this mixture is retried once the new "
            "version of the shard is scored"
        )
    docs = read_documents(data, name, shard)
    picked = docs[rows.tolist()]
    if picked["id"].to_list() != ids[rows].tolist():
        raise InputError(f"{name}: documents do not line up with their scores")
    return (
        pl.DataFrame(
            {
                "target": [targets[c] for c in cols],
                "score": batch.scores[rows, cols].astype(np.float32),
                "shard": shard,
                "tokens": batch.tokens[rows],
                "ranker": settings.ranker,
            }
        )
        .hstack(picked.rename({"ranker": "shard_ranker"}, strict=False))  # a shard's own
        .select(
            "id",
            "text",
            "target",
            "score",
            "shard",
            "tokens",
            "ranker",
            pl.exclude("id", "text", "target", "score", "shard", "tokens", "ranker"),
        )
    )


def _shared_ids(storage: Storage, keys: list[str], id_hashes: list[np.ndarray]) -> dict:
    """How many ids occur in more than one shard, with a sample {id: [shards]}. Each shard's
    ids are unique, so a hash seen twice is (up to a 64-bit collision) an id in two shards."""
    if not id_hashes:
        return {"count": 0, "sample": {}}
    values, counts = np.unique(np.concatenate(id_hashes), return_counts=True)
    shared = values[counts > 1]
    sample: dict[str, list[str]] = {}
    if len(shared):
        for s, hashes in zip(keys, id_hashes):
            rows = np.nonzero(np.isin(hashes, shared))[0]
            if len(rows) == 0:
                continue
            ids = storage.read_parquet(SCORES, f"{s}.parquet")["id"]
            for doc_id in ids.gather(rows).to_list():
                if doc_id in sample or len(sample) < SAMPLE:
                    sample.setdefault(doc_id, []).append(s)
        sample = {i: ss for i, ss in sample.items() if len(ss) > 1}
    return {"count": len(shared), "sample": sample}


def _histograms(batch: ScoredBatch) -> np.ndarray:
    """Token-weighted score histogram per target, for the distribution plot."""
    edges = np.linspace(0, 1, PLOT_BINS + 1)
    return np.stack(
        [
            np.histogram(batch.scores[:, t], edges, weights=batch.tokens)[0]
            for t in range(batch.scores.shape[1])
        ]
    )


def _facts(
    cutoffs: list[Cutoff], lowest, usable, left_out, chosen_by, hist, files, settings
) -> dict:
    """`lowest`: per target, the lowest score kept (inf if none): the effective cut-off."""
    return {
        "targets": {
            c.target: {
                "documents": c.documents,
                "tokens": c.tokens,
                "budget": c.budget,
                "cutoff_score": float(low) if np.isfinite(low) else None,
                "cutoff_bin": c.bin,
            }
            for c, low in zip(cutoffs, lowest)
        },
        "shards": {s: m["version"] for s, m in usable.items()},
        "shards_left_out": left_out,
        "chosen_by_several": len(chosen_by),
        "chosen_by_several_sample": dict(list(chosen_by.items())[:20]),
        "histogram": hist.tolist(),
        "files": files,
        "fraction": settings.fraction,
        "weights": settings.weights,
        "dedup": settings.dedup,
        "ranker": settings.ranker,
        "seed": settings.seed if settings.ranker == "random" else None,
        "score_folder": baselines.score_folder(settings.ranker),
    }


def _read_pointer(storage: Storage) -> dict | None:
    try:
        return json.loads(storage.read_bytes(FOLDER, POINTER))
    except FileNotFoundError:
        return None


def _drop_old_versions(storage: Storage, keep: set) -> None:
    """Keep the version in force and the one before it (a reader that read the old pointer
    just before the switch can still read its files); drop the rest, orphans included."""
    base = storage.path(FOLDER)
    for d in storage.fs.ls(base, detail=True):
        name = d["name"].rstrip("/").rsplit("/", 1)[-1]
        if d.get("type") == "directory" and name not in keep:
            storage.fs.rm(d["name"], recursive=True)


def read_mixture(storage: Storage) -> pl.DataFrame:
    """The selected corpus in force, as one table."""
    pointer = _read_pointer(storage)
    if pointer is None:
        raise FileNotFoundError(f"no selected_mixture under {storage.url(FOLDER)} yet")
    return pl.concat(
        [storage.read_parquet(FOLDER, f) for f in pointer["facts"]["files"]], how="diagonal_relaxed"
    )


def mixture_digest(storage: Storage) -> str:
    """sha256 over the current mixture's files: equal across byte-identical reruns."""
    pointer = _read_pointer(storage)
    h = hashlib.sha256()
    for f in (pointer or {}).get("facts", {}).get("files", []):
        h.update(storage.read_bytes(FOLDER, f))
    return h.hexdigest()

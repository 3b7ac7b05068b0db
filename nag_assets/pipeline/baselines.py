"""Baseline score tables: the same shape as `shard_scores` (id, tokens, one float32 column per
target), written under `assets/baseline_scores/<ranker>/<shard>.parquet`.

Ids, order and token counts come from the shard's `shard_scores` file, so every ranker
selects from the same documents under the same token budget. Each table records a version
(ranker, settings, the shard's and targets' versions, and for DSIR and nag_contrastive the
whole pool's) and is reused while it holds; document embeddings are cached per shard file under
`assets/baseline_scores/embedding/_docs/`.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from nag_assets import rankers
from nag_assets.nag import build_profile, score_many
from nag_assets.nag.profile import contrastive_profile
from nag_assets.pipeline.common import nags_of
from nag_assets.pipeline.shards import NAG as SHARD_NAG
from nag_assets.pipeline.shards import SCORES, read_shard
from nag_assets.pipeline.targets import DATASET, load_profile
from nag_assets.sources.files import InputError, read_documents
from nag_assets.storage import Storage, check_key, digest

FOLDER = "assets/baseline_scores"
CODE_VERSION = "1"


def score_folder(ranker: str) -> str:
    """Where a ranker's per-shard score tables live (NAG: `shard_scores`)."""
    check_ranker(ranker)
    return SCORES if ranker == rankers.NAG else f"{FOLDER}/{ranker}"


def check_ranker(ranker: str) -> str:
    if ranker not in rankers.RANKERS:
        raise InputError(f"unknown ranker {ranker!r}; choose one of {list(rankers.RANKERS)}")
    return ranker


def target_texts(storage: Storage, target: str) -> tuple[list[str], str]:
    """A target's example texts (from target_dataset) and that dataset's version."""
    meta = storage.read_meta(DATASET, f"{check_key(target)}.parquet")
    if meta is None:
        raise InputError(f"target_dataset[{target}] has not been materialized yet")
    return storage.read_parquet(DATASET, f"{target}.parquet")["text"].to_list(), meta["version"]


def shard_texts(storage: Storage, shard: str, ids: list[str], sha: str) -> list[str]:
    """The texts of a shard's documents, in the order of its score file."""
    name, data, now_sha = read_shard(storage, shard)
    if now_sha != sha:
        raise InputError(f"{name} changed after it was scored: retried once it is rescored")
    docs = read_documents(data, name, shard)
    if docs["id"].to_list() != ids:
        raise InputError(f"{name}: documents do not line up with their scores")
    return docs["text"].to_list()


def baseline_scores(
    storage: Storage,
    ranker: str,
    score_meta: dict[str, dict],
    targets: list[str],
    seed: int = 0,
    embedder: rankers.Embedder | None = None,
) -> dict[str, dict]:
    """Write (or reuse) the ranker's score table of every shard in `score_meta` (shard ->
    its shard_scores meta, as `scored_shards` returns) and return shard -> table meta."""
    check_ranker(ranker)
    if ranker == rankers.NAG:
        return score_meta
    folder = score_folder(ranker)
    keys = sorted(score_meta)
    texts_of = {t: target_texts(storage, t) for t in targets}
    settings: list = [ranker, CODE_VERSION, sorted((t, v) for t, (_, v) in texts_of.items())]
    if ranker == "random":
        settings.append(seed)
    if ranker in ("dsir", rankers.NAG_CONTRASTIVE):  # a whole-pool model: any shard changes all
        settings.append([(s, score_meta[s]["sha256"], score_meta[s]["version"]) for s in keys])
    if ranker == "embedding":
        settings.append(embedder.name if embedder else "all-MiniLM-L6-v2@128")
    versions = {
        s: digest(*settings, score_meta[s]["sha256"], score_meta[s]["version"]) for s in keys
    }
    todo = [
        s
        for s in keys
        if (storage.read_meta(folder, f"{s}.parquet") or {}).get("version") != versions[s]
    ]
    if todo:
        _compute(
            storage, ranker, keys, todo, score_meta, targets, texts_of, versions, seed, embedder
        )
    return {s: storage.read_meta(folder, f"{s}.parquet") for s in keys}


def _compute(storage, ranker, keys, todo, score_meta, targets, texts_of, versions, seed, embedder):
    folder = score_folder(ranker)
    base = {s: storage.read_parquet(SCORES, f"{s}.parquet").select("id", "tokens") for s in keys}
    texts = {}
    if ranker == "dsir":  # fit the raw model on every shard, score only those to do
        texts = {
            s: shard_texts(storage, s, base[s]["id"].to_list(), score_meta[s]["sha256"])
            for s in keys
        }
        raw = rankers.NgramModel.fit(sum(rankers.dsir.bucket_counts(texts[s]) for s in keys))
        models = [
            rankers.NgramModel.fit(rankers.dsir.bucket_counts(texts_of[t][0])) for t in targets
        ]
    if ranker == "embedding":
        embedder = embedder or rankers.load_embedder()
        centroids = [rankers.embedding.centroid(embedder.encode(texts_of[t][0])) for t in targets]
    if ranker == rankers.NAG_CONTRASTIVE:
        pool_nags = {s: shard_nags(storage, s, base[s]["id"].to_list()) for s in keys}
        loaded = [load_profile(storage, t) for t in targets]
        profiles = contrastive_profiles(
            [p for p, _ in loaded], list(pool_nags.values()), loaded[0][1]["top_k"]
        )
    for s in todo:
        ids = base[s]["id"].to_list()
        if ranker == rankers.NAG_CONTRASTIVE:
            scores = score_many(pool_nags[s], profiles)
        elif ranker == "random":
            scores = rankers.random_scores([f"{s}/{i}" for i in ids], targets, seed)
        elif ranker == "dsir":
            scores = rankers.dsir_scores(texts[s], models, raw)
        else:
            emb = _doc_embeddings(storage, embedder, s, ids, score_meta[s]["sha256"])
            scores = rankers.embedding_scores(emb, centroids)
        df = base[s].hstack([pl.Series(t, scores[:, i]) for i, t in enumerate(targets)])
        meta = {
            "version": versions[s],
            "ranker": ranker,
            "targets": targets,
            "sha256": score_meta[s]["sha256"],
            "shard_scores_version": score_meta[s]["version"],
            "seed": seed if ranker == "random" else None,
        }
        storage.write_parquet(df, folder, f"{s}.parquet", meta=meta)


def shard_nags(storage: Storage, shard: str, ids: list[str]) -> np.ndarray:
    """A shard's stored NAGs (n, L, K), in the order of its score file."""
    meta = storage.read_meta(SHARD_NAG, f"{shard}.parquet")
    table = storage.read_parquet(SHARD_NAG, f"{shard}.parquet")
    if meta is None or table["id"].to_list() != ids:
        raise InputError(f"shard_nag[{shard}] does not line up with its scores: rescore it")
    return nags_of(table, meta)


def contrastive_profiles(profiles: list[np.ndarray], pool: list[np.ndarray], k: int):
    """(T, L, d_ff) the targets' contrastive profiles against the pool's NAG frequencies
    (`pool`: the NAGs of each shard, or of the pool in one array)."""
    pool_nags = np.concatenate(pool)
    pool_profile = build_profile(pool_nags, profiles[0].shape[1])
    return np.stack([contrastive_profile(p, pool_profile, len(pool_nags), k) for p in profiles])


def _doc_embeddings(storage, embedder, shard: str, ids: list[str], sha: str) -> np.ndarray:
    """A shard's document embeddings, cached per (embedder, shard file content)."""
    name = f"{shard}.{digest(embedder.name, sha)}.npy"
    folder = f"{FOLDER}/embedding/_docs"
    try:
        return storage.read_npy(folder, name)
    except FileNotFoundError:
        pass
    emb = embedder.encode(shard_texts(storage, shard, ids, sha)).astype(np.float32)
    storage.write_npy(emb, folder, name)
    return emb


def describe(ranker: str, seed: int = 0) -> str:
    return json.dumps({"ranker": ranker, **({"seed": seed} if ranker == "random" else {})})

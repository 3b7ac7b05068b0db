"""selected_mixture: the token-budget selection over all shards, with provenance.

Output: `mixture_versions/<version>/part-<shard>.parquet` (the chosen documents, their text
and every column of the shard, plus target, score, shard), its manifest
`mixture_versions/<version>.json`, and `mixture_versions/CURRENT.json`, which names the version
in force. The pointer is written last, so readers following it never see a half-written
mixture; a rerun with the same inputs writes the same version. Then `selected_mixture/` is
made to hold exactly the parts of the version in force and nothing else (local: a symlink to
its folder, switched atomically; S3: its files copied in, the others removed), so one line of
polars, pandas or HF `datasets` reads the corpus. A preview (other settings than the spec's)
is written the same way under `previews/` and never replaces the selection in force.

Documents are known by (shard, id): ids need only be unique within a shard. The same id in two
shards is two documents; both can be chosen, their rows told apart by `shard`, and ties in
score rank by (id, shard). How many ids occur in several shards is reported in the facts
(`ids_in_several_shards`), never silently merged or dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from nag_assets.nag import Cutoff, ScoredBatch, find_cutoffs, keep_mask, mixture_rows
from nag_assets.nag.blend import Range, blend
from nag_assets.nag.select import check_weights
from nag_assets.pipeline import distilled, ranker_scores
from nag_assets.pipeline.common import STEP_CODE_VERSION, StepResult
from nag_assets.pipeline.corpus import (
    CORPUS,
    CORPUS_POINTER,
    FOLDER,
    POINTER,
    PREVIEWS,
    corpus_shows,
    manifest_file,
    mixture_digest,
    part_file,
    publish_corpus,
    read_manifest,
    read_mixture,
    write_corpus,
)
from nag_assets.pipeline.layout import (
    DISTILL_SAMPLE,
    RANK_SEP,
    SHARD_NAG,
    SHARD_SCORES,
    TARGET_NAG,
    NagFooter,
    ShardScoresFooter,
    doc_key,
    rank_ids,
    read_json,
    table,
)
from nag_assets.pipeline.shards import read_shard
from nag_assets.rankers import registry
from nag_assets.settings import MixtureSettings
from nag_assets.sources.files import InputError, read_documents
from nag_assets.storage import Storage, UnsafeKeyError, check_key, digest

KEEP_PREVIEWS = 5
PLOT_BINS = 200
SAMPLE = 20
FORMAT = "3"  # 3: a manifest, the corpus apart; bump when the mixture's files change
__all__ = [
    "CORPUS",
    "FOLDER",
    "POINTER",
    "PREVIEWS",
    "RANK_SEP",
    "MixtureSettings",
    "mixture_digest",
    "read_manifest",
    "read_mixture",
    "selected_mixture",
    "write_corpus",
]


def scored_shards(
    storage: Storage, shards: list[str], targets: list[str]
) -> tuple[dict[str, ShardScoresFooter], dict[str, str], dict[str, str | None]]:
    """(usable shards with their score-file footer, shards left out with the reason, target
    versions). A shard is usable only if scored against the current version of every target,
    so a mixture never mixes scores from two versions of a profile."""
    current = {t: _version_of(NagFooter.read(storage, TARGET_NAG, t)) for t in targets}
    scorers: dict | None = None  # the distilled scorers in force, read when a table has some
    usable, left_out = {}, {}
    for s in shards:
        try:
            check_key(s)
        except UnsafeKeyError as e:
            left_out[s] = str(e)
            continue
        footer = ShardScoresFooter.read(storage, SHARD_SCORES, s)
        scored = footer.target_versions if footer else {}
        stale = sorted(t for t in targets if scored.get(t) != current[t])
        if footer is not None and footer.scorer_versions is not None:  # scorer: distilled
            scorers = scorers or distilled.current_scorer_versions(storage, targets)
            stale = sorted(
                {*stale, *(t for t in targets if footer.scorer_versions.get(t) != scorers[t])}
            )
        if footer is None and storage.read_meta(*table(DISTILL_SAMPLE, s)) is not None:
            left_out[s] = "no shard_scores yet (scorer: distilled; see its run)"
        elif footer is None and storage.read_meta(*table(SHARD_NAG, s)) is None:
            left_out[s] = "no shard_nag yet: not extracted yet, or its file is bad (see its run)"
        elif footer is None:
            left_out[s] = "no shard_scores yet"
        elif stale:
            left_out[s] = f"not scored against the current version of {stale} yet"
        else:
            usable[s] = footer
    return usable, left_out, current


def _version_of(footer) -> str | None:
    return None if footer is None else footer.version


def selected_mixture(
    storage: Storage,
    shards: list[str],
    targets: list[str],
    settings: MixtureSettings,
    embedder=None,
    backbone=None,
    preview: bool = False,
    copy: bool = True,
) -> StepResult:
    """The budgeted selection by `settings.ranker` (NAG by default; another ranker's scores
    are computed, or reused, under `assets/baseline_scores/<ranker>/` first). `embedder`: the
    embedding ranker's model (default: all-MiniLM-L6-v2, loaded when needed); `backbone`: loads
    the backbone (nag_distilled reads its tokenizer and input embeddings, never runs it).
    `preview`: written under `previews/`, leaving the selection in force as it is. `copy`:
    write the corpus (the chosen documents' text) too, before the selection is published;
    without it only the manifest (the graph writes the corpus in `mixture_corpus`)."""
    _check_request(storage, shards, targets, settings)
    targets, targets_left_out = _ready_targets(storage, targets)
    usable, left_out, target_versions = scored_shards(storage, shards, targets)
    if not usable:
        raise InputError(f"none of the shards is scored yet, nothing to select from: {left_out}")
    versions = _ranked(storage, settings, usable, targets, embedder, backbone)
    folder = ranker_scores.score_folder(settings.ranker)
    weights = {t: w for t, w in settings.weights.items() if t in targets}
    batches = _Batches(storage, folder, sorted(usable), targets)
    if settings.quality_column:
        batches.blend_with(settings, usable)
    cutoffs = find_cutoffs(batches, targets, settings.fraction, weights, tokens=settings.tokens)
    version = _mixture_version(targets, settings, versions)
    done = _written_before(storage, version, preview, copy)
    if done is not None:
        return StepResult(version, True, done)
    out = PREVIEWS if preview else FOLDER
    written = _write_manifest(storage, batches, cutoffs, usable, version, settings, out)
    facts = _facts(cutoffs, written, versions, left_out, settings)
    facts["target_versions"] = target_versions
    facts["ids_in_several_shards"] = _shared_ids(storage, batches.keys, written.id_hashes)
    facts["targets_left_out"] = targets_left_out
    if settings.quality_column:
        facts["quality_blend"] = {
            "column": settings.quality_column,
            "weight": settings.quality_weight,
            "direction": settings.quality_direction,
        }
    if copy or preview:  # the corpus first: a failed copy leaves the selection in force
        corpus = write_corpus(storage, version, out, publish=False, facts=facts)
    (_publish_preview if preview else _publish)(storage, version, facts)
    if copy and not preview:
        publish_corpus(storage, version, facts["files"], corpus.facts["part_names"])
    return StepResult(version, False, facts)


def _written_before(storage: Storage, version: str, preview: bool, copy: bool) -> dict | None:
    """The facts of this very version if it is already the one in force, with its corpus
    when `copy` (or, for a preview, already written), else None."""
    if preview:
        manifest = read_json(storage, PREVIEWS, f"{version}.json")
        return None if manifest is None else manifest["facts"]
    pointer = _read_pointer(storage)
    if not pointer or pointer["version"] != version:
        return None
    corpus = read_json(storage, FOLDER, CORPUS_POINTER) or {}
    whole = corpus.get("version") == version and corpus_shows(storage, version)
    return pointer["facts"] if whole or not copy else None


def _check_request(
    storage: Storage, shards: list[str], targets: list[str], settings: MixtureSettings
) -> None:
    """What no run can select from: no targets, no shards, weights naming no target."""
    if not targets:
        raise InputError(
            f"no targets: add a target file under {storage.url('targets')}/ (or a bench__<name> "
            "partition) to select for; the selection in force, if any, is left as it was"
        )
    for t in targets:
        check_key(t)
    try:
        check_weights(settings.weights, targets)
    except ValueError as e:
        raise InputError(str(e)) from e
    if not shards:
        raise InputError(
            f"no shards: add parquet or JSONL files under {storage.url('shards')}/ to select "
            "from; the selection in force, if any, is left as it was"
        )


def _ready_targets(storage: Storage, targets: list[str]) -> tuple[list[str], dict[str, str]]:
    """(targets with a target_nag, the others with the reason)."""
    left_out = {
        t: "no target_nag yet: not extracted yet, or its file is bad (see its run)"
        for t in targets
        if storage.read_meta(*table(TARGET_NAG, t)) is None
    }
    ready = [t for t in targets if t not in left_out]
    if not ready:
        raise InputError(f"no target is ready to select for: {left_out}")
    return ready, left_out


def _ranked(storage, settings, usable, targets, embedder, backbone) -> dict[str, tuple]:
    """shard -> (its score table's version, its file's sha256) under the chosen ranker (the
    same documents, ids and tokens as shard_scores; the ranker's own scores)."""
    tables = ranker_scores.ranker_scores(
        storage, settings.ranker, usable, targets, settings.seed, embedder, backbone,
        settings.sample_fraction, settings.hybrid_weight,
    )  # fmt: skip
    return {s: (t.version, usable[s].sha256) for s, t in tables.items()}


def _mixture_version(targets, settings: MixtureSettings, versions: dict) -> str:
    inputs = [
        targets,
        settings.fraction,
        sorted(settings.weights.items()),
        settings.dedup,
        [(s, v) for s, (v, _) in sorted(versions.items())],
    ]
    if settings.ranker != registry.DEFAULT:
        inputs.append([settings.ranker, settings.seed])
    if settings.tokens is not None:  # a count of tokens replaces the fraction
        inputs.append(["tokens", settings.tokens])
    if settings.quality_column:  # the column's values are in the shards' sha256 already
        blend = settings.quality_column, settings.quality_weight, settings.quality_direction
        inputs.append(["quality", *blend])
    return digest("selected_mixture", STEP_CODE_VERSION, FORMAT, json.dumps(inputs))


class _Batches:
    """Each usable shard's scores, ranked by (id, shard), read afresh on each pass."""

    def __init__(self, storage: Storage, folder: str, keys: list[str], targets: list[str]):
        self.storage, self.folder, self.keys, self.targets = storage, folder, keys, targets
        self.blend: tuple | None = None  # (settings, quality per shard, ranges)

    def _scores(self, s: str) -> pl.DataFrame:
        return self.storage.read_parquet(*table(self.folder, s))

    def blend_with(self, settings: MixtureSettings, usable: dict) -> None:
        """Blend every shard's scores with its quality column, over the pool's ranges."""
        quality = {s: _quality(self.storage, s, usable[s].sha256, settings) for s in self.keys}
        scores = {s: self._scores(s).select(self.targets).to_numpy() for s in self.keys}
        ranges = [Range.of(x[:, c] for x in scores.values()) for c in range(len(self.targets))]
        self.blend = (settings, quality, ranges, Range.of(quality.values()))

    def load(self, s: str) -> tuple[ScoredBatch, np.ndarray]:
        """A shard's scores (blended with its quality when asked) and its plain ids."""
        df = self._scores(s)
        scores = df.select(self.targets).to_numpy()
        if self.blend:
            st, quality, ranges, q_range = self.blend
            w, d = st.quality_weight, st.quality_direction
            scores = blend(scores, ranges, quality[s], q_range, w, d).astype(np.float32)
        batch = ScoredBatch(scores, df["tokens"].to_numpy(), rank_ids(df["id"], s))
        return batch, df["id"].to_numpy()

    def __call__(self):
        for s in self.keys:
            yield self.load(s)[0]


@dataclass
class _Written:
    """What the writing pass saw: histograms, lowest kept scores, documents several targets
    chose, files written, pool tokens and hashed ids (for ids in several shards)."""

    hist: np.ndarray
    lowest: np.ndarray
    chosen_by: dict = field(default_factory=dict)  # the first SAMPLE only: memory stays flat
    chosen_by_several: int = 0  # all of them
    files: list = field(default_factory=list)  # the corpus parts, one per shard with a pick
    manifest: list = field(default_factory=list)  # the chosen rows of those shards, no text
    pool_tokens: int = 0
    id_hashes: list = field(default_factory=list)


def _write_manifest(
    storage, batches: _Batches, cutoffs, usable, version, settings, folder: str = FOLDER
) -> _Written:
    """One pass over the scores: per shard, the rows chosen (its manifest, no text), and what
    the facts need."""
    targets = batches.targets
    out = _Written(np.zeros((len(targets), PLOT_BINS)), np.full(len(targets), np.inf))
    for s in batches.keys:
        batch, ids = batches.load(s)
        mask = keep_mask(batch, cutoffs)
        out.hist += _histograms(batch)
        kept = np.where(mask, batch.scores, np.inf)
        out.lowest = np.minimum(out.lowest, kept.min(axis=0, initial=np.inf))
        out.pool_tokens += int(np.maximum(batch.tokens, 0).sum())
        out.id_hashes.append(pl.Series(ids, dtype=pl.Utf8).hash(seed=0).to_numpy())
        several = np.nonzero(mask.sum(1) > 1)[0]
        out.chosen_by_several += len(several)
        for doc in several[: max(0, SAMPLE - len(out.chosen_by))]:
            out.chosen_by[doc_key(s, ids[doc])] = [targets[t] for t in np.nonzero(mask[doc])[0]]
        if not mask.any():
            continue
        rows = _manifest(s, batch, ids, mask, targets, settings)
        meta = {"sha256": usable[s].sha256}  # the shard's content the rows point into
        storage.write_parquet(rows, folder, manifest_file(version, s), meta=meta)
        out.manifest.append(manifest_file(version, s))
        out.files.append(part_file(version, s))
    return out


def _quality(storage: Storage, shard: str, sha: str, settings: MixtureSettings) -> np.ndarray:
    """A shard's quality column, in the order of its scores, as float64 (null: NaN)."""
    name, data, now_sha = read_shard(storage, shard)
    if now_sha != sha:
        raise InputError(f"{name} changed after it was scored: retried once it is rescored")
    docs = read_documents(data, name, shard)
    column = settings.quality_column
    if column not in docs.columns:
        raise InputError(
            f"{name}: no quality column {column!r} (columns: {', '.join(docs.columns)}); "
            "set quality_column to one of them, or leave it empty for no quality blend"
        )
    try:
        values = docs[column].cast(pl.Float64, strict=True)
    except pl.exceptions.PolarsError as e:
        raise InputError(f"{name}: quality column {column!r} is not numeric ({e})") from e
    return values.fill_null(np.nan).to_numpy()


def _publish(storage: Storage, version: str, facts: dict) -> None:
    """The facts, then the pointer (last: readers never see a half-written selection), then
    drop versions older than the one before (and than the corpus in force)."""
    previous = (_read_pointer(storage) or {}).get("version")
    manifest = json.dumps({"version": version, "facts": facts}, indent=1).encode()
    storage.write_bytes(manifest, FOLDER, f"{version}.json")
    storage.write_bytes(json.dumps({"version": version, "facts": facts}).encode(), FOLDER, POINTER)
    corpus = (read_json(storage, FOLDER, CORPUS_POINTER) or {}).get("version")
    _drop_old(storage, FOLDER, {version, previous, corpus} - {None})


def _publish_preview(storage: Storage, version: str, facts: dict) -> None:
    """A preview's manifest (written last: it marks the preview whole); the oldest beyond
    KEEP_PREVIEWS are dropped."""
    manifest = json.dumps({"version": version, "facts": facts}, indent=1).encode()
    storage.write_bytes(manifest, PREVIEWS, f"{version}.json")
    found = [f for f in storage.list_files(PREVIEWS) if f.name.endswith(".json")]
    found.sort(key=lambda f: _modified(storage, f.path))
    keep = {f.name[: -len(".json")] for f in found[-KEEP_PREVIEWS:]} | {version}
    _drop_old(storage, PREVIEWS, keep)


def _modified(storage: Storage, path: str) -> float:
    info = storage.fs.info(path)
    stamp = info.get("mtime") or info.get("LastModified") or 0
    return stamp.timestamp() if hasattr(stamp, "timestamp") else float(stamp)


def _manifest(shard, batch, ids, mask, targets, settings) -> pl.DataFrame:
    """The shard's chosen rows: the document (id and its row in the shard), the target that
    chose it with the score, and its tokens."""
    rows, cols = mixture_rows(mask, settings.dedup)
    return pl.DataFrame(
        {
            "id": pl.Series(ids[rows], dtype=pl.Utf8),
            "target": [targets[c] for c in cols],
            "score": batch.scores[rows, cols].astype(np.float32),
            "shard": shard,
            "tokens": batch.tokens[rows],
            "ranker": settings.ranker,
            "row": rows.astype(np.int64),
        }
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
            ids = storage.read_parquet(*table(SHARD_SCORES, s))["id"]
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


def _facts(cutoffs: list[Cutoff], written: _Written, versions, left_out, settings) -> dict:
    """`written.lowest`: per target, the lowest score kept (inf if none): the cut-off."""
    return {
        "targets": {
            c.target: {
                "documents": c.documents,
                "tokens": c.tokens,
                "budget": c.budget,
                "cutoff_score": float(low) if np.isfinite(low) else None,
                "cutoff_bin": c.bin,
            }
            for c, low in zip(cutoffs, written.lowest)
        },
        "shards": {s: v for s, (v, _) in versions.items()},
        "shards_left_out": left_out,
        "chosen_by_several": written.chosen_by_several,
        "chosen_by_several_sample": written.chosen_by,
        "histogram": written.hist.tolist(),
        "files": written.files,
        "manifest": written.manifest,
        "fraction": settings.fraction,
        "weights": settings.weights,
        "dedup": settings.dedup,
        "ranker": settings.ranker,
        "seed": settings.seed if registry.get(settings.ranker).uses_seed else None,
        "score_folder": ranker_scores.score_folder(settings.ranker),
        "pool_tokens": written.pool_tokens,
    }


def _read_pointer(storage: Storage) -> dict | None:
    return read_json(storage, FOLDER, POINTER)


def _drop_old(storage: Storage, folder: str, keep: set) -> None:
    """Drop every version folder and manifest under `folder` but those in `keep` (the version
    in force and the one before it: a reader that read the old pointer just before the
    switch can still read its files); orphans of killed runs included."""
    base = storage.path(folder)
    if not storage.fs.exists(base):
        return
    for d in storage.fs.ls(base, detail=True):
        name = d["name"].rstrip("/").rsplit("/", 1)[-1]
        version = name.removesuffix(".json").removesuffix(".manifest")
        pointer = name in (POINTER, CORPUS_POINTER)
        if not pointer and version not in keep and not name.startswith("."):
            storage.fs.rm(d["name"], recursive=d.get("type") == "directory")


@dataclass(frozen=True)
class MixtureCheck:
    """What the selection in force holds against its facts: targets over their budget
    ({target: {tokens, budget}}), rows that are no scored document of their shard or have no
    text, and how many rows there are."""

    over_budget: dict
    bad_rows: int
    rows: int


def check_budget(storage: Storage, facts: dict) -> dict:
    """Targets whose chosen tokens, re-read from the manifest, exceed their budget."""
    if not facts["manifest"]:
        return {}
    chosen = read_manifest(storage)
    used = dict(chosen.group_by("target").agg(pl.col("tokens").sum()).iter_rows())
    return {
        t: {"tokens": int(used.get(t, 0)), "budget": f["budget"]}
        for t, f in facts["targets"].items()
        if used.get(t, 0) > f["budget"]
    }


def check_mixture(storage: Storage, facts: dict) -> MixtureCheck:
    """Re-read the corpus in force and the score tables: the budget holds per target, and
    every row points to a scored document with its text."""
    over = check_budget(storage, facts)
    if not facts["files"]:
        return MixtureCheck(over, 0, 0)
    mix = read_mixture(storage)
    bad_rows = 0
    for shard in mix["shard"].unique().to_list():
        ids = set(storage.read_parquet(*table(SHARD_SCORES, shard))["id"].to_list())
        part = mix.filter(pl.col("shard") == shard)
        bad_rows += sum(1 for i, t in zip(part["id"], part["text"]) if i not in ids or not t)
    return MixtureCheck(over, bad_rows, mix.height)

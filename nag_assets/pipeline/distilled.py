"""The distilled scoring path (`scorer: distilled`): the backbone reads only a sample of each
shard, a cheap text model per target learns the sample's NAG scores, and every shard is
scored from its text alone, into tables with the shape of `shard_scores`.

    distill_sample[shard]     the NAGs of the shard's sampled documents (a hash of seed,
                              shard and id below the fraction): the only backbone pass
    distilled_scorer[target]  trained on every shard's sample, scored against the target's
                              profile; a new target trains only its own
    distilled_scores[shard]   `shard_scores/<shard>.parquet` from the scorers, no backbone

Each step skips when its output records the version it would write (`layout.is_current`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from nag_assets import distill
from nag_assets.nag import Backbone, BackboneFacts, score_many
from nag_assets.pipeline import rerank
from nag_assets.pipeline.common import (
    NagSettings,
    StepResult,
    nag_footer,
    nags_of,
)
from nag_assets.pipeline.extractor import Extractor, NagJob, extractor_for
from nag_assets.pipeline.impact import impact_baseline
from nag_assets.pipeline.layout import (
    DISTILL_SAMPLE,
    SHARD_SCORES,
    NagFooter,
    ScorerFooter,
    ShardScoresFooter,
    is_current,
    sample_docs,
    scorer_file,
    scorer_model,
    table,
)
from nag_assets.pipeline.shards import plan_shard
from nag_assets.pipeline.stream import NagTally, iter_documents, write_nag_stream
from nag_assets.pipeline.targets import load_profile
from nag_assets.sources.chunks import CHUNK_ROWS, FilePlan, plan_file
from nag_assets.sources.files import InputError
from nag_assets.storage import Storage, check_key, digest

SCORERS = ("nag", "distilled")  # nag: shard_nag on every shard (the paper); distilled: this
CODE_VERSION = "1"
SCORE_BATCH = 4096  # documents scored at a time (bounds the sparse feature matrices)
MIN_SAMPLE = 2


@dataclass(frozen=True)
class Scoring:
    """How shards are scored: `scorer` (one of SCORERS) and, for `distilled`, the sample
    the backbone reads, the text model that learns from it, and the share of each shard the
    backbone rereads exactly (`rerank`, see pipeline.rerank; None: none)."""

    scorer: str = "nag"
    sample: distill.SampleSettings = field(default_factory=distill.SampleSettings)
    model: distill.DistillSettings = field(default_factory=distill.DistillSettings)
    rerank: float | None = None  # each shard's top share per target gets its exact NAG

    def __post_init__(self) -> None:
        rerank.check_share(self.rerank)
        if self.scorer not in SCORERS:
            raise InputError(f"scorer {self.scorer!r} must be one of {list(SCORERS)}")
        if self.sample.fraction is None:
            raise InputError(
                "scorer distilled samples each shard on its own: set sample_fraction "
                "(a count of documents spans the whole pool)"
            )

    @property
    def distilled(self) -> bool:
        return self.scorer == "distilled"

    def sample_version(self) -> list:
        return ["sample", self.sample.fraction, self.sample.seed]

    def model_version(self) -> list:
        return sorted(dataclasses.asdict(self.model).items())


def distill_sample(
    storage: Storage,
    key: str,
    backbone: BackboneFacts,
    settings: NagSettings,
    sample: distill.SampleSettings,
    progress=None,
    extractor: Extractor | None = None,
) -> StepResult:
    """The NAGs of the shard's sampled documents (written like a shard_nag table), and their
    texts under `_docs/`: the only backbone pass of the distilled path. A shard outside
    `sample.shards` is not read and writes nothing."""
    if not sample.covers(key):
        return outside_sample(key, sample)
    shard = plan_shard(storage, key, settings.chunk_rows)
    name, sha = shard.name, shard.sha256
    if shard.rows == 0:
        raise InputError(f"{name}: the shard holds no documents")
    baseline, fp = impact_baseline(storage, backbone, settings, progress)
    version = digest("distill_sample", CODE_VERSION, sha, fp, sample.fraction, sample.seed)
    out = table(DISTILL_SAMPLE, key)
    facts = {"file": name, "shard_documents": shard.rows}
    if is_current(storage, version, *out):
        return StepResult(version, True, {**facts, "documents_extracted": 0})
    picked = _draw_sample(shard, sample)
    storage.write_parquet(picked, *sample_docs(key), meta={"version": version})
    footer = nag_footer(version, backbone, settings, fp, file=name, sha256=sha)
    tally = NagTally(backbone.num_layers, settings.top_k, backbone.d_ff)
    if picked.height:
        folder, doc_file = sample_docs(key)
        plan = plan_file(storage, f"{folder}/{doc_file}", doc_file, key, settings.chunk_rows)
        job = NagJob(settings, backbone.fingerprint, baseline)
        chunks = extractor_for(backbone, extractor).run(job, plan, progress)
        write_nag_stream(storage, out, footer.to_meta(), chunks, plan, tally)
    else:  # a small shard may draw no document: an empty sample, still current
        width = backbone.num_layers * settings.top_k
        empty = pl.DataFrame(
            {"id": [], "tokens": [], "nag_tokens": [], "nag": []},
            schema={"id": pl.Utf8, "tokens": pl.Int64, "nag_tokens": pl.Int64,
                    "nag": pl.Array(pl.Int16, width)},
        )  # fmt: skip
        storage.write_parquet(empty, *out, meta=footer.to_meta())
    return StepResult(
        version,
        False,
        {**facts, "documents_extracted": tally.documents, "nag_tokens": tally.nag_tokens},
    )


def outside_sample(key: str, sample: distill.SampleSettings) -> StepResult:
    """distill_sample of a shard that `sample_shards` leaves out: no read, no backbone."""
    check_key(key)
    note = f"{key} matches none of sample_shards {list(sample.shards)}: scored, never sampled"
    return StepResult(digest("outside_sample", *sample.shards), True, {"in_sample": note})


def _draw_sample(shard: FilePlan, sample: distill.SampleSettings) -> pl.DataFrame:
    """(id, text) of the shard's sampled documents, read chunk by chunk: only the sample's
    texts are held (a fraction draws each document on its own, so chunks draw alone)."""
    if sample.fraction is None:
        raise InputError("distill_sample draws each shard on its own: set sample_fraction")
    picked = [
        docs.filter(
            pl.Series(distill.draw({shard.key: docs["id"].to_list()}, sample)[shard.key])
        ).select("id", "text")
        for docs in iter_documents(shard)
    ]
    return pl.concat(picked, rechunk=True)


def _sample_rows(storage: Storage, shard: str, footer: NagFooter) -> tuple[list[str], np.ndarray]:
    """(texts, NAGs) of a shard's sample, checked to line up."""
    nag_rows = storage.read_parquet(*table(DISTILL_SAMPLE, shard))
    docs_meta = storage.read_meta(*sample_docs(shard)) or {}
    docs = storage.read_parquet(*sample_docs(shard)) if docs_meta else None
    if docs is None or docs_meta.get("version") != footer.version:
        raise InputError(f"distill_sample[{shard}]: its texts are missing or stale: rerun it")
    if docs["id"].to_list() != nag_rows["id"].to_list():
        raise InputError(f"distill_sample[{shard}]: texts and NAGs do not line up: rerun it")
    return docs["text"].to_list(), nags_of(nag_rows, footer)


def distilled_scorer(
    storage: Storage,
    target: str,
    shards: Sequence[str],
    backbone: Backbone,
    model: distill.DistillSettings,
    sample: distill.SampleSettings | None = None,
) -> StepResult:
    """Train the target's scorer on the sample of every shard that `sample.shards` covers,
    labelled by the sample's NAG scores against the target's profile. Loads the backbone for
    its tokenizer and input embeddings, never runs it. Shards without a sample yet are left
    out and reported; shards outside `sample.shards` never change the scorer."""
    check_key(target)
    profile, tfoot = load_profile(storage, target)
    covered = sorted(k for k in shards if sample is None or sample.covers(k))
    samples, waiting = _samples_of(storage, target, tfoot.nag_fingerprint, covered)
    versions = {s: f.version for s, f in samples.items()}
    settings = dataclasses.asdict(model)
    version = digest(
        "distilled_scorer", CODE_VERSION, tfoot.version, sorted(versions.items()),
        sorted(settings.items()),
    )  # fmt: skip
    left_out: dict[str, str | int] = (
        {"shards_without_sample": ", ".join(waiting)} if waiting else {}
    )
    if len(covered) < len(shards):
        left_out["shards_outside_sample"] = len(shards) - len(covered)
    if is_current(storage, version, *scorer_file(target)):
        return StepResult(version, True, {"shards": len(samples), **left_out})
    texts, nags = [], []
    for s, footer in samples.items():
        t, n = _sample_rows(storage, s, footer)
        texts += t
        nags.append(n)
    if len(texts) < MIN_SAMPLE:
        raise InputError(
            f"distilled_scorer[{target}]: the samples of {len(samples)} shards hold "
            f"{len(texts)} documents, at least {MIN_SAMPLE} needed: raise sample_fraction"
            + (f" or widen sample_shards {list(sample.shards)}" if sample else "")
            + (f" or wait for the samples of {', '.join(waiting)}" if waiting else "")
        )
    labels = score_many(np.concatenate(nags), profile[None])
    read = distill.hf_reader(backbone.tokenizer, tfoot.max_tokens)
    lm: Any = backbone.model  # a transformers model: its input embeddings
    emb = lm.get_input_embeddings().weight.detach().float().cpu().numpy()
    scorer = distill.train(read, emb, texts, labels, [target], model, tfoot.max_tokens)
    storage.write_bytes(scorer.to_bytes(), *scorer_model(target, version))
    made = ScorerFooter(
        version, target, tfoot.version, versions, len(texts), tfoot.nag_fingerprint, settings
    )
    _write_json(storage, made.to_meta(), *scorer_file(target))  # last: it names the model
    _drop_old_models(storage, target, version)
    fit = _spearman(scorer.score(read, texts)[:, 0], labels[:, 0])
    return StepResult(
        version,
        False,
        {"documents": len(texts), "shards": len(samples), "train_spearman": fit, **left_out},
    )


def _samples_of(
    storage: Storage, target: str, fingerprint: str, shards: Sequence[str]
) -> tuple[dict[str, NagFooter], list[str]]:
    """(shard -> its sample's footer, shards without a sample yet), checked against the
    target's backbone and NAG settings."""
    samples, waiting = {}, []
    for s in shards:
        footer = NagFooter.read(storage, DISTILL_SAMPLE, s)
        if footer is None:
            waiting.append(s)
        elif footer.nag_fingerprint != fingerprint:
            raise InputError(
                f"target_nag[{target}] and distill_sample[{s}] were made with different "
                "backbones or NAG settings: rematerialize the older one"
            )
        else:
            samples[s] = footer
    return samples, waiting


def _drop_old_models(storage: Storage, target: str, keep: str) -> None:
    folder = "/".join(scorer_model(target, keep)[:2])
    for f in storage.list_files(folder):
        if f.name != f"{keep}.npz":
            storage.delete(folder, f.name)


def _write_json(storage: Storage, meta: dict, *parts: str) -> None:
    storage.write_bytes(json.dumps(meta, sort_keys=True).encode(), *parts)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    rho = spearmanr(a, b)[0] if len(a) > 2 else float("nan")
    return round(float(rho), 4)


def load_scorers(
    storage: Storage, targets: Sequence[str]
) -> tuple[dict[str, ScorerFooter], list[str]]:
    """(target -> its scorer's footer, targets without a scorer yet)."""
    found = {t: ScorerFooter.read_json(storage, t) for t in targets}
    return {t: f for t, f in found.items() if f}, [t for t, f in found.items() if f is None]


@dataclass(frozen=True)
class Rerank:
    """What `distilled_scores` needs to rerank a shard's top share with the backbone."""

    share: float
    settings: NagSettings
    extractor: Extractor | None = None
    progress: object = None
    backbone: BackboneFacts | None = None  # the extractor's (Ray: its actors'); None: the step's


def distilled_scores(
    storage: Storage,
    key: str,
    targets: Sequence[str],
    backbone: Backbone,
    chunk_rows: int = CHUNK_ROWS,
    rerank_with: Rerank | None = None,
) -> StepResult:
    """The shard's `shard_scores` table from the targets' distilled scorers: tokens counted
    with the backbone's tokenizer (as shard_nag counts them), scores from text, no forward
    pass, the shard read `chunk_rows` documents at a time. With `rerank_with`, the shard's
    top share per target gets its exact NAG score instead (the only backbone pass). A
    target without a scorer yet is left out and reported."""
    check_key(key)
    if not targets:
        raise InputError("no targets: add a target file under targets/ first")
    footers, waiting = load_scorers(storage, targets)
    if not footers:
        raise InputError(
            f"no target has a distilled_scorer yet ({', '.join(waiting)}): see those runs"
        )
    shard = plan_shard(storage, key, chunk_rows)
    name, sha = shard.name, shard.sha256
    if shard.rows == 0:
        raise InputError(f"{name}: the shard holds no documents")
    ready = sorted(footers)
    versions = {t: footers[t].version for t in ready}
    exact = _rerank_version(rerank_with, footers, ready)
    version = digest(
        "shard_scores", "distilled", CODE_VERSION, sha, sorted(versions.items()), *exact
    )
    out = table(SHARD_SCORES, key)
    left_out = {"targets_without_scorer": ", ".join(waiting)} if waiting else {}
    if is_current(storage, version, *out):
        return StepResult(version, True, {"targets": len(ready), **left_out})
    df = _scored_table(storage, shard, ready, versions, backbone)
    facts = {}
    if rerank_with is not None:
        df, facts = _reranked_table(storage, shard, df, footers, backbone, rerank_with)
    target_versions = {t: footers[t].target_version for t in ready}
    footer = ShardScoresFooter(version, ready, target_versions, name, sha, None, versions)
    storage.write_parquet(df, *out, meta=footer.to_meta())
    return StepResult(
        version, False, {"documents": df.height, "targets": len(ready), **facts, **left_out}
    )


def _rerank_version(rerank_with: Rerank | None, footers: dict, ready: list[str]) -> list:
    """What a reranked table also depends on: the share, the NAG settings of the exact
    scores (those of the targets' profiles: each scorer's fingerprint) and the profiles."""
    if rerank_with is None:
        return []
    fps = sorted({footers[t].nag_fingerprint for t in ready})
    profiles = sorted((t, footers[t].target_version) for t in ready)
    return ["rerank", rerank.CODE_VERSION, rerank_with.share, fps, profiles]


def _scored_table(storage, shard, ready: list[str], versions: dict, backbone) -> pl.DataFrame:
    """(id, tokens, a distilled score per target), chunk by chunk."""
    scorers = [
        distill.DistilledScorer.from_bytes(storage.read_bytes(*scorer_model(t, versions[t])))
        for t in ready
    ]
    parts = []
    for docs in iter_documents(shard):
        texts = docs["text"].to_list()
        scores = _score(scorers, backbone, texts)
        parts.append(
            pl.DataFrame({"id": docs["id"], "tokens": backbone.count_tokens(texts)}).hstack(
                [pl.Series(t, scores[:, i]) for i, t in enumerate(ready)]
            )
        )
    return pl.concat(parts, rechunk=True)


def _reranked_table(storage, shard, df: pl.DataFrame, footers: dict, backbone, how: Rerank):
    """The table with each target's candidates' exact NAG scores, against the profiles the
    scorers learnt from."""
    ready, profiles = sorted(footers), []
    for t in ready:
        profile, tfoot = load_profile(storage, t)
        if tfoot.version != footers[t].target_version:
            raise InputError(
                f"distilled_scorer[{t}] learnt from an older target_nag[{t}]: "
                "rescore once it has retrained"
            )
        profiles.append(profile)
    fp = footers[ready[0]].nag_fingerprint
    scores, facts = rerank.reranked(
        storage, shard, df["id"].to_list(), df.select(ready).to_numpy(), np.stack(profiles),
        how.backbone or backbone, how.settings, how.share, fp, how.extractor, how.progress,
    )  # fmt: skip
    return df.with_columns(pl.Series(t, scores[:, j]) for j, t in enumerate(ready)), facts


def _score(scorers, backbone: Backbone, texts: list[str]) -> np.ndarray:
    """(n, T) float32, batch by batch; scorers that share settings read each text once."""
    out = np.empty((len(texts), len(scorers)), dtype=np.float32)
    groups: dict = {}
    for j, s in enumerate(scorers):
        groups.setdefault((s.settings, s.max_tokens), []).append(j)
    for (_, max_tokens), cols in groups.items():
        merged = distill.merge([scorers[j] for j in cols])
        read = distill.hf_reader(backbone.tokenizer, max_tokens)
        for start in range(0, len(texts), SCORE_BATCH):
            batch = texts[start : start + SCORE_BATCH]
            out[start : start + len(batch), cols] = merged.score(read, batch)
    return out


def current_scorer_versions(storage: Storage, targets: Sequence[str]) -> dict[str, str | None]:
    """target -> the version of its scorer in force (None: none yet)."""
    return {t: (f.version if (f := ScorerFooter.read_json(storage, t)) else None) for t in targets}

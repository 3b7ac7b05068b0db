"""target_dataset and target_nag: a target set's examples, their NAGs and its profile."""

from __future__ import annotations

import numpy as np
import polars as pl

from nag_assets.nag import BackboneFacts, build_profile, concentration
from nag_assets.nag.layers import restrict_profile
from nag_assets.nag.profile import neuron_use
from nag_assets.pipeline.common import (
    STEP_CODE_VERSION,
    NagSettings,
    StepResult,
    nag_footer,
    nags_of,
    read_input,
    require,
)
from nag_assets.pipeline.extractor import Extractor, NagJob, extractor_for
from nag_assets.pipeline.impact import impact_baseline
from nag_assets.pipeline.layout import (
    TARGET_DATASET,
    TARGET_NAG,
    NagFooter,
    TargetDatasetFooter,
    is_current,
    profile_file,
    table,
)
from nag_assets.pipeline.stream import NagTally, write_nag_stream
from nag_assets.sources.benchmarks import BENCHMARK_PREFIX
from nag_assets.sources.chunks import plan_file
from nag_assets.sources.files import InputError, benchmark_target, read_target
from nag_assets.storage import Storage, check_key, digest

MIN_EXAMPLES = 5


def _source(storage: Storage, key: str) -> tuple[str, bytes | None, str]:
    """(file name or benchmark, its bytes or None, content version)."""
    found = read_input(storage, "targets", key)
    if found:
        name, data, sha = found
        return name, data, f"sha256:{sha}"
    if key.startswith(BENCHMARK_PREFIX):
        return key, None, f"benchmark:{key}"
    raise InputError(f"target {key!r}: no file under targets/ and not a {BENCHMARK_PREFIX}* name")


def target_dataset(
    storage: Storage, key: str, count_tokens, min_examples: int = MIN_EXAMPLES
) -> StepResult:
    """Normalize a target's examples to (id, text, tokens)."""
    name, data, source_version = _source(storage, key)
    version = digest("target_dataset", STEP_CODE_VERSION, source_version, min_examples)
    out = table(TARGET_DATASET, key)
    if is_current(storage, version, *out):
        return StepResult(version, True, {"source": name, "source_version": source_version})
    repaired: dict = {}
    df = benchmark_target(key) if data is None else read_target(data, name, key, repaired)
    df = df.select("id", "text").filter(pl.col("text").str.strip_chars() != "")
    df = df.with_columns(tokens=pl.Series(count_tokens(df["text"].to_list()), dtype=pl.Int64))
    df = df.filter(pl.col("tokens") > 0)
    if df.height < min_examples:
        raise InputError(
            f"target {key!r} ({name}): {df.height} usable examples, at least {min_examples} needed"
        )
    storage.write_parquet(df, *out, meta=TargetDatasetFooter(version, name).to_meta())
    return StepResult(
        version,
        False,
        {
            "source": name,
            "source_version": source_version,
            "examples": df.height,
            "tokens": int(df["tokens"].sum()),
            "control_character_rows": repaired.get("control_character_rows", 0),
        },
    )


def target_nag(
    storage: Storage,
    key: str,
    backbone: BackboneFacts,
    settings: NagSettings,
    progress=None,
    extractor: Extractor | None = None,
) -> StepResult:
    """Each example's NAG (parquet, streamed chunk by chunk like a shard's) and the target
    profile (.npy, L x d_ff)."""
    check_key(key)
    dataset = require(
        TargetDatasetFooter.read(storage, TARGET_DATASET, key), f"target_dataset[{key}]"
    )
    baseline, fp = impact_baseline(storage, backbone, settings, progress)
    subset = settings.layer_subset(backbone)
    scored = [] if subset is None else ["layers", subset]  # all layers: versions as before
    version = digest("target_nag", STEP_CODE_VERSION, dataset.version, fp, *scored)
    out = table(TARGET_NAG, key)
    footer = nag_footer(version, backbone, settings, fp, layer_subset=subset)
    skipped = is_current(storage, version, *out)
    if skipped:
        nag_rows = storage.read_parquet(*out)
        nags = nags_of(nag_rows, footer)
        profile, examples, use = (
            build_profile(nags, backbone.d_ff),
            nag_rows.height,
            neuron_use(nags),
        )
    else:
        folder, name = table(TARGET_DATASET, key)
        plan = plan_file(storage, f"{folder}/{name}", name, key, settings.chunk_rows)
        job = NagJob(settings, backbone.fingerprint, baseline)
        chunks = extractor_for(backbone, extractor).run(job, plan, progress)
        tally = NagTally(backbone.num_layers, settings.top_k, backbone.d_ff)
        write_nag_stream(storage, out, footer.to_meta(), chunks, plan, tally)
        profile, examples, use = tally.profile(), tally.documents, tally.neuron_use()
    profile = restrict_profile(profile, subset)
    _keep_profile(storage, key, profile.astype("float32"))
    return StepResult(
        version,
        skipped,
        {
            "examples": examples,
            "examples_extracted": 0 if skipped else examples,
            "nag_fingerprint": fp,
            "concentration": concentration(profile, settings.top_k),
            "impact": settings.impact,
            "layers_scored": subset or "all",
            **use,
            "profile": profile,
        },
    )


def _keep_profile(storage: Storage, key: str, profile: np.ndarray) -> None:
    """The .npy beside the NAG table, written after it (the table is streamed), so a run
    killed in between leaves a stale one: a later run that skips rewrites it."""
    try:
        if np.array_equal(storage.read_npy(*profile_file(key)), profile):
            return
    except (FileNotFoundError, ValueError):
        pass
    storage.write_npy(profile, *profile_file(key))


def load_profile(storage: Storage, key: str) -> tuple[np.ndarray, NagFooter]:
    """(profile, footer) of a target, rebuilt from its stored NAGs (restricted to the layers
    its footer scores)."""
    footer = require(NagFooter.read(storage, TARGET_NAG, key), f"target_nag[{key}]")
    nag_rows = storage.read_parquet(*table(TARGET_NAG, key))
    profile = build_profile(nags_of(nag_rows, footer), footer.d_ff)
    return restrict_profile(profile, footer.layer_subset), footer

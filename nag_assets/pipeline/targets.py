"""target_dataset and target_nag: a target set's examples, their NAGs and its profile."""

from __future__ import annotations

import polars as pl

from nag_assets.nag import Backbone, build_profile, concentration
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
from nag_assets.sources.benchmarks import BENCHMARK_PREFIX
from nag_assets.sources.files import InputError, benchmark_target, read_target
from nag_assets.storage import Storage, check_key, digest

DATASET = "assets/target_dataset"
NAG = "assets/target_nag"
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
    out = (DATASET, f"{key}.parquet")
    if (storage.read_meta(*out) or {}).get("version") == version:
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
    storage.write_parquet(df, *out, meta={"version": version, "source": name})
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
    storage: Storage, key: str, backbone: Backbone, settings: NagSettings, progress=None
) -> StepResult:
    """Each example's NAG (parquet) and the target profile (.npy, L x d_ff)."""
    check_key(key)
    ds_meta = require(storage.read_meta(DATASET, f"{key}.parquet"), f"target_dataset[{key}]")
    baseline, fp = impact_baseline(storage, backbone, settings, progress)
    version = digest("target_nag", STEP_CODE_VERSION, ds_meta["version"], fp)
    out = (NAG, f"{key}.parquet")
    skipped = (storage.read_meta(*out) or {}).get("version") == version
    if skipped:
        table = storage.read_parquet(*out)
    else:
        ds = storage.read_parquet(DATASET, f"{key}.parquet")
        table = nag_table(backbone, ds["id"], ds["text"].to_list(), settings, progress, baseline)
    meta = nag_meta(version, backbone, settings, fp)
    nags = nags_of(table, meta)
    profile = build_profile(nags, backbone.d_ff)
    if not skipped:
        storage.write_npy(profile.astype("float32"), NAG, f"{key}.profile.npy")
        storage.write_parquet(table, *out, meta=meta)
    return StepResult(
        version,
        skipped,
        {
            "examples": table.height,
            "examples_extracted": 0 if skipped else table.height,
            "nag_fingerprint": fp,
            "concentration": concentration(profile, settings.top_k),
            "impact": settings.impact,
            **neuron_use(nags),
            "profile": profile,
        },
    )


def load_profile(storage: Storage, key: str) -> tuple:
    """(profile, meta) of a target, rebuilt from its stored NAGs."""
    check_key(key)
    meta = require(storage.read_meta(NAG, f"{key}.parquet"), f"target_nag[{key}]")
    table = storage.read_parquet(NAG, f"{key}.parquet")
    return build_profile(nags_of(table, meta), meta["d_ff"]), meta

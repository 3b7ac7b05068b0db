"""The blocks of the selection spec, one per YAML key: where the data lies (storage, pool,
targets), how NAGs are made (backbone) and where (executor), what is selected (mixture), how
shards are scored (distill) and the on-demand checks."""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import field_validator

from nag_assets.nag.extract import BATCH_SIZE, MAX_TOKENS
from nag_assets.nag.layers import LayerSpecError, parse_layers
from nag_assets.pipeline.common import DEFAULT_PRESET, PRESETS
from nag_assets.settings import FromEnv, Section, SettingsError, setting
from nag_assets.sources.chunks import CHUNK_ROWS

PresetName = Literal[tuple(PRESETS)]  # type: ignore[valid-type]
DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def default_root() -> str:
    """`demo_root/` in the project checkout (or the working directory)."""
    checkout = Path(__file__).resolve().parents[2]
    base = checkout if (checkout / "workspace.yaml").exists() else Path.cwd()
    return str(base / "demo_root")


class StorageSettings(Section):
    """Where this selection writes, and where NAGs are kept for every selection that shares
    them."""

    KEY: ClassVar[str] = "storage"
    root: str | FromEnv = setting(
        None,
        "This selection's outputs (assets/, selected_mixture/): a local folder (relative: to "
        "where Dagster runs) or s3://bucket/prefix. One root per selection.",
        env="NAG_ASSETS_ROOT",
        deployment=True,
        default_factory=default_root,
    )
    nag_store: str | FromEnv | None = setting(
        None,
        "Where NAG tables and impact baselines are kept, by the pool file's content and the NAG "
        "settings: selections that name the same store over the same pool extract it once. "
        "Unset: <root>/nag_store.",
        env="NAG_STORE",
        deployment=True,
    )
    endpoint_url: str | FromEnv | None = setting(
        None, "S3 endpoint (unset: AWS_ENDPOINT_URL, else AWS's own).", deployment=True
    )
    profile: str | FromEnv | None = setting(
        None,
        "AWS profile for S3 credentials (unset: AWS_PROFILE, else the chain).",
        deployment=True,
    )
    region: str | FromEnv | None = setting(
        None, "S3 region (unset: AWS_DEFAULT_REGION).", deployment=True
    )


class PoolSettings(Section):
    """The candidate documents, read where they lie and never written."""

    KEY: ClassVar[str] = "pool"
    path: str | FromEnv = setting(
        "",
        "The pool: a local folder or s3:// prefix, any layout (files at any depth), read-only. "
        "Empty: <root>/shards.",
        env="NAG_POOL",
        deployment=True,
    )
    include: list[str] = setting(
        [],
        "fnmatch patterns of the files to use, on their path under `path` ('*' also matches "
        "'/'), e.g. ['CC-MAIN-2024-10/*.parquet']. Empty: every parquet, JSONL(.gz) file.",
        env="NAG_POOL_INCLUDE",
    )


class TargetsSettings(Section):
    """The target sets: files in a folder, and built-in benchmarks."""

    KEY: ClassVar[str] = "targets"
    path: str | FromEnv = setting(
        "",
        "Folder of target files (parquet or JSONL with `text`, or a JSON benchmark spec), "
        "local or s3://. Empty: <root>/targets.",
        env="NAG_TARGETS",
        deployment=True,
    )
    benchmarks: list[str] = setting(
        [],
        "Built-in benchmarks to target (each becomes the target bench__<name>), e.g. "
        "[arc_easy, hellaswag, mmlu_high_school_physics].",
        env="NAG_BENCHMARKS",
    )

    @field_validator("benchmarks")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        if not names:
            return names
        from nag_assets.sources.benchmarks import list_benchmarks

        known = set(list_benchmarks())
        if unknown := [n for n in names if n not in known]:
            raise ValueError(f"unknown benchmarks {unknown}; choose from {sorted(known)}")
        return names


class BackboneSettings(Section):
    """The causal LM that turns texts into NAGs, and the settings that shape the NAGs."""

    KEY: ClassVar[str] = "backbone"
    model: str = setting("embedded", "'embedded' (SmolLM2-135M), a local folder or HF name.",
                         env="NAG_MODEL")  # fmt: skip
    device: str = setting("auto", "auto | cpu | cuda | cuda:N (auto: CUDA when present).",
                          env="NAG_DEVICE")  # fmt: skip
    dtype: Literal["auto", "fp32", "bf16", "fp16", "float32", "bfloat16", "float16"] | None = (
        setting(
            None,
            "Unset or auto: bf16 on CUDA and on a CPU with native bf16 (AVX512-BF16, AMX), fp32 "
            "elsewhere; fp32 keeps NAGs made before bf16 became the default on such CPUs.",
            env="NAG_DTYPE",
        )
    )
    preset: PresetName = setting(  # type: ignore[valid-type]
        DEFAULT_PRESET,
        "tuned (normalized impact, the last third of the layers: the best measured) | paper "
        "(the paper's exact method); the settings below, when set, override it.",
        env="NAG_PRESET",
    )
    top_k: int | None = setting(None, "Neurons kept per layer (preset: 5).", env="NAG_TOP_K", ge=1)
    max_tokens: int = setting(MAX_TOKENS, "Tokens of each text the NAG reads.",
                              env="NAG_MAX_TOKENS", ge=1)  # fmt: skip
    batch_size: int = setting(BATCH_SIZE, "Texts per forward pass (speed only).",
                              env="NAG_BATCH_SIZE", ge=1)  # fmt: skip
    chunk_rows: int = setting(
        CHUNK_ROWS,
        "Documents of a file read, tokenized and extracted at a time, and the unit Ray actors "
        "share (memory and speed only, never the NAGs).",
        env="NAG_CHUNK_ROWS",
        ge=1,
    )
    impact: Literal["raw", "normalized"] | None = setting(
        None,
        "raw (the paper) | normalized: impact over the neuron's mean on impact_sample "
        "(preset: tuned -> normalized).",
        env="NAG_IMPACT",
    )
    impact_sample: str = setting(
        "embedded",
        "normalized impact's sample: 'embedded' (256 Wikipedia leads) or a documents file, "
        "relative to the root, or a URL.",
        env="NAG_IMPACT_SAMPLE",
    )
    layers: str | None = setting(
        None,
        "Layers scored: all (the paper) | last | last:N | from:F | e.g. 20-29 (preset: tuned "
        "-> from:0.67).",
        env="NAG_LAYERS",
    )
    neurons: Literal["up_proj", "down_proj"] | None = setting(
        None, "Neuron type: up_proj (the paper) | down_proj.", env="NAG_NEURONS"
    )
    compile: bool = setting(
        False,
        "torch.compile the Llama family's trunk: 1.1-1.4x on a CPU after minutes of "
        "compilation per process; its NAGs differ slightly, so turning it on re-extracts.",
        env="NAG_COMPILE",
    )
    slots: int | None = setting(
        None,
        "Backbone steps at once on one machine, whatever the Dagster pool allows (unset: one "
        "per GPU, or 1 without GPUs). Ray steps do not take a slot.",
        env="NAG_BACKBONE_SLOTS",
        ge=1,
    )

    @field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        if not DEVICE.match(device):
            raise ValueError(f"device {device!r} must be auto, cpu, mps, cuda or cuda:N")
        return device

    @field_validator("layers")
    @classmethod
    def _layers(cls, layers: str | None) -> str | None:
        if layers is not None:
            try:
                parse_layers(layers, 1 << 16)  # the syntax; the range once the model loads
            except LayerSpecError as e:
                raise ValueError(str(e).replace(" outside the backbone's 0-65535", "")) from e
        return layers


class ExecutorSettings(Section):
    """Where the backbone passes run: in the step's process, or on a Ray cluster's actors that
    load the backbone once and keep it across chunks, shards and runs."""

    KEY: ClassVar[str] = "executor"
    executor: Literal["local", "ray"] = setting(
        "local", "local (this process) | ray (a cluster).", env="NAG_EXECUTOR"
    )
    ray_address: str | FromEnv | None = setting(
        None,
        "Ray cluster, e.g. 10.0.0.5:6379 or ray://head:10001 (unset: the cluster started on "
        "this machine with `ray start --head`).",
        env="RAY_ADDRESS",
        deployment=True,
    )
    actors: int = setting(0, "Backbone actors (0: one per GPU, or per cpus_per_actor CPUs).",
                          env="NAG_RAY_ACTORS", ge=0)  # fmt: skip
    gpus_per_actor: float | None = setting(
        None, "GPUs per actor (unset: 1 if the cluster has GPUs, else 0).",
        env="NAG_RAY_GPUS_PER_ACTOR", ge=0,
    )  # fmt: skip
    cpus_per_actor: float = setting(1.0, "CPUs (and torch threads) per actor.",
                                    env="NAG_RAY_CPUS_PER_ACTOR", ge=0)  # fmt: skip
    max_retries: int = setting(3, "Restarts of a dead worker, and retries of its chunks, per run.",
                               env="NAG_RAY_MAX_RETRIES", ge=0)  # fmt: skip
    restart_wait_s: float = setting(
        120.0,
        "With no actor up (its node lost), how long a step waits for one to be back before it "
        "fails, naming the node and the shard; cover the backbone's load time.",
        env="NAG_RAY_RESTART_WAIT_S",
        gt=0,
    )

    def address(self) -> str | None:
        """The cluster's address as a run sees it (the resource reads `{env: NAME}` then)."""
        if isinstance(self.ray_address, FromEnv):
            raise SettingsError(f"executor.ray_address: ${self.ray_address.env} is read in a run")
        return self.ray_address


from nag_assets.settings.selection import (  # noqa: E402
    ChecksSettings,
    DistilledScorerSettings,
    MixtureSettings,
)

__all__ = [
    "BackboneSettings",
    "ChecksSettings",
    "DistilledScorerSettings",
    "ExecutorSettings",
    "MixtureSettings",
    "PoolSettings",
    "StorageSettings",
    "TargetsSettings",
]

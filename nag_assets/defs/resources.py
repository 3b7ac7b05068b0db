"""Resources: the backbone (GPU-aware, loaded once per process) and the storage root."""

import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from nag_assets.executors import ExecutorSettings
from nag_assets.nag import Backbone
from nag_assets.nag.adapters import UP
from nag_assets.nag.backbone import BackboneError, resolve_device, resolve_dtype
from nag_assets.nag.extract import BATCH_SIZE, MAX_TOKENS
from nag_assets.nag.layers import ALL as ALL_LAYERS
from nag_assets.pipeline.common import DEFAULT_PRESET, PRESETS, NagSettings
from nag_assets.pipeline.extractor import BackboneSpec
from nag_assets.sources.chunks import CHUNK_ROWS
from nag_assets.sources.files import InputError
from nag_assets.storage import Storage, digest


def default_root() -> str:
    """NAG_ASSETS_ROOT, else `demo_root/` in the project checkout (or the working directory)."""
    if os.environ.get("NAG_ASSETS_ROOT"):
        return os.environ["NAG_ASSETS_ROOT"]
    checkout = Path(__file__).resolve().parents[2]
    base = checkout if (checkout / "workspace.yaml").exists() else Path.cwd()
    return str(base / "demo_root")


def storage_kind(root: str) -> str:
    """The kind badge of the assets that read or write the root: "s3" or "file". A root given
    as dg.EnvVar is looked up now, only for the badge (the resource reads it at run time)."""
    if isinstance(root, dg.EnvVar):
        root = root.get_value("") or ""
    return "s3" if root.startswith("s3://") else "file"


class StorageResource(dg.ConfigurableResource):
    """One root, a local folder or s3://bucket/prefix, for inputs and outputs."""

    root: str = Field(default_factory=default_root, description="Local path or s3://bucket/prefix")
    endpoint_url: str | None = Field(
        default=None, description="S3 endpoint (else AWS_ENDPOINT_URL or AWS's default)"
    )
    profile: str | None = Field(
        default=None, description="AWS profile for S3 credentials (else AWS_PROFILE / the chain)"
    )
    region: str | None = Field(default=None, description="S3 region (else AWS_DEFAULT_REGION)")

    def storage(self) -> Storage:
        """Credentials are never config values: they come from the AWS chain (environment,
        profile, instance role), which botocore reads, as it reads AWS_ENDPOINT_URL."""
        options: dict = {}
        if self.root.startswith("s3://"):
            client = {"endpoint_url": self.endpoint_url, "region_name": self.region}
            if client := {k: v for k, v in client.items() if v}:
                options["client_kwargs"] = client
            if self.profile:
                options["profile"] = self.profile
        return Storage(self.root, options)


class BackboneResource(dg.ConfigurableResource):
    """The causal LM that turns texts into NAGs, and the settings that shape the NAGs."""

    model: str = Field(default="embedded", description="'embedded', a local folder or HF name")
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N")
    dtype: str | None = Field(
        default=None,
        description="None or auto: bf16 on CUDA and on a CPU with native bf16 (AVX512-BF16, "
        "AMX), fp32 on other CPUs; fp32 | bf16 | fp16 to fix it (fp32 keeps NAGs made before "
        "bf16 became the default on such CPUs)",
    )
    preset: str = Field(
        default=DEFAULT_PRESET,
        description="tuned (the best measured: normalized impact, last third of the layers) | "
        "paper (the paper's exact method); the settings below, when set, override it",
    )
    top_k: int | None = Field(default=None, description="neurons kept per layer (preset: 5)")
    max_tokens: int = Field(default=MAX_TOKENS, description="tokens of each text the NAG looks at")
    batch_size: int = Field(default=BATCH_SIZE, description="texts per forward pass (speed only)")
    chunk_rows: int = Field(
        default=CHUNK_ROWS,
        description="documents of a shard read, tokenized and extracted at a time, and the unit "
        "Ray actors share (memory and speed only, never the NAG table)",
    )
    impact: str | None = Field(
        default=None,
        description="raw (the paper) | normalized: impact / the neuron's mean over impact_sample",
    )
    impact_sample: str = Field(
        default="embedded",
        description="normalized impact's sample: 'embedded' (Wikipedia leads) or a documents "
        "file, relative to the storage root (e.g. shards/wiki-000.parquet) or a URL",
    )
    layers: str | None = Field(
        default=None,
        description="layers scored: all (the paper) | last | last:N | from:F | e.g. 20-29",
    )
    neurons: str | None = Field(
        default=None, description="neuron type: up_proj (the paper) | down_proj"
    )
    compile: bool = Field(
        default=False,
        description="extract through the Llama family's trunk compiled by torch.compile: "
        "1.1-1.4x on a CPU after minutes of compilation per process (pays off in long-lived "
        "processes, e.g. Ray actors); its NAGs differ slightly, so turning it on re-extracts",
    )

    @classmethod
    def from_env(cls, **given) -> "BackboneResource":
        """Settings from NAG_MODEL, NAG_DEVICE, NAG_DTYPE, NAG_PRESET, NAG_TOP_K,
        NAG_MAX_TOKENS, NAG_BATCH_SIZE, NAG_CHUNK_ROWS, NAG_IMPACT, NAG_IMPACT_SAMPLE,
        NAG_LAYERS, NAG_NEURONS, NAG_COMPILE; the settings `given` (a selection's own, from
        its component config) take precedence over the environment."""
        env = os.environ.get
        settings = dict(
            model=env("NAG_MODEL", "embedded"),
            device=env("NAG_DEVICE", "auto"),
            dtype=env("NAG_DTYPE") or None,
            preset=env("NAG_PRESET", DEFAULT_PRESET),
            top_k=int(env("NAG_TOP_K")) if env("NAG_TOP_K") else None,
            max_tokens=int(env("NAG_MAX_TOKENS", MAX_TOKENS)),
            batch_size=int(env("NAG_BATCH_SIZE", BATCH_SIZE)),
            chunk_rows=int(env("NAG_CHUNK_ROWS", CHUNK_ROWS)),
            impact=env("NAG_IMPACT") or None,
            impact_sample=env("NAG_IMPACT_SAMPLE", "embedded"),
            layers=env("NAG_LAYERS") or None,
            neurons=env("NAG_NEURONS") or None,
            compile=env_flag("NAG_COMPILE"),
        )
        return cls(**(settings | given))

    def spec(self) -> BackboneSpec:
        """The backbone as a worker elsewhere (a Ray actor) would load it (the seam)."""
        return BackboneSpec(self.model, self.device, self.dtype, self.neuron_type(), self.compile)

    def load(self) -> Backbone:
        """Once per process: a step (or an in-process run) loads the model once."""
        return self.spec().load()

    def neuron_type(self) -> str:
        return self.neurons or PRESETS[self.settings_preset()]["neurons"]

    def settings_preset(self) -> str:
        if self.preset not in PRESETS:
            raise InputError(f"preset {self.preset!r} must be one of {sorted(PRESETS)}")
        return self.preset

    def settings(self) -> NagSettings:
        return NagSettings.preset(
            self.settings_preset(),
            top_k=self.top_k,
            max_tokens=self.max_tokens,
            batch_size=self.batch_size,
            chunk_rows=self.chunk_rows,
            impact=self.impact,
            impact_sample=self.impact_sample,
            layers=self.layers,
        )

    def code_version(self) -> str:
        """Changes with every setting that changes a NAG or its score, without loading the
        model (the paper's settings give the code version they always had)."""
        if deferred := [name for name in NAG_SHAPING if isinstance(getattr(self, name), EnvVars)]:
            raise ValueError(
                f"backbone settings {deferred} are given as dg.EnvVar, read only at run time, "
                "but they shape every NAG and so its code version, needed when the definitions "
                "load: give them as values (in a component's YAML: {{ env.NAG_MODEL }})"
            )
        s = self.settings()
        normalized = [s.impact, s.impact_sample] if s.impact != "raw" else []
        beyond = [s.layers] if s.layers != ALL_LAYERS else []
        beyond += [self.neuron_type()] if self.neuron_type() != UP else []
        beyond += ["compiled"] if self.compile else []  # compiled NAGs are their own
        return digest(self.model, self.dtype_in_use(), s.top_k, s.max_tokens, *normalized, *beyond)

    def dtype_in_use(self) -> str:
        """What `dtype` resolves to on this machine (auto: bf16 where the CPU has it), so the
        UI marks NAGs stale when the default flips; the setting itself if it cannot resolve."""
        try:
            return str(resolve_dtype(self.dtype, resolve_device(self.device, claim=False)))
        except BackboneError:
            return str(self.dtype)


FLAGS = {"1": True, "true": True, "yes": True, "on": True}
FLAGS |= {"0": False, "false": False, "no": False, "off": False, "": False}


def env_flag(name: str) -> bool:
    """A boolean environment variable (unset or empty: False), a bad value named."""
    value = os.environ.get(name, "")
    if value.strip().lower() not in FLAGS:
        raise InputError(f"{name}={value!r} is not a boolean: use 1 or 0 (true/false, yes/no)")
    return FLAGS[value.strip().lower()]


# The settings that change a NAG or its code version (the device picks the dtype in use);
# the others may be dg.EnvVar.
NAG_SHAPING = (
    "model",
    "device",
    "dtype",
    "preset",
    "top_k",
    "max_tokens",
    "impact",
    "impact_sample",
    "layers",
    "neurons",
    "compile",
)
EnvVars = (dg.EnvVar, type(dg.EnvVar.int("_")))


class ExecutorResource(dg.ConfigurableResource):
    """Where the backbone pass of shard_nag runs: in the step's process, or on Ray actors
    that each load the backbone once and keep it across chunks, shards and runs."""

    executor: str = Field(default="local", description="local (this process) | ray (a cluster)")
    ray_address: str | None = Field(
        default=None,
        description="Ray cluster, e.g. 10.0.0.5:6379 or ray://head:10001 (None: RAY_ADDRESS, "
        "else the cluster of `ray start --head` on this machine)",
    )
    actors: int = Field(
        default=0, description="backbone actors (0: one per GPU, or per cpus_per_actor CPUs)"
    )
    gpus_per_actor: float | None = Field(
        default=None, description="GPUs each actor gets (None: 1 if the cluster has GPUs, else 0)"
    )
    cpus_per_actor: float = Field(default=1.0, description="CPUs (and torch threads) per actor")
    max_retries: int = Field(
        default=3, description="restarts of a dead worker, and retries of its chunks, per run"
    )

    @classmethod
    def from_env(cls, **given) -> "ExecutorResource":
        """Settings from NAG_EXECUTOR, RAY_ADDRESS, NAG_RAY_ACTORS, NAG_RAY_GPUS_PER_ACTOR,
        NAG_RAY_CPUS_PER_ACTOR, NAG_RAY_MAX_RETRIES; the settings `given` (a selection's own,
        from its component config) take precedence over the environment."""
        env = os.environ.get
        gpus = env("NAG_RAY_GPUS_PER_ACTOR")
        settings = dict(
            executor=env("NAG_EXECUTOR", "local"),
            ray_address=env("RAY_ADDRESS") or None,
            actors=int(env("NAG_RAY_ACTORS", "0")),
            gpus_per_actor=float(gpus) if gpus else None,
            cpus_per_actor=float(env("NAG_RAY_CPUS_PER_ACTOR", "1")),
            max_retries=int(env("NAG_RAY_MAX_RETRIES", "3")),
        )
        return cls(**(settings | given))

    def settings(self) -> ExecutorSettings:
        return ExecutorSettings(
            self.executor,
            self.ray_address,
            self.actors,
            self.gpus_per_actor,
            self.cpus_per_actor,
            self.max_retries,
        )

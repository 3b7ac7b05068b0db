"""Resources: the storage root (and where the pool and targets lie), the backbone (GPU-aware,
loaded once per process) and the executor of the backbone passes. Their fields are generated
from the selection spec's blocks (`nag_assets.settings`), where each is declared once."""

from typing import Any, Literal, get_args, get_origin

import dagster as dg
from pydantic import create_model

from nag_assets.nag import Backbone
from nag_assets.nag.adapters import UP
from nag_assets.nag.backbone import BackboneError, resolve_device, resolve_dtype
from nag_assets.nag.layers import ALL as ALL_LAYERS
from nag_assets.pipeline.common import PRESETS, NagSettings
from nag_assets.pipeline.extractor import BackboneSpec
from nag_assets.settings import (
    BackboneSettings,
    ExecutorSettings,
    FromEnv,
    PoolSettings,
    Section,
    StorageSettings,
    TargetsSettings,
)
from nag_assets.settings import is_deployment as _is_deployment
from nag_assets.storage import Source, Storage, digest


def fields_of(block: type[Section], rename: dict | None = None) -> dict:
    """A block's settings as resource fields: the same names (or `rename`d), types, defaults
    and descriptions; per-deployment ones as plain strings, which may be dg.EnvVar."""
    out: dict[str, Any] = {}
    for name, info in block.model_fields.items():
        annotation = config_type(info.annotation)
        if _is_deployment(info):
            optional = info.default is None and info.default_factory is None
            annotation = (str | None) if optional else str
        field = info._copy()
        field.json_schema_extra = None
        out[(rename or {}).get(name, name)] = (annotation, field)
    return out


def config_type(annotation: Any) -> Any:
    """The annotation as Dagster's config takes it: a choice (Literal) becomes str, which may
    be unset when the choice may (the spec's model checks the value)."""
    args = get_args(annotation)
    if get_origin(annotation) is Literal:
        return str
    if get_origin(annotation) is list and get_origin(args[0]) is Literal:
        return list[str]
    if any(get_origin(a) is Literal for a in args):
        return str | None
    return annotation


def storage_kind(root: str) -> str:
    """The kind badge of the assets that read or write the root: "s3" or "file". A root given
    as dg.EnvVar is looked up now, only for the badge (the resource reads it at run time)."""
    if isinstance(root, dg.EnvVar):
        root = root.get_value("") or ""
    return "s3" if root.startswith("s3://") else "file"


_StorageFields = create_model(
    "_StorageFields",
    __base__=dg.ConfigurableResource,
    **fields_of(StorageSettings),
    **fields_of(PoolSettings, rename={"path": "pool", "include": "pool_include"}),
    **fields_of(TargetsSettings, rename={"path": "targets", "benchmarks": "benchmarks"}),
)


class StorageResource(_StorageFields):  # type: ignore[misc,valid-type]
    """One root, a local folder or s3://bucket/prefix, for outputs; the pool and the targets
    where they lie (under the root unless set); the NAG store shared between selections."""

    def storage(self) -> Storage:
        """Credentials are never config values: they come from the AWS chain (environment,
        profile, instance role), which botocore reads, as it reads AWS_ENDPOINT_URL."""
        options = self.options(self.root)
        return Storage(
            self.root,
            options,
            sources={
                "shards": Source(self.pool, tuple(self.pool_include), self.options(self.pool)),
                "targets": Source(self.targets, (), self.options(self.targets)),
                "nag_store": Source(self.nag_store or "", (), self.options(self.nag_store)),
            },
        )

    def options(self, url: str | None) -> dict:
        options: dict = {}
        if url and url.startswith("s3://"):
            client = {"endpoint_url": self.endpoint_url, "region_name": self.region}
            if client := {k: v for k, v in client.items() if v}:
                options["client_kwargs"] = client
            if self.profile:
                options["profile"] = self.profile
        return options

    @classmethod
    def of(cls, storage: StorageSettings, pool: PoolSettings, targets: TargetsSettings):
        """The resource of a spec's storage, pool and targets blocks."""
        given = {
            **resource_values(storage),
            **resource_values(pool, {"path": "pool", "include": "pool_include"}),
            **resource_values(targets, {"path": "targets"}),
        }
        return cls(**given)


def resource_values(block: Section, rename: dict | None = None) -> dict:
    """A block's values as resource arguments: `{env: NAME}` becomes dg.EnvVar."""
    out = {}
    for name in type(block).model_fields:
        value = getattr(block, name)
        if isinstance(value, FromEnv):
            value = dg.EnvVar(value.env)
        out[(rename or {}).get(name, name)] = value
    return out


_BackboneFields = create_model(
    "_BackboneFields", __base__=dg.ConfigurableResource, **fields_of(BackboneSettings)
)


class BackboneResource(_BackboneFields):  # type: ignore[misc,valid-type]
    """The causal LM that turns texts into NAGs, and the settings that shape the NAGs."""

    @classmethod
    def from_env(cls, **given: Any) -> "BackboneResource":
        """The `given` settings over the NAG_* environment over the defaults (the spec's rule)."""
        return cls(**BackboneSettings.from_env(**given).model_dump())

    def block(self) -> BackboneSettings:
        """The settings, validated as the spec validates them."""
        return BackboneSettings(**{k: getattr(self, k) for k in BackboneSettings.model_fields})

    def spec(self) -> BackboneSpec:
        """The backbone as a worker elsewhere (a Ray actor) would load it (the seam)."""
        return BackboneSpec(self.model, self.device, self.dtype, self.neuron_type(), self.compile)

    def load(self) -> Backbone:
        """Once per process: a step (or an in-process run) loads the model once."""
        return self.spec().load()

    def neuron_type(self) -> str:
        return self.neurons or PRESETS[self.preset]["neurons"]

    def settings(self) -> NagSettings:
        return NagSettings.preset(
            self.preset,
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


_ExecutorFields = create_model(
    "_ExecutorFields", __base__=dg.ConfigurableResource, **fields_of(ExecutorSettings)
)


class ExecutorResource(_ExecutorFields):  # type: ignore[misc,valid-type]
    """Where the backbone pass of shard_nag runs: in the step's process, or on Ray actors
    that each load the backbone once and keep it across chunks, shards and runs."""

    @classmethod
    def from_env(cls, **given: Any) -> "ExecutorResource":
        """The `given` settings over NAG_EXECUTOR, RAY_ADDRESS, NAG_RAY_* over the defaults."""
        return cls(**resource_values(ExecutorSettings.from_env(**given)))

    def settings(self) -> ExecutorSettings:
        return ExecutorSettings(**{k: getattr(self, k) for k in ExecutorSettings.model_fields})

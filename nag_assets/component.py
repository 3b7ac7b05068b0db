"""NagSelection: the whole selection graph as a Dagster component, for a team's own `dg`
project (`dg scaffold defs nag_assets.NagSelection <path>`). Each instance names its own
storage root, backbone, budget and rankers; its `name` prefixes every asset key, partition
set, sensor, group, pool and resource key, so several selections share one code location and
one instance. This repository's own code location (definitions.py) is the unnamed instance."""

from __future__ import annotations

import re
import textwrap
from typing import Any

import dagster as dg
from pydantic import BaseModel, Field, create_model

from nag_assets.defs.checks import ChecksConfig
from nag_assets.defs.distilled import DistillConfig
from nag_assets.defs.mixture import MixtureConfig
from nag_assets.defs.resources import BackboneResource, ExecutorResource, StorageResource
from nag_assets.defs.selection import selection_defs


class FromEnv(dg.Model):
    """`{env: NAME}`: read the variable at run time (dg.EnvVar): not shown in the UI, and it
    may differ per deployment. For a value needed when the definitions load, write
    `"{{ env.NAME }}"` instead."""

    env: str = Field(description="environment variable name")


def _settings_model(resource: type[dg.ConfigurableResource], name: str):
    """A model of the resource's settings, each optional (unset: the environment's value or
    the resource's default) and each either a value or `{env: NAME}` (float and bool settings:
    a value only, since dg.EnvVar has no such form; their environment fallback still applies)."""
    fields: dict[str, Any] = {
        field: (
            info.annotation
            | (None if {float, bool} & {*_types(info.annotation)} else FromEnv)
            | None,
            Field(default=None, description=info.description),
        )
        for field, info in resource.model_fields.items()
    }
    return create_model(name, __base__=dg.Model, **fields)


def _types(annotation: Any) -> tuple:
    return getattr(annotation, "__args__", (annotation,))


StorageSettings = _settings_model(StorageResource, "StorageSettings")
BackboneSettings = _settings_model(BackboneResource, "BackboneSettings")
# Not nag_assets.executors.ExecutorSettings (the resolved record): the YAML's, each optional.
ExecutorOptions = _settings_model(ExecutorResource, "ExecutorOptions")


def _given(settings: BaseModel) -> dict[str, Any]:
    """The settings set in the YAML, `{env: NAME}` as dg.EnvVar (int fields: EnvVar.int)."""
    out = {}
    for name, value in settings:
        if value is None:
            continue
        if isinstance(value, FromEnv):
            ann = settings.model_fields[name].annotation
            is_int = int in _types(ann)
            value = dg.EnvVar.int(value.env) if is_int else dg.EnvVar(value.env)
        out[name] = value
    return out


class NagScaffoldParams(BaseModel):
    """`dg scaffold defs nag_assets.NagSelection PATH --name code --root s3://bucket/code`."""

    name: str | None = Field(default=None, description="selection name (default: PATH's folder)")
    root: str | None = Field(default=None, description="storage root (local folder or s3://)")
    model: str | None = Field(default=None, description="backbone ('embedded', folder, HF name)")


class NagScaffolder(dg.Scaffolder[NagScaffoldParams]):
    """Writes a commented defs.yaml naming every setting a user chooses."""

    @classmethod
    def get_scaffold_params(cls) -> type[NagScaffoldParams]:
        return NagScaffoldParams

    def scaffold(self, request: dg.ScaffoldRequest[NagScaffoldParams]) -> None:
        params = request.params or NagScaffoldParams()
        folder = re.sub(r"[^a-z0-9_]", "_", request.target_path.name.lower()).strip("_")
        name = params.name or (folder if folder[:1].isalpha() else f"nag_{folder}")
        root = params.root or f"selections/{name}"
        request.target_path.mkdir(parents=True, exist_ok=True)
        (request.target_path / "defs.yaml").write_text(
            DEFS_YAML.format(
                type=request.type_name, name=name, root=root, model=params.model or "embedded"
            )
        )


DEFS_YAML = textwrap.dedent(
    """\
    type: {type}
    attributes:
      # Prefixes every asset key ({name}/selected_mixture), partition set ({name}_targets,
      # {name}_shards), sensor ({name}_pool_sensor, {name}_nag_automation) and the pool of
      # the backbone steps ({name}_backbone). Unique per Dagster instance.
      name: {name}
      storage:
        # Inputs (targets/, shards/) and outputs (assets/) of this selection; a local folder
        # (relative: to where Dagster runs) or s3://bucket/prefix. One root per selection.
        root: {root}
        # endpoint_url: {{env: AWS_ENDPOINT_URL}}   # {{env: NAME}}: read at run time
      backbone:
        # Unset settings fall back to the NAG_* environment variables, then the defaults.
        # model: 'embedded' (SmolLM2-135M), a local folder or a Hugging Face name.
        model: {model}
        # preset: tuned   # tuned (normalized impact, last third of the layers) | paper
        top_k: 5          # neurons kept per layer; changes every NAG (and its code version)
        max_tokens: 120   # tokens of each text the NAG reads
        # device: cpu     # auto | cpu | cuda | cuda:N (it picks the dtype: a value, not env)
        # batch_size: 32
        # chunk_rows: 4096  # documents read and extracted at a time (memory, not the NAGs)
        # compile: false    # true: torch.compile the Llama-family trunk (minutes once per
        #                   # process for 1.1-1.4x on a CPU; its own NAGs, so re-extracts)
      # executor:         # where the backbone passes run; unset: NAG_EXECUTOR, NAG_RAY_*
      #   executor: ray   # local (this process) | ray (a cluster)
      #   ray_address: {{env: RAY_ADDRESS}}
      #   actors: 2       # 0: one per GPU
      # pool: shared_gpu  # share one concurrency pool with other selections on the same GPU
      mixture:            # selected_mixture's launchpad defaults
        fraction: 0.2     # token budget: this share of all pool tokens
        ranker: nag       # nag | nag_contrastive | random | dsir | embedding
        # weights: {{hellaswag: 2, arc_easy: 1}}
        # dedup: false
      checks:             # selection_checks' launchpad defaults
        rankers: [random, dsir, embedding]
      # scorer: distilled  # nag (default: the backbone over every document) | distilled
      # distill:           # scorer: distilled: the backbone reads only this sample
      #   sample_fraction: 0.1   # of each shard, by a hash of (seed, shard, id)
      #   sample_shards: ["*"]   # the shards it learns from; others: no backbone at all
      #   rerank: 0.4            # exact NAG for each shard's distilled top 40% per target
    """
)


@dg.scaffold_with(NagScaffolder)
class NagSelection(dg.Component, dg.Resolvable, dg.Model):
    """A NAG-based Ranking selection: targets and candidate shards under one storage root,
    scored with one backbone, the best documents filling a token budget per target."""

    name: str = Field(
        description="Prefixes every asset key, partition set, sensor, group and pool of this "
        "selection; lower-case letters, digits and _ ('' only for one unprefixed selection)."
    )
    storage: StorageSettings = Field(default_factory=StorageSettings)  # type: ignore[valid-type]
    backbone: BackboneSettings = Field(default_factory=BackboneSettings)  # type: ignore[valid-type]
    executor: ExecutorOptions = Field(  # type: ignore[valid-type]
        default_factory=ExecutorOptions,
        description="Where the backbone passes run (local | ray, the Ray cluster and actors); "
        "unset settings fall back to NAG_EXECUTOR, RAY_ADDRESS, NAG_RAY_*, then the defaults.",
    )
    pool: str | None = Field(
        default=None, description="Concurrency pool of the backbone steps (default <name>_backbone)"
    )
    mixture: MixtureConfig = Field(
        default_factory=MixtureConfig, description="selected_mixture's launchpad defaults"
    )
    checks: ChecksConfig = Field(
        default_factory=ChecksConfig, description="selection_checks' launchpad defaults"
    )
    scorer: str | None = Field(
        default=None,
        description="How shards are scored: nag (the backbone over every document, the paper; "
        "the default) | distilled (the backbone over a sample of each shard, a text model per "
        "target scores the rest: ~600x less CPU per document, a selection that only "
        "approximates NAG's; README, 'Distilled NAG'). Unset: NAG_SCORER, then nag.",
    )
    distill: DistillConfig = Field(
        default_factory=DistillConfig,
        description="scorer: distilled only: the sample and the text model (unset: "
        "NAG_SAMPLE_FRACTION, NAG_SAMPLE_SEED, NAG_DISTILL_FEATURES, then the defaults)",
    )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return self.definitions()

    def definitions(
        self,
        storage: StorageResource | None = None,
        backbone: BackboneResource | None = None,
        executor: ExecutorResource | None = None,
    ) -> dg.Definitions:
        """The selection's definitions; `storage`/`backbone`/`executor` replace the configured."""
        return selection_defs(
            storage or self.storage_resource(),
            backbone or self.backbone_resource(),
            executor or self.executor_resource(),
            name=self.name,
            pool=self.pool or "",
            mixture=self.mixture,
            checks=self.checks,
            scoring=self.distill.scoring(self.scorer),
        )

    def storage_resource(self) -> StorageResource:
        return StorageResource(**_given(self.storage))

    def backbone_resource(self) -> BackboneResource:
        """The YAML's settings over the NAG_* environment (which is the fallback)."""
        return BackboneResource.from_env(**_given(self.backbone))

    def executor_resource(self) -> ExecutorResource:
        """The YAML's settings over NAG_EXECUTOR, RAY_ADDRESS, NAG_RAY_* (the fallback)."""
        return ExecutorResource.from_env(**_given(self.executor))

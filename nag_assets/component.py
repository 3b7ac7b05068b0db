"""NagSelection: the whole selection graph as a Dagster component, for a team's own `dg`
project (`dg scaffold defs nag_assets.NagSelection <path>`). Its YAML is the selection spec
(`nag_assets.settings.SelectionSettings`), checked when the definitions load; its `name`
prefixes every asset key, partition set, sensor, group, pool and resource key, so several
selections share one code location and one instance. This repository's own code location
(definitions.py) is the unnamed instance."""

from __future__ import annotations

import re

import dagster as dg
from pydantic import BaseModel, Field

from nag_assets.defs.resources import (
    BackboneResource,
    ExecutorResource,
    StorageResource,
    resource_values,
)
from nag_assets.defs.selection import selection_defs
from nag_assets.settings import SelectionSettings
from nag_assets.settings.reference import scaffold_yaml


class NagScaffoldParams(BaseModel):
    """`dg scaffold defs nag_assets.NagSelection PATH --name code --root s3://bucket/code`."""

    name: str | None = Field(default=None, description="selection name (default: PATH's folder)")
    root: str | None = Field(default=None, description="storage root (local folder or s3://)")
    model: str | None = Field(default=None, description="backbone ('embedded', folder, HF name)")
    pool: str | None = Field(default=None, description="the pool: a folder or s3:// prefix")


class NagScaffolder(dg.Scaffolder[NagScaffoldParams]):
    """Writes a defs.yaml naming every setting of the spec, with its default and meaning."""

    @classmethod
    def get_scaffold_params(cls) -> type[NagScaffoldParams]:
        return NagScaffoldParams

    def scaffold(self, request: dg.ScaffoldRequest[NagScaffoldParams]) -> None:
        params = request.params or NagScaffoldParams()
        folder = re.sub(r"[^a-z0-9_]", "_", request.target_path.name.lower()).strip("_")
        name = params.name or (folder if folder[:1].isalpha() else f"nag_{folder}")
        request.target_path.mkdir(parents=True, exist_ok=True)
        text = scaffold_yaml(
            request.type_name,
            name=name,
            root=params.root or f"selections/{name}",
            model=params.model or "embedded",
            pool=params.pool or "",
        )
        (request.target_path / "defs.yaml").write_text(text)


@dg.scaffold_with(NagScaffolder)
class NagSelection(SelectionSettings, dg.Component, dg.Resolvable):
    """A NAG-based Ranking selection: its pool, targets, backbone, executor and budget (the
    selection spec), the best documents filling a token budget per target."""

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return self.definitions()

    def definitions(
        self,
        storage: StorageResource | None = None,
        backbone: BackboneResource | None = None,
        executor: ExecutorResource | None = None,
    ) -> dg.Definitions:
        """The selection's definitions (its unset settings from the environment);
        `storage`/`backbone`/`executor` replace the configured ones (tests, the demo)."""
        return selection_defs(
            self.resolved(),
            storage or self.storage_resource(),
            backbone or self.backbone_resource(),
            executor or self.executor_resource(),
        )

    def storage_resource(self) -> StorageResource:
        """The root, the pool, the targets and the NAG store (`{env: NAME}`: dg.EnvVar)."""
        spec = self.resolved()
        return StorageResource.of(spec.storage, spec.pool, spec.targets)

    def backbone_resource(self) -> BackboneResource:
        """The spec's backbone settings over the NAG_* environment."""
        return BackboneResource(**self.resolved().backbone.model_dump())

    def executor_resource(self) -> ExecutorResource:
        """The spec's executor settings over NAG_EXECUTOR, RAY_ADDRESS, NAG_RAY_*."""
        return ExecutorResource(**resource_values(self.resolved().executor))

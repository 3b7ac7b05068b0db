"""The one Definitions object that `dagster dev` (workspace.yaml) loads: the unnamed
NagSelection. Its spec is the same model a component's YAML holds, here in Python; unset
settings come from the NAG_* environment (docs/settings.md), then the defaults."""

import dagster as dg

from nag_assets.component import NagSelection
from nag_assets.defs.resources import BackboneResource, ExecutorResource, StorageResource

THIS_REPOSITORY = NagSelection(name="")


def build_defs(
    storage: StorageResource | None = None,
    backbone: BackboneResource | None = None,
    executor: ExecutorResource | None = None,
    selection: NagSelection = THIS_REPOSITORY,
) -> dg.Definitions:
    """Definitions with the given resources (tests and the demo pass their own)."""
    return selection.definitions(storage, backbone, executor)


defs = build_defs()

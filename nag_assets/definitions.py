"""The one Definitions object that `dagster dev` (workspace.yaml) loads: the unnamed
NagSelection, every setting from the NAG_* environment (or its default)."""

import dagster as dg

from nag_assets.component import NagSelection
from nag_assets.defs.resources import BackboneResource, ExecutorResource, StorageResource

THIS_REPOSITORY = NagSelection(name="")


def build_defs(
    storage: StorageResource | None = None,
    backbone: BackboneResource | None = None,
    executor: ExecutorResource | None = None,
) -> dg.Definitions:
    """Definitions with the given resources (tests and the demo pass their own)."""
    return THIS_REPOSITORY.definitions(storage, backbone, executor)


defs = build_defs()

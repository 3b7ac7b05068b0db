"""The one Definitions object that `dagster dev` (workspace.yaml) loads: one NagSelection.
Its spec is the same model a component's YAML holds: the file NAG_SPEC names (a `defs.yaml`,
or its `attributes:` alone), else the defaults; unset settings come from the NAG_*
environment (docs/settings.md)."""

import os
from pathlib import Path

import dagster as dg
import yaml

from nag_assets.component import NagSelection
from nag_assets.defs.resources import BackboneResource, ExecutorResource, StorageResource
from nag_assets.sources.files import InputError


def this_repository(spec: str | None = None) -> NagSelection:
    """The selection of this code location: the spec file `spec` (default: NAG_SPEC)."""
    path = spec or os.environ.get("NAG_SPEC")
    if not path:
        return NagSelection(name="")
    try:
        doc = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise InputError(f"NAG_SPEC={path!r}: cannot read the spec ({e})") from e
    attributes = doc.get("attributes", doc) if isinstance(doc, dict) else doc
    if not isinstance(attributes, dict):
        raise InputError(f"NAG_SPEC={path!r}: the spec is not a mapping of settings")
    return NagSelection.resolve_from_dict({"name": "", **attributes})


def build_defs(
    storage: StorageResource | None = None,
    backbone: BackboneResource | None = None,
    executor: ExecutorResource | None = None,
    selection: NagSelection | None = None,
) -> dg.Definitions:
    """Definitions with the given resources (tests and the demo pass their own)."""
    return (selection or this_repository()).definitions(storage, backbone, executor)


defs = build_defs()

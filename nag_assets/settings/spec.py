"""SelectionSettings: the whole spec of one selection, as the component's YAML holds it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

from pydantic import Field, field_validator

from nag_assets.settings import Section, setting
from nag_assets.settings.sections import (
    BackboneSettings,
    ChecksSettings,
    DistilledScorerSettings,
    ExecutorSettings,
    MixtureSettings,
    PoolSettings,
    StorageSettings,
    TargetsSettings,
)

NAME = re.compile(r"^([a-z][a-z0-9_]*)?$")
BLOCKS = (
    StorageSettings,
    PoolSettings,
    TargetsSettings,
    BackboneSettings,
    ExecutorSettings,
    MixtureSettings,
    DistilledScorerSettings,
    ChecksSettings,
)


def _block(cls: type[Section]):
    return Field(default_factory=cls, description=(cls.__doc__ or "").strip().split("\n\n")[0])


class SelectionSettings(Section):
    """Everything one selection is. Unset settings fall back to their environment variable,
    then to the default (`resolved`)."""

    name: str = setting(
        "",
        "Prefixes every asset key, partition set, sensor, group and pool of this selection: "
        "lower-case letters, digits and _ ('' only for one unprefixed selection).",
    )
    storage: StorageSettings = _block(StorageSettings)
    pool: PoolSettings = _block(PoolSettings)
    targets: TargetsSettings = _block(TargetsSettings)
    backbone: BackboneSettings = _block(BackboneSettings)
    executor: ExecutorSettings = _block(ExecutorSettings)
    mixture: MixtureSettings = _block(MixtureSettings)
    scorer: Literal["nag", "distilled"] = setting(
        "nag",
        "How shards are scored: nag (the backbone over every document) | distilled (over a "
        "sample; a text model per target scores the rest).",
        env="NAG_SCORER",
    )
    distill: DistilledScorerSettings = _block(DistilledScorerSettings)
    checks: ChecksSettings = _block(ChecksSettings)
    concurrency_pool: str | None = setting(
        None,
        "Dagster concurrency pool of the backbone steps (unset: <name>_backbone, or backbone); "
        "name one pool in several selections that share a GPU.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not NAME.match(name):
            raise ValueError(
                f"selection name {name!r}: use lower-case letters, digits and _, starting with "
                "a letter (it prefixes asset keys, partition sets and sensors)"
            )
        return name

    def resolved(self, environ: Mapping[str, str] | None = None) -> SelectionSettings:
        """Every block with its unset settings from the environment: what the graph runs."""
        own = type(self).from_env(environ, **{k: v for k, v in self.given().items()
                                              if not isinstance(v, Section)})  # fmt: skip
        blocks = {f: getattr(self, f).resolved(environ) for f in self.blocks()}
        return own.model_copy(update=blocks)

    @classmethod
    def blocks(cls) -> list[str]:
        return [f for f, i in cls.model_fields.items() if _is_block(i.annotation)]


def _is_block(annotation) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, Section)

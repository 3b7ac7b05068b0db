"""SelectionSpec: what tells one selection's definitions apart from another's in one code
location and one Dagster instance (asset keys, partition sets, sensors, pool, resource keys),
and the per-selection values the definitions are built with. The defs modules are factories
over it; `SelectionSpec()` gives today's unprefixed names."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import dagster as dg

from nag_assets.pipeline.common import STEP_CODE_VERSION
from nag_assets.pipeline.distilled import Scoring
from nag_assets.settings import SelectionSettings


@dataclass(frozen=True)
class SelectionSpec:
    """The Dagster names of one selection's settings (`settings.name` prefixes every key,
    partition set, sensor, group, pool and resource key; "" keeps the unprefixed names of this
    repository's own code location), and the settings themselves, resolved."""

    settings: SelectionSettings = field(default_factory=SelectionSettings)
    backbone_version: str = ""  # BackboneResource.code_version(): part of the NAG code version
    storage_kind: str = "file"  # "file" or "s3": the kind badge of the assets reading the root

    @property
    def name(self) -> str:
        return self.settings.name

    @functools.cached_property
    def scoring(self) -> Scoring:
        """nag (default) or distilled, with the distilled scorer's settings."""
        return self.settings.distill.scoring(self.settings.scorer)

    def key(self, asset: str) -> dg.AssetKey:
        return dg.AssetKey([self.name, asset] if self.name else [asset])

    def named(self, base: str) -> str:
        """A partition set, sensor, group or resource key of this selection."""
        return f"{self.name}_{base}" if self.name else base

    @property
    def backbone_pool(self) -> str:
        return self.settings.concurrency_pool or self.named("backbone")

    def shard_pass(self, shard: str) -> dg.AssetKey:
        """The first asset a new or changed shard needs: shard_nag; with the distilled scorer
        its sample's backbone pass (distill_sample), or for a shard outside `sample_shards`
        shard_scores straight away (no backbone)."""
        if not self.scoring.distilled:
            return self.key("shard_nag")
        covered = self.scoring.sample.covers(shard)
        return self.key("distill_sample" if covered else "shard_scores")

    @property
    def shard_passes(self) -> list[dg.AssetKey]:
        """Every asset `shard_pass` may name (what the pool sensor may request)."""
        if not self.scoring.distilled:
            return [self.key("shard_nag")]
        return [self.key("distill_sample"), self.key("shard_scores")]

    @property
    def nag_code_version(self) -> str:
        return f"{STEP_CODE_VERSION}-{self.backbone_version}"

    @functools.cached_property
    def targets(self) -> dg.DynamicPartitionsDefinition:
        """One partition per target set."""
        return dg.DynamicPartitionsDefinition(name=self.named("targets"))

    @functools.cached_property
    def shards(self) -> dg.DynamicPartitionsDefinition:
        """One partition per candidate shard file."""
        return dg.DynamicPartitionsDefinition(name=self.named("shards"))

    @property
    def storage_key(self) -> str:
        return self.named("storage")

    @property
    def backbone_key(self) -> str:
        return self.named("backbone")

    @property
    def executor_key(self) -> str:
        return self.named("executor")

    def link_name(self, asset: str) -> str:
        """The asset's key as the UI's /assets/ URLs spell it."""
        return self.key(asset).to_user_string()

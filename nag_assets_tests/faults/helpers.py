"""Helpers for the fault and S3 tests: the plain steps as one uninterrupted reference run, the
graph driven over any Storage root, and the error text of a failed Dagster run."""

from __future__ import annotations

import dagster as dg

from nag_assets.definitions import build_defs
from nag_assets.defs.driver import automation_ticks
from nag_assets.defs.resources import BackboneResource, StorageResource
from nag_assets.nag import load_backbone
from nag_assets.pipeline import mixture, shards, targets
from nag_assets.pipeline.common import NagSettings, key_or_none
from nag_assets.storage import Storage
from nag_assets_tests.defs.helpers import TOP_K, Graph

BATCH = 8  # small batches: more progress reports, so a kill lands mid-extraction


def backbone_resource(model_dir) -> BackboneResource:
    # the paper's preset: the fault tests count the paper's backbone passes
    return BackboneResource(model=str(model_dir), preset="paper", top_k=TOP_K, batch_size=BATCH)


def keys(storage: Storage, folder: str) -> list[str]:
    return sorted(k for f in storage.list_files(folder) if (k := key_or_none(f.name)))


def plain_run(storage: Storage, model_dir) -> str:
    """Every step once, in order, no Dagster, nothing interrupted: the selection's digest."""
    backbone = load_backbone(str(model_dir), device="cpu")
    settings = NagSettings(top_k=TOP_K, batch_size=BATCH)
    target_keys, shard_keys = keys(storage, "targets"), keys(storage, "shards")
    for t in target_keys:
        targets.target_dataset(storage, t, backbone.count_tokens)
        targets.target_nag(storage, t, backbone, settings)
    for s in shard_keys:
        shards.shard_nag(storage, s, backbone, settings)
        shards.shard_scores(storage, s, target_keys)
    mixture.selected_mixture(storage, shard_keys, target_keys, mixture.MixtureSettings())
    return mixture.mixture_digest(storage)


class StorageGraph(Graph):
    """`Graph` (sensor tick, then automation until quiet) over any StorageResource."""

    def __init__(self, resource: StorageResource, model_dir, instance: dg.DagsterInstance):
        self.root = None  # not a local folder: use self.storage
        self.instance = instance
        self.storage = resource.storage()
        self.defs = build_defs(resource, backbone_resource(model_dir))
        self.sensor_cursor = None
        self.auto_cursor, runs = automation_ticks(self.defs, instance)
        assert runs == []
        self.runs = []


def failure_text(instance: dg.DagsterInstance, run_id: str) -> str:
    """Every error message of a run's failed steps, causes included, as one text."""
    out = []
    for event in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        error = event.dagster_event.step_failure_data.error
        while error is not None:
            out.append(error.message)
            error = error.cause
    return "\n".join(out)

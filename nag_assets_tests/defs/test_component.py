"""NagSelection's names, settings and scaffolder, without running the graph."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml

import nag_assets
from nag_assets.component import NagScaffolder, NagScaffoldParams, NagSelection
from nag_assets.definitions import defs as repository_defs
from nag_assets.defs.resources import BackboneResource, ExecutorResource
from nag_assets.sources.chunks import CHUNK_ROWS
from nag_assets.sources.files import InputError

ASSETS = [
    "target_dataset",
    "target_nag",
    "candidate_shard",
    "shard_nag",
    "shard_scores",
    "selected_mixture",
    "mixture_corpus",
    "mixture_preview",
    "selection_checks",
]


def names(defs: dg.Definitions) -> dict[str, set[str]]:
    """Everything that must be unique per Dagster instance, by kind."""
    graph = defs.resolve_asset_graph()
    nodes = [graph.get(k) for k in graph.get_all_asset_keys()]
    return {
        "keys": {n.key.to_user_string() for n in nodes},
        "partition sets": {n.partitions_def.name for n in nodes if n.partitions_def},
        "sensors": {s.name for s in defs.sensors},
        "pools": {p for n in nodes for p in n.pools},
        "groups": {n.group_name for n in nodes},
        "resources": set(defs.resources),
    }


def test_this_repository_keeps_its_names() -> None:
    assert names(repository_defs) == {
        "keys": set(ASSETS),
        "partition sets": {"targets", "shards"},
        "sensors": {"pool_sensor", "nag_automation"},
        "pools": {"backbone"},
        "groups": {"targets", "shards", "selection"},
        "resources": {"storage", "backbone", "executor"},
    }


def test_a_name_prefixes_everything_and_two_share_nothing(tmp_path: Path) -> None:
    code = names(NagSelection(name="code", storage={"root": str(tmp_path)}).definitions())
    math = names(NagSelection(name="math", storage={"root": str(tmp_path)}).definitions())
    assert code["keys"] == {f"code/{a}" for a in ASSETS}
    assert code["partition sets"] == {"code_targets", "code_shards"}
    assert code["sensors"] == {"code_pool_sensor", "code_nag_automation"}
    assert code["pools"] == {"code_backbone"}
    assert code["resources"] == {"code_storage", "code_backbone", "code_executor"}
    for kind in code:
        assert not code[kind] & math[kind], kind
    merged = dg.Definitions.merge(
        NagSelection(name="code").definitions(), NagSelection(name="math").definitions()
    )
    merged.resolve_all_job_defs()  # loads: no resource or sensor clash


def test_a_shared_pool_can_be_named() -> None:
    defs = NagSelection(name="code", concurrency_pool="gpu0").definitions()
    assert names(defs)["pools"] == {"gpu0"}


def test_yaml_settings_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAG_TOP_K", "7")
    monkeypatch.setenv("NAG_MAX_TOKENS", "90")
    sel = NagSelection.resolve_from_yaml("name: a\nbackbone: {model: some/folder, top_k: 3}\n")
    backbone = sel.backbone_resource()
    assert (backbone.model, backbone.top_k, backbone.max_tokens) == ("some/folder", 3, 90)
    want = BackboneResource(model="some/folder", top_k=3, max_tokens=90).code_version()
    node = sel.definitions().resolve_asset_graph().get(dg.AssetKey(["a", "target_nag"]))
    assert node.code_version.endswith(want)


def test_deployment_settings_become_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAM_ROOT", "s3://bucket/code")
    sel = NagSelection.resolve_from_yaml(
        "name: a\nstorage: {root: {env: TEAM_ROOT}, endpoint_url: {env: TEAM_S3}}\n"
        "pool: {path: {env: TEAM_POOL}}\n"
    )
    storage = sel.storage_resource()
    assert isinstance(storage.endpoint_url, dg.EnvVar)
    assert storage.endpoint_url.env_var_name == "TEAM_S3"
    assert storage.pool.env_var_name == "TEAM_POOL"
    node = sel.definitions().resolve_asset_graph().get(dg.AssetKey(["a", "selected_mixture"]))
    assert "s3" in node.kinds  # the badge follows the root's current value


@pytest.mark.parametrize("setting", ["top_k", "preset", "batch_size", "fraction"])
def test_settings_that_shape_a_selection_are_values_not_env_vars(setting: str) -> None:
    block = "mixture" if setting == "fraction" else "backbone"
    with pytest.raises(Exception, match=rf"(?s){block}.*{setting}"):
        NagSelection.resolve_from_yaml(f"name: a\n{block}: {{{setting}: {{env: X}}}}\n")


@pytest.mark.parametrize("setting", ["preset", "layers", "neurons"])
def test_quality_settings_shape_the_code_version(setting: str) -> None:
    value = {"preset": "paper", "layers": "last", "neurons": "down_proj"}[setting]
    sel = NagSelection.resolve_from_yaml(f"name: a\nbackbone: {{{setting}: {value}}}\n")
    assert getattr(sel.backbone_resource(), setting) == value
    want = BackboneResource.from_env(**{setting: value}).code_version()
    assert want != BackboneResource.from_env().code_version()
    node = sel.definitions().resolve_asset_graph().get(dg.AssetKey(["a", "shard_nag"]))
    assert node.code_version.endswith(want)


def test_executor_settings_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAG_EXECUTOR", "ray")
    monkeypatch.setenv("NAG_RAY_ACTORS", "4")
    monkeypatch.setenv("NAG_RAY_MAX_RETRIES", "5")
    sel = NagSelection.resolve_from_yaml(
        "name: a\nexecutor: {executor: local, actors: 2, cpus_per_actor: 0.5, "
        "ray_address: {env: TEAM_RAY}}\n"
    )
    executor = sel.executor_resource()
    assert (executor.executor, executor.actors, executor.cpus_per_actor) == ("local", 2, 0.5)
    assert executor.max_retries == 5  # unset in the YAML: the environment's
    assert executor.ray_address.env_var_name == "TEAM_RAY"
    defs = sel.definitions()
    assert isinstance(defs.resources["a_executor"], ExecutorResource)
    assert defs.resources["a_executor"].settings() == executor.settings()
    for asset, key in [
        ("shard_nag", "a_executor"),
        ("target_nag", "a_executor"),
        ("selected_mixture", "a_backbone"),  # nag_distilled loads the selection's backbone
    ]:
        keys = defs.resolve_assets_def(dg.AssetKey(["a", asset])).required_resource_keys
        assert key in keys, asset
    with pytest.raises(Exception, match="cpus_per_actor"):
        NagSelection.resolve_from_yaml("name: a\nexecutor: {cpus_per_actor: {env: N}}\n")
    with pytest.raises(InputError, match=r"NAG_RAY_ACTORS='many' \(from the environment"):
        monkeypatch.setenv("NAG_RAY_ACTORS", "many")
        NagSelection(name="a").definitions()  # unset in the spec: the variable is read


def test_a_bad_name_is_refused() -> None:
    with pytest.raises(ValueError, match="'Code-Pool'"):
        NagSelection(name="Code-Pool").definitions()


def test_the_mixture_takes_no_run_config_and_the_preview_defaults_to_the_spec() -> None:
    sel = NagSelection.resolve_from_yaml(
        "name: a\nmixture: {fraction: 0.05, ranker: dsir}\nchecks: {rankers: [random]}\n"
    )
    defs = sel.definitions()
    op = defs.resolve_assets_def(dg.AssetKey(["a", "selected_mixture"])).op
    assert op.config_schema.config_type.fields == {}  # the spec only: run config is refused
    fields = {}
    for asset in ("mixture_preview", "selection_checks"):
        op = defs.resolve_assets_def(dg.AssetKey(["a", asset])).op
        fields[asset] = op.config_schema.config_type.fields
    assert fields["mixture_preview"]["fraction"].default_value == 0.05
    assert fields["mixture_preview"]["ranker"].default_value == "dsir"
    assert fields["selection_checks"]["rankers"].default_value == ["random"]


def test_scaffolder_writes_a_loadable_commented_defs_yaml(tmp_path: Path) -> None:
    target = tmp_path / "defs" / "code-pool"
    request = dg.ScaffoldRequest(
        type_name="nag_assets.NagSelection",
        target_path=target,
        scaffold_format="yaml",
        project_root=tmp_path,
        params=NagScaffoldParams(root="data/code"),
    )
    NagScaffolder().scaffold(request)
    text = (target / "defs.yaml").read_text()
    assert text.count("#") >= 10
    doc = yaml.safe_load(text)
    assert doc["type"] == "nag_assets.NagSelection"
    sel = NagSelection.resolve_from_dict(doc["attributes"])
    assert (sel.name, sel.storage.root) == ("code_pool", "data/code")
    assert names(sel.definitions())["sensors"] == {
        "code_pool_pool_sensor",
        "code_pool_nag_automation",
    }


def test_registered_for_dg() -> None:
    """`dg list components` finds nag_assets.NagSelection through the entry point."""
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    entry = '[project.entry-points."dagster_dg_cli.registry_modules"]\nnag_assets = "nag_assets"\n'
    assert entry in pyproject
    assert "NagSelection" in dir(nag_assets)
    assert nag_assets.NagSelection is NagSelection
    assert hasattr(NagSelection, "__dg_package_entry__")


def test_chunk_rows_is_a_setting_that_never_shapes_nags(monkeypatch: pytest.MonkeyPatch) -> None:
    assert BackboneResource.from_env().settings().chunk_rows == CHUNK_ROWS
    monkeypatch.setenv("NAG_CHUNK_ROWS", "700")
    assert BackboneResource.from_env().settings().chunk_rows == 700
    sel = NagSelection.resolve_from_yaml("name: a\nbackbone: {chunk_rows: 300}\n")
    assert sel.backbone_resource().settings().chunk_rows == 300  # the YAML over the env
    assert sel.backbone_resource().code_version() == BackboneResource().code_version()


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, False), ("", False), ("0", False), ("off", False), ("1", True), ("TRUE", True)],
)
def test_compile_from_the_environment(monkeypatch, value: str | None, expected: bool) -> None:
    if value is None:
        monkeypatch.delenv("NAG_COMPILE", raising=False)
    else:
        monkeypatch.setenv("NAG_COMPILE", value)
    resource = BackboneResource.from_env()
    assert resource.compile is expected
    assert resource.spec().compile is expected  # what a Ray actor loads
    off = BackboneResource(compile=False).code_version()
    assert (resource.code_version() != off) is expected


def test_a_bad_compile_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAG_COMPILE", "maybe")
    with pytest.raises(InputError, match=r"NAG_COMPILE='maybe' \(from the environment.*boolean"):
        BackboneResource.from_env()
    with pytest.raises(Exception, match=r"(?s)backbone.compile.*valid boolean"):
        NagSelection.resolve_from_yaml("name: a\nbackbone: {compile: maybe}\n")


def test_compile_in_the_yaml_shapes_the_code_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NAG_COMPILE", raising=False)
    sel = NagSelection.resolve_from_yaml("name: a\nbackbone: {compile: true}\n")
    assert sel.backbone_resource().compile is True
    want = BackboneResource(compile=True).code_version()
    assert want != BackboneResource().code_version()
    node = sel.definitions().resolve_asset_graph().get(dg.AssetKey(["a", "shard_nag"]))
    assert node.code_version.endswith(want)
    # a value only (it shapes every NAG, and dg.EnvVar has no bool form)
    with pytest.raises(Exception, match=r"(?s)backbone.compile.*valid boolean"):
        NagSelection.resolve_from_yaml("name: a\nbackbone: {compile: {env: X}}\n")

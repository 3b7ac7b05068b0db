"""The selection spec: every setting checked when the definitions load (a bad value named by
its key, or by its variable), and what is derived from the spec (docs, defs.yaml) in step."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import yaml

from nag_assets.component import NagSelection
from nag_assets.settings import (
    Section,
    SelectionSettings,
    SettingsError,
    env_name,
    is_deployment,
)
from nag_assets.settings.reference import markdown, scaffold_yaml
from nag_assets.settings.spec import BLOCKS

DOCS = Path(__file__).resolve().parents[1] / "docs" / "settings.md"


def _bad_value(block: type[Section], name: str):
    """A value the setting must refuse, from its type and bounds alone."""
    info = block.model_fields[name]
    bounds = (info.json_schema_extra or {}).get("bounds") or {}
    if typing.get_origin(info.annotation) in (list, dict):
        return 7
    args = [a for a in typing.get_args(info.annotation) if a is not type(None)]
    kinds = args or [info.annotation]
    if any(typing.get_origin(k) is typing.Literal for k in kinds):
        return "no-such-choice"
    if bounds:
        limit = bounds.get("ge", bounds.get("gt", 0))
        return limit - 1 if "le" not in bounds else bounds["le"] + 1
    if bool in kinds:
        return "maybe"
    if int in kinds or float in kinds:
        return "many"
    if any(typing.get_origin(k) in (list, dict) for k in kinds):
        return 7
    return ["not", "a", "string"]


CASES = [(b, n) for b in BLOCKS for n in b.model_fields]


@pytest.mark.parametrize(("block", "name"), CASES, ids=[f"{b.KEY}.{n}" for b, n in CASES])
def test_every_setting_refuses_a_bad_value_when_the_definitions_load(block, name) -> None:
    bad = _bad_value(block, name)
    text = yaml.safe_dump({"name": "a", block.KEY: {name: bad}})
    with pytest.raises(Exception, match=rf"(?s){block.KEY}.*{name}|{block.KEY}\.{name}"):
        NagSelection.resolve_from_yaml(text).definitions()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"mixture": {"fraction": 1.5}}, r"mixture.fraction: budget fraction 1.5 must be in"),
        ({"backbone": {"preset": "tunned"}}, r"backbone.preset: Input should be 'paper' or"),
        ({"name": "Team A"}, r"name: selection name 'Team A'"),
        ({"mixture": {"ranker": "bm25"}}, r"mixture.ranker: unknown ranker 'bm25'; choose"),
        ({"pool": {"include": 3}}, r"pool.include"),
        ({"targets": {"benchmarks": ["arc_eazy"]}}, r"unknown benchmarks \['arc_eazy'\]"),
    ],
)
def test_the_issue_s_bad_settings_are_named(spec: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        SelectionSettings(**spec)


def test_a_bad_variable_is_named_as_coming_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("NAG_PRESET", "tuneed")
    with pytest.raises(SettingsError, match=r"NAG_PRESET='tuneed' \(from the environment"):
        NagSelection(name="").definitions()
    monkeypatch.setenv("NAG_PRESET", "paper")
    monkeypatch.setenv("NAG_FRACTION", "0.1")
    spec = NagSelection(name="", mixture={"fraction": 0.3}).resolved()
    assert (spec.backbone.preset, spec.mixture.fraction) == ("paper", 0.3)  # the spec wins
    assert NagSelection(name="").resolved().mixture.fraction == 0.1  # else the variable


def test_only_deployment_settings_take_env_references() -> None:
    for block in BLOCKS:
        for name, info in block.model_fields.items():
            text = yaml.safe_dump({"name": "a", block.KEY: {name: {"env": "X"}}})
            if is_deployment(info):
                NagSelection.resolve_from_yaml(text)
            else:
                with pytest.raises(Exception, match=name):
                    NagSelection.resolve_from_yaml(text)


def test_the_settings_reference_is_generated_from_the_spec() -> None:
    assert DOCS.read_text() == markdown(), "run: python -m nag_assets.settings.reference"
    for block in BLOCKS:
        for name, info in block.model_fields.items():
            assert f"`{block.KEY}.{name}`" in DOCS.read_text()
            if env_name(info):
                assert f"`{env_name(info)}`" in DOCS.read_text()


def test_the_scaffolded_yaml_names_every_setting_and_loads_to_the_defaults() -> None:
    text = scaffold_yaml("nag_assets.NagSelection", "sci", "data/sci", "embedded")
    for block in BLOCKS:
        for name in block.model_fields:
            assert f"{name}:" in text, f"{block.KEY}.{name} missing from defs.yaml"
    spec = NagSelection.resolve_from_dict(yaml.safe_load(text)["attributes"])
    default = SelectionSettings(
        name="sci",
        storage={"root": "data/sci", "nag_store": "selections/nag_store"},
        backbone={"model": "embedded"},
    )
    for block in SelectionSettings.blocks():
        assert getattr(spec, block) == getattr(default, block), block

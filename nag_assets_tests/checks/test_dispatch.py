"""The checks' one dispatch: the command line and the launchpad share its defaults, and the
checks that do not run the model never load it."""

from __future__ import annotations

import dataclasses

import pytest

from nag_assets.checks import cli, dispatch
from nag_assets.checks.dispatch import DEFAULTS, CheckOptions, run_check
from nag_assets.storage import Storage


def test_command_line_defaults_are_the_dispatch_defaults() -> None:
    opts = cli.options(cli.parser().parse_args(["stability"]))
    assert opts == DEFAULTS


def test_launchpad_defaults_are_the_dispatch_defaults() -> None:
    from nag_assets.defs.checks import checks_asset
    from nag_assets.defs.spec import SelectionSpec
    from nag_assets.settings import ChecksSettings

    config = ChecksSettings()  # the spec's defaults, which the launchpad shows
    fields = checks_asset(SelectionSpec()).op.config_schema.config_type.fields
    assert {n: f.default_value for n, f in fields.items()} == config.model_dump()
    for field in dataclasses.fields(CheckOptions):
        if field.name in ChecksSettings.model_fields:
            value = getattr(config, field.name)
            expected = getattr(DEFAULTS, field.name)
            assert (tuple(value) if isinstance(value, list) else value) == expected, field.name


@pytest.mark.parametrize("name", ["stability", "agreement"])
def test_checks_without_the_model_never_load_it(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.setattr(dispatch, name, lambda *a, **k: {"check": name})

    def no_backbone():
        raise AssertionError("the backbone was loaded")

    assert run_check(name, Storage(str(tmp_path)), DEFAULTS, no_backbone) == {"check": name}


def test_unknown_check_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown check"):
        run_check("vibes", Storage(str(tmp_path)), DEFAULTS, lambda: None)

"""The plain code location from a spec file (NAG_SPEC), materialized from the command line
the way the daemons would; a rerun with nothing changed runs nothing."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from nag_assets import cli
from nag_assets.definitions import this_repository
from nag_assets.sources.files import InputError
from nag_assets_tests.defs.conftest import tiny_model_dir, wiki_pool  # noqa: F401
from nag_assets_tests.defs.helpers import science_texts, write_jsonl


def _spec(tmp_path: Path, model: Path, wiki: pl.DataFrame) -> Path:
    pool, targets = tmp_path / "pool" / "dump", tmp_path / "targets"
    pool.mkdir(parents=True)
    targets.mkdir()
    wiki.head(40).select("id", "text").write_parquet(pool / "000.parquet")
    write_jsonl(targets / "water.jsonl", science_texts(12))
    spec = {
        "storage": {"root": str(tmp_path / "root"), "nag_store": str(tmp_path / "nags")},
        "pool": {"path": str(pool.parent)},
        "targets": {"path": str(targets)},
        "backbone": {"model": str(model), "preset": "paper", "top_k": 4},
        "mixture": {"fraction": 0.1},
    }
    path = tmp_path / "selection.yaml"
    path.write_text(yaml.safe_dump({"type": "nag_assets.NagSelection", "attributes": spec}))
    return path


@pytest.mark.slow
def test_materialize_from_a_spec_file(
    tmp_path: Path,
    tiny_model_dir: Path,  # noqa: F811
    wiki_pool: pl.DataFrame,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    spec = _spec(tmp_path, tiny_model_dir, wiki_pool)
    cli.main(["materialize", "--spec", str(spec)])
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{") :])
    assert summary["failed"] == 0 and summary["fraction"] == 0.1
    assert summary["targets"]["water"]["documents"] > 0
    corpus = pl.read_parquet(tmp_path / "root" / "selected_mixture" / "*.parquet")
    assert corpus.height == summary["targets"]["water"]["documents"]
    cli.main(["materialize", "--spec", str(spec)])  # nothing changed: nothing runs
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{") :])["runs"] == 0


def test_a_bad_spec_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"NAG_SPEC='.*nope.yaml': cannot read"):
        this_repository(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("mixture: {fraction: 1.5}\n")
    with pytest.raises(Exception, match=r"mixture.fraction"):
        this_repository(str(bad)).definitions()

"""pool_sensor: files appearing, changing, being touched or leaving targets/ and shards/."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable

import dagster as dg
import polars as pl
import pytest

from nag_assets.defs.driver import sensor_tick
from nag_assets.pipeline.mixture import read_mixture
from nag_assets.sources.wiki import write_shards
from nag_assets.storage import partition_key
from nag_assets_tests.defs.helpers import (
    Graph,
    expected_selection,
    file_version,
    pairs,
    read_scores,
)

pytestmark = pytest.mark.slow  # graph runs, servers or subprocesses


def _tick(g: Graph) -> tuple[str | None, list[dict]]:
    """The driver's sensor tick (applies partitions, executes runs) from the graph's cursor."""
    return sensor_tick(g.defs, g.instance, g.sensor_cursor)


def _adds(result: dg.SensorResult) -> dict[str, list[str]]:
    return {
        r.partitions_def_name: list(r.partition_keys)
        for r in result.dynamic_partitions_requests or []
        if isinstance(r, dg.AddDynamicPartitionsRequest)
    }


def _deletes(result: dg.SensorResult) -> dict[str, list[str]]:
    return {
        r.partitions_def_name: list(r.partition_keys)
        for r in result.dynamic_partitions_requests or []
        if isinstance(r, dg.DeleteDynamicPartitionsRequest)
    }


def _runs(result: dg.SensorResult) -> list[tuple[str, str | None]]:
    out = []
    for r in result.run_requests or []:
        assert r.asset_selection is not None and len(r.asset_selection) == 1
        out.append((r.asset_selection[0].to_user_string(), r.partition_key))
    return sorted(out, key=str)


def _observed(result: dg.SensorResult) -> dict[str, str]:
    return {e.partition: e.tags["dagster/data_version"] for e in result.asset_events or []}


def _assert_quiet(result: dg.SensorResult) -> None:
    assert not result.run_requests
    assert not result.dynamic_partitions_requests
    assert not result.asset_events
    assert result.skip_reason is not None


def test_first_tick_adds_partitions_and_requests_first_assets(
    make_graph: Callable[..., Graph],
) -> None:
    g = make_graph(shards=2)
    result, _ = g.evaluate_sensor()
    assert _adds(result) == {"targets": ["arc_easy"], "shards": ["wiki-000", "wiki-001"]}
    assert _runs(result) == [
        ("shard_nag", "wiki-000"),
        ("shard_nag", "wiki-001"),
        ("target_dataset", "arc_easy"),
    ]
    shards = g.root / "shards"
    assert _observed(result) == {
        "wiki-000": file_version(shards / "wiki-000.parquet"),
        "wiki-001": file_version(shards / "wiki-001.parquet"),
    }
    # run keys name the content version, so a daemon never runs one version twice
    keys = {r.partition_key: r.run_key for r in result.run_requests}
    assert keys["wiki-000"] == f"shards:wiki-000:{file_version(shards / 'wiki-000.parquet')}"


def test_new_shard_adds_a_partition_and_requests_only_its_shard_nag(
    make_graph: Callable[..., Graph], wiki_pool: pl.DataFrame
) -> None:
    g = make_graph(shards=2)
    g.sensor_cursor, _ = _tick(g)
    assert g.partitions("shards") == ["wiki-000", "wiki-001"]

    write_shards(wiki_pool.slice(150, 25), g.root / "shards", 1, prefix="extra")
    result, _ = g.evaluate_sensor()
    assert _adds(result) == {"shards": ["extra-000"]}
    assert _runs(result) == [("shard_nag", "extra-000")]
    assert _observed(result) == {"extra-000": file_version(g.root / "shards/extra-000.parquet")}
    assert not _deletes(result)

    _tick(g)
    assert g.partitions("shards") == ["extra-000", "wiki-000", "wiki-001"]


def test_touching_a_file_requests_nothing(make_graph: Callable[..., Graph]) -> None:
    g = make_graph(shards=2)
    g.sensor_cursor, _ = _tick(g)
    before = json.loads(g.sensor_cursor)
    for path in [g.root / "shards/wiki-001.parquet", g.root / "targets/arc_easy.json"]:
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 7_000_000_000))
    result, _ = g.evaluate_sensor()
    _assert_quiet(result)
    after = json.loads(result.cursor)
    # the new signature is remembered (no rehash next time), the version is unchanged
    for folder, key in [("shards", "wiki-001"), ("targets", "arc_easy")]:
        assert after[folder][key]["signature"] != before[folder][key]["signature"]
        assert after[folder][key]["version"] == before[folder][key]["version"]
    assert after["shards"]["wiki-000"] == before["shards"]["wiki-000"]


def test_changed_content_requests_only_that_shard(make_graph: Callable[..., Graph]) -> None:
    g = make_graph(shards=3)
    g.sensor_cursor, _ = _tick(g)
    path = g.root / "shards/wiki-001.parquet"
    old = file_version(path)
    pl.read_parquet(path).head(20).write_parquet(path)
    new = file_version(path)
    assert new != old

    result, _ = g.evaluate_sensor()
    assert _runs(result) == [("shard_nag", "wiki-001")]
    assert [r.run_key for r in result.run_requests] == [f"shards:wiki-001:{new}"]
    assert _observed(result) == {"wiki-001": new}
    assert not result.dynamic_partitions_requests


def test_changed_target_requests_only_that_target(make_graph: Callable[..., Graph]) -> None:
    g = make_graph(shards=1, targets={"arc_easy": {"benchmark": "arc_easy", "limit": 20}})
    g.sensor_cursor, _ = _tick(g)
    (g.root / "targets/arc_easy.json").write_text(json.dumps({"benchmark": "arc_easy", "limit": 9}))
    result, _ = g.evaluate_sensor()
    assert _runs(result) == [("target_dataset", "arc_easy")]
    assert not result.asset_events and not result.dynamic_partitions_requests


def test_removed_shard_leaves_the_partitions_and_the_mixture(
    make_graph: Callable[..., Graph],
) -> None:
    g = make_graph(shards=3)
    g.step()
    assert all(r["success"] for r in g.runs)
    before = read_mixture(g.storage)
    # remove a shard that contributes to the mixture, so leaving it out is visible
    gone = before.sort(["score", "id"], descending=[True, False])["shard"][0]
    kept = sorted({"wiki-000", "wiki-001", "wiki-002"} - {gone})
    (g.root / "shards" / f"{gone}.parquet").unlink()

    result, _ = g.evaluate_sensor()
    assert _deletes(result) == {"shards": [gone]}
    assert _runs(result) == [("selected_mixture", None)]
    assert not _adds(result)

    sensor_runs, auto_runs = g.step()
    assert [r["assets"] for r in sensor_runs] == [["selected_mixture"]]
    assert all(r["success"] for r in sensor_runs + auto_runs)
    assert g.partitions("shards") == kept
    after = read_mixture(g.storage)
    assert gone not in set(after["shard"].to_list())
    assert set(after["shard"].to_list()) <= set(kept)
    assert pairs(after) == expected_selection(read_scores(g.root, kept), ["arc_easy"])
    assert g.check_evaluations(sensor_runs + auto_runs)[
        ("mixture_corpus", "rows_point_to_documents")
    ] == [True]


def test_any_file_name_gets_a_partition_foreign_files_are_ignored(
    make_graph: Callable[..., Graph],
) -> None:
    """Upper case, spaces, `..` and sub-folders (a pool as downloaded) become partitions under
    safe keys; files that are not inputs are ignored with a warning, hidden ones silently."""
    g = make_graph(shards=1)
    good = g.root / "shards/wiki-000.parquet"
    odd = ["Bad Name.parquet", "x..y.parquet", "UPPER.parquet", "CC-MAIN-2024-10/000_00000.parquet"]
    for name in odd:
        (g.root / "shards" / name).parent.mkdir(exist_ok=True)
        shutil.copy(good, g.root / "shards" / name)
    (g.root / "shards/notes.txt").write_text("not a shard")
    (g.root / "shards/CC-MAIN-2024-10/README.md").write_text("not a shard")
    (g.root / "shards/.hidden.parquet").write_bytes(good.read_bytes())
    shutil.copy(g.root / "targets/arc_easy.json", g.root / "targets/Arc Easy.json")

    result, logs = g.evaluate_sensor()
    shard_keys = sorted(["wiki-000", *(partition_key(n) for n in odd)])
    target_keys = sorted(["arc_easy", partition_key("Arc Easy.json")])
    assert {k: sorted(v) for k, v in _adds(result).items()} == {
        "targets": target_keys,
        "shards": shard_keys,
    }
    assert {k for _, k in _runs(result)} == {*target_keys, *shard_keys}
    assert sorted(json.loads(result.cursor)["shards"]) == shard_keys
    warnings = [m for level, m in logs if level == logging.WARNING]
    assert len(warnings) == 2
    for shown in ["shards/notes.txt ignored", "shards/CC-MAIN-2024-10/README.md ignored"]:
        assert any(m.startswith(shown) for m in warnings), (shown, warnings)
    assert not any(".hidden" in m for _, m in logs)  # hidden files are skipped silently


def test_cursor_round_trips(make_graph: Callable[..., Graph]) -> None:
    g = make_graph(shards=2)
    first, _ = g.evaluate_sensor()
    assert first.run_requests and first.cursor
    second, _ = g.evaluate_sensor(cursor=first.cursor)
    _assert_quiet(second)
    assert json.loads(second.cursor) == json.loads(first.cursor)
    # the driver's tick, fed its own cursor, requests nothing the second time either
    g.sensor_cursor, runs = _tick(g)
    assert runs and all(r["success"] for r in runs)
    g.sensor_cursor, again = _tick(g)
    assert again == []


def test_lost_cursor_does_not_redo_materialized_work(make_graph: Callable[..., Graph]) -> None:
    """With the cursor gone (reset), files whose current version is already materialized are
    not requested again."""
    g = make_graph(shards=2)
    g.step()
    result, _ = g.evaluate_sensor(cursor="")
    assert not result.run_requests
    assert not result.dynamic_partitions_requests  # the partitions exist


def test_restored_shard_returns_to_the_mixture(make_graph: Callable[..., Graph]) -> None:
    g = make_graph(shards=3)
    g.step()
    before = read_mixture(g.storage)
    gone = before["shard"][0]
    kept_aside = g.root / f"{gone}.parquet.bak"
    (g.root / "shards" / f"{gone}.parquet").rename(kept_aside)
    g.step()
    assert gone not in set(read_mixture(g.storage)["shard"].to_list())
    kept_aside.rename(g.root / "shards" / f"{gone}.parquet")
    g.step()
    assert g.partitions("shards") == ["wiki-000", "wiki-001", "wiki-002"]
    assert pairs(read_mixture(g.storage)) == pairs(before)

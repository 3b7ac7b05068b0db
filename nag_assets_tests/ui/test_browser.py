"""The Dagster UI in a real browser: the asset graph, the mixture's and target's pages, the
sensor, and a materialization launched from the launchpad, over an instance where the whole
graph was materialized with a tiny model. Screenshots: test_artifacts/ui/*.png."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import pytest

from nag_assets_tests.ui.browser import (
    click,
    close_dialog,
    dialog_image,
    metadata_markdown_button,
    page_text,
    wait_for,
    wait_text,
)
from nag_assets_tests.ui.site import SHARDS, TARGETS, DagsterUI, Site

pytestmark = [pytest.mark.ui, pytest.mark.slow]

ASSETS = (
    "target_dataset",
    "target_nag",
    "candidate_shard",
    "shard_nag",
    "shard_scores",
    "selected_mixture",
    "mixture_corpus",
)
KINDS = ("PyTorch", "Hugging Face", "Parquet", "NumPy", "Polars", "File")
SHARD_KEYS = [f"wiki-{i:03d}" for i in range(SHARDS)]
GET_CONFIG = "const c = document.querySelector('.CodeMirror'); return c && c.CodeMirror.getValue()"
# Put the launchpad's cursor on the first line holding a text: the help pane then documents
# that level of the config.
SET_CURSOR = """const cm = document.querySelector('.CodeMirror').CodeMirror;
const line = cm.getValue().split('\\n').findIndex(l => l.includes(arguments[0]));
cm.focus(); cm.setCursor({line: line, ch: cm.getLine(line).length});"""
LAUNCH_BUTTON = "//*[@role='dialog']//button[normalize-space(.)='Materialize']"
# What the launchpad run asks for instead of the defaults.
LAUNCH_CONFIG = """ops:
  mixture_preview:
    config:
      fraction: 0.3
      weights: {arc_easy: 2.0}
      dedup: true
"""


def _instance(site: Site) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(site.home))


def _data_version(instance: dg.DagsterInstance, asset: str, partition: str) -> str:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1
    ).records
    assert records, f"{asset}[{partition}] was never materialized"
    return records[0].asset_materialization.tags["dagster/data_version"]


def test_asset_graph_shows_every_asset(ui: DagsterUI, browser, artifacts: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    browser.set_window_size(1920, 1000)  # wide enough for nodes to show their details
    browser.get(f"{ui.url}/asset-groups")
    wait_text(browser, "Global asset lineage", "targets", "shards", "selection")
    # Groups start collapsed: Alt+E expands them all (the graph's own shortcut).
    ActionChains(browser).key_down(Keys.ALT).send_keys("e").key_up(Keys.ALT).perform()
    wait_text(browser, *ASSETS, *KINDS)
    time.sleep(1)  # let the layout settle for the picture
    browser.save_screenshot(str(artifacts / "asset_graph.png"))


def test_mixture_page_shows_what_was_picked_and_why(
    ui: DagsterUI, site: Site, browser, artifacts: Path
) -> None:
    browser.set_window_size(1600, 1900)
    browser.get(f"{ui.url}/assets/selected_mixture")
    # The per-target table, inline on the page.
    text = wait_text(browser, "per_target", "docs", "budget", "filled", "cut-off", *TARGETS)
    assert "Show schema" in text
    for key in ("chosen_by_several", "inputs", "score_distributions", "settings"):
        assert key in text
    # Links to the exact target_nag and shard_nag versions the selection used.
    with _instance(site) as instance:
        for asset, keys in (("target_nag", TARGETS), ("shard_nag", SHARD_KEYS)):
            for key in keys:
                # relative in the page, resolving to the partition's page
                href = f"{ui.url}/assets/{asset}?view=partitions&partition={key}"
                links = browser.execute_script(
                    "return [...document.querySelectorAll('a')].map(a => a.href)"
                )
                assert href in links, f"no link to {asset}[{key}]"
                assert _data_version(instance, asset, key) in text, f"{asset}[{key}] version"
    time.sleep(1)
    browser.save_screenshot(str(artifacts / "mixture_page.png"))
    # The score distributions: a plot, one click away.
    click(browser, metadata_markdown_button("score_distributions"))
    plot = dialog_image(browser)
    assert plot["width"] > 300 and plot["height"] > 200, plot
    time.sleep(0.5)
    browser.save_screenshot(str(artifacts / "mixture_score_plot.png"))
    close_dialog(browser)


def test_target_page_shows_the_profile(ui: DagsterUI, browser, artifacts: Path) -> None:
    browser.set_window_size(1400, 1000)
    browser.get(f"{ui.url}/assets/target_nag?view=partitions&partition=arc_easy")
    wait_text(browser, "profile_summary", "of its NAG slots", "concentration", "top_neurons")
    browser.save_screenshot(str(artifacts / "target_nag_page.png"))
    click(browser, metadata_markdown_button("profile_plot"))
    plot = dialog_image(browser)
    assert plot["width"] > 300, plot
    time.sleep(0.5)
    browser.save_screenshot(str(artifacts / "target_nag_profile_plot.png"))
    close_dialog(browser)


def test_sensor_page_shows_its_last_tick(ui: DagsterUI, browser, artifacts: Path) -> None:
    browser.set_window_size(1400, 1000)
    browser.get(f"{ui.url}/locations/nag_assets/sensors/pool_sensor")
    # The daemon ticks the sensor as soon as it starts; the tick lists its outcome.
    wait_text(browser, "pool_sensor", "Latest tick", "Watches targets/", "View logs", timeout=90)
    browser.save_screenshot(str(artifacts / "sensor_page.png"))
    click(browser, "//button[normalize-space(.)='View logs']")
    wait_text(browser, "targets: ", "shards: ")
    time.sleep(0.5)
    browser.save_screenshot(str(artifacts / "sensor_tick_log.png"))


def test_run_page_shows_extraction_progress(
    ui: DagsterUI, site: Site, browser, artifacts: Path
) -> None:
    """The backbone steps log documents done, tokens per second and time left to the run."""
    with _instance(site) as instance:
        record = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey("shard_nag"), asset_partitions=[SHARD_KEYS[0]]
            ),
            limit=1,
        ).records[0]
    browser.set_window_size(1400, 1000)
    browser.get(f"{ui.url}/runs/{record.run_id}?logs=tokens%2Fs")  # the log, filtered
    wait_text(browser, f"shard_nag[{SHARD_KEYS[0]}]: done, 30 texts", "tokens/s", "Success")
    time.sleep(0.5)
    browser.save_screenshot(str(artifacts / "run_progress_log.png"))


def test_materialize_from_the_launchpad(
    ui: DagsterUI, site: Site, browser, artifacts: Path
) -> None:
    """Open the preview's launchpad, check the config defaults (the spec's), change them,
    launch; the run succeeds, the preview used the new settings and says how they differ."""
    browser.set_window_size(1400, 1000)
    browser.get(f"{ui.url}/assets/mixture_preview")
    wait_text(browser, "mixture_preview", "Materialize")
    _open_launchpad(browser)
    defaults = wait_for("the launchpad's config", lambda: browser.execute_script(GET_CONFIG))
    for line in ("fraction: 0.2", "dedup: false", "weights: {}"):
        assert line in defaults, defaults
    browser.execute_script(
        "document.querySelector('.CodeMirror').CodeMirror.setValue(arguments[0])", LAUNCH_CONFIG
    )
    wait_for("the config to validate", lambda: _enabled(browser, LAUNCH_BUTTON))
    browser.execute_script(SET_CURSOR, "fraction:")  # the help pane shows the descriptions
    wait_text(browser, "Token budget: this share of all pool tokens", "Per-target share")
    time.sleep(0.5)
    browser.save_screenshot(str(artifacts / "launchpad.png"))
    with _instance(site) as instance:
        before = {r.run_id for r in instance.get_runs()}
        click(browser, LAUNCH_BUTTON)
        run = wait_for("the launched run", lambda: _new_run(instance, before), timeout=60, every=1)
        run = wait_for(
            "the run to finish", lambda: _finished(instance, run.run_id), timeout=180, every=2
        )
        assert run.status == dg.DagsterRunStatus.SUCCESS, f"run {run.run_id}: {run.status}"
        assert run.asset_selection == {dg.AssetKey("mixture_preview")}
        record = instance.fetch_materializations(dg.AssetKey("mixture_preview"), limit=1)
        meta = record.records[0].asset_materialization.metadata
        assert meta["differs_from_spec"].value == {
            "fraction": [0.2, 0.3],
            "weights": [{}, {"arc_easy": 2.0}],
            "dedup": [False, True],
        }
        assert meta["skipped_unchanged"].value is False
    browser.get(f"{ui.url}/runs/{run.run_id}")
    wait_text(browser, "Success", "mixture_preview")
    time.sleep(1)
    browser.save_screenshot(str(artifacts / "launched_run.png"))
    assert "RUN_FAILURE" not in page_text(browser)


def test_launchpad_offers_backbone_settings(ui: DagsterUI, browser, artifacts: Path) -> None:
    """The backbone's and the executor's settings, as the code location got them, are
    editable per run."""
    browser.set_window_size(1400, 1000)
    browser.get(f"{ui.url}/assets/shard_nag")
    wait_text(browser, "shard_nag", "Materialize")
    _open_launchpad(browser)
    config = wait_for("the launchpad's config", lambda: browser.execute_script(GET_CONFIG))
    for line in ("backbone:", "top_k: 4", "max_tokens: 120", "batch_size: 32", "model: "):
        assert line in config, config
    # where the backbone pass runs (in-process, or a Ray cluster), beside it
    for line in ("executor: local", "actors: 0", "cpus_per_actor: 1", "max_retries: 3"):
        assert line in config, config
    browser.execute_script(SET_CURSOR, "top_k:")
    wait_text(browser, "Neurons kept per layer", "Texts per forward pass")
    browser.save_screenshot(str(artifacts / "launchpad_backbone.png"))


def _open_launchpad(browser) -> None:
    time.sleep(1)  # the asset page re-renders its header once its data arrives
    click(browser, "//button[.//div[@aria-label='arrow_drop_down']]")
    click(browser, "//*[normalize-space(text())='Open launchpad']")


def _enabled(browser, xpath: str) -> bool:
    from selenium.webdriver.common.by import By

    return any(b.is_enabled() for b in browser.find_elements(By.XPATH, xpath))


def _new_run(instance: dg.DagsterInstance, before: set[str]):
    runs = [r for r in instance.get_runs(limit=10) if r.run_id not in before]
    return runs[0] if runs else None


def _finished(instance: dg.DagsterInstance, run_id: str):
    run = instance.get_run_by_id(run_id)
    return run if run and run.is_finished else None

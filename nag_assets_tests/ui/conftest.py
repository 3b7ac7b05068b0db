"""Fixtures for the browser tests: a Dagster instance where the whole graph was materialized
with a tiny model, `dagster dev` serving it on loopback, and a headless Chromium.

Screenshots and logs go to `test_artifacts/ui/` in the checkout (gitignored)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from nag_assets_tests.tiny import save_tiny
from nag_assets_tests.ui.browser import BrowserMissing, ensure_chromium, start_driver
from nag_assets_tests.ui.site import CHECKOUT, DagsterUI, Site, build_site

ARTIFACTS = CHECKOUT / "test_artifacts" / "ui"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "ui: drives the Dagster UI in headless Chromium (installs it when root)"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def chromium(artifacts: Path) -> tuple[str, str]:
    pytest.importorskip("selenium", reason="selenium is a dev extra: pip install -e '.[dev]'")
    try:
        return ensure_chromium(artifacts / "apt.log")
    except BrowserMissing as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    base = tmp_path_factory.mktemp("ui-site")
    return build_site(base, save_tiny(base / "tiny-llama"))


@pytest.fixture(scope="session")
def ui(chromium, site: Site, artifacts: Path) -> Iterator[DagsterUI]:
    with DagsterUI(site, artifacts / "dagster_dev.log") as server:
        server.graphql("mutation { setNuxSeen }")  # no "join the community" dialog
        yield server


@pytest.fixture(scope="session")
def browser(chromium: tuple[str, str]) -> Iterator:
    session = start_driver(*chromium)
    yield session
    session.quit()


@pytest.fixture(autouse=True)
def _screenshot_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed and "browser" in request.fixturenames:
        session = request.getfixturevalue("browser")
        artifacts = request.getfixturevalue("artifacts")
        session.save_screenshot(str(artifacts / f"FAILED-{request.node.name}.png"))
        (artifacts / f"FAILED-{request.node.name}.txt").write_text(
            session.current_url + "\n\n" + session.execute_script("return document.body.innerText")
        )

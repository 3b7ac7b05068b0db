"""Headless Chromium from Debian's `chromium` + `chromium-driver` packages, driven by Selenium.

Nothing is downloaded at test time except those two packages, and only when they are missing
and the tests run as root (CI); Selenium is told where the browser and driver are, so its
driver manager never runs."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from nag_assets_tests.debian import ensure_installed

PACKAGES = ("chromium", "chromium-driver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


class BrowserMissing(Exception):
    """Chromium is not installed and cannot be installed here (not root, no apt-get)."""


def find_chromium() -> tuple[str, str] | None:
    """(browser, driver) paths, if both are installed."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def ensure_chromium(log: Path) -> tuple[str, str]:
    """The installed browser and driver; installs Debian's packages first when they are
    missing and we are root (the CI). Raises BrowserMissing when that is impossible."""
    return ensure_installed(
        find_chromium, PACKAGES, log, "headless Chromium", "chromium/chromedriver", BrowserMissing
    )


def start_driver(browser: str, driver: str, width: int = 1400, height: int = 1000):
    """A headless Chromium session with a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager fetch anything
    options = Options()
    options.binary_location = browser
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-profile-')}")
    options.add_argument(f"--window-size={width},{height}")
    session = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    session.set_page_load_timeout(60)
    return session


def wait_for(what: str, check: Callable[[], object], timeout: float = 30, every: float = 0.3):
    """check()'s first truthy value, retried through the page's re-renders."""
    from selenium.common.exceptions import WebDriverException

    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = check()
        except WebDriverException as e:  # stale or not yet rendered elements
            value, last = None, e
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what} ({last!r})")
        time.sleep(every)


def page_text(session) -> str:
    return session.execute_script("return document.body.innerText || ''")


def wait_text(session, *texts: str, timeout: float = 30) -> str:
    """The page's text once it holds every one of `texts`."""

    def check():
        text = page_text(session)
        return text if all(t in text for t in texts) else None

    try:
        return wait_for(f"{texts} on {session.current_url}", check, timeout)
    except TimeoutError as e:
        missing = [t for t in texts if t not in page_text(session)]
        raise AssertionError(f"{session.current_url} does not show {missing}") from e


def click(session, xpath: str, timeout: float = 30) -> None:
    from selenium.webdriver.common.by import By

    def check():
        for el in session.find_elements(By.XPATH, xpath):
            if el.is_displayed() and el.is_enabled():
                el.click()
                return True
        return None

    wait_for(f"a clickable {xpath}", check, timeout)


def metadata_markdown_button(key: str) -> str:
    """XPath of the "[Show Markdown]" link in the metadata row of `key`."""
    return f"//tr[td[1][normalize-space(.)='{key}']]//*[normalize-space(text())='[Show Markdown]']"


def dialog_image(session, timeout: float = 30) -> dict:
    """The first loaded PNG image inside an open dialog: {'width', 'height'}."""
    script = """
      const img = [...document.querySelectorAll('[role=dialog] img, .bp5-dialog img')]
        .find(i => i.src.startsWith('data:image/png') && i.complete && i.naturalWidth > 0);
      return img ? {width: img.naturalWidth, height: img.naturalHeight} : null;
    """
    return wait_for("a plot in the dialog", lambda: session.execute_script(script), timeout)


def close_dialog(session) -> None:
    click(session, "//*[@role='dialog']//button[normalize-space(.)='Close']")
    wait_for(
        "the dialog to close",
        lambda: not session.execute_script("return document.querySelector('[role=dialog]')"),
    )

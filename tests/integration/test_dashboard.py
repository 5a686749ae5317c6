"""The dashboard at /myapp/ in a real browser: headless Chromium from Debian.

Driven through Debian's chromedriver with selenium; nothing is
downloaded (the browser runs with its background networking off, as
this machine's closed network wants). The screenshot is kept as a test
artifact: var/artifacts/dashboard.png.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from fibod.config import Settings
from tests.integration.clients import Client
from tests.integration.stack import VAR, Stack, wait_for

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
#: Where the test keeps what the browser showed.
SCREENSHOT = VAR / "artifacts" / "dashboard.png"
#: Headless, as root, and never reaching out to the internet.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)
#: A task of some 90 segments: long enough to watch its bar move.
SN = 60_000


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    """A headless Chromium with a fresh profile, closed afterwards."""
    profile = tempfile.mkdtemp(prefix="fibod-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def progress_of(browser: WebDriver, task_id: str) -> tuple[str, int] | None:
    """Return the state and bar percentage the page shows for a task, if listed."""
    try:
        rows = browser.find_elements(By.CSS_SELECTOR, f'tr[data-task-id="{task_id}"]')
        if not rows:
            return None
        bar = rows[0].find_element(By.CSS_SELECTOR, ".bar")
        return rows[0].get_attribute("data-state") or "", int(bar.get_attribute("data-progress"))
    except StaleElementReferenceException:  # the table was redrawn meanwhile
        return None


def test_a_task_submitted_on_the_dashboard_fills_its_bar_to_100_percent(
    stack: Stack, settings: Settings, http: Client, browser: WebDriver
) -> None:
    # given: the dashboard open, showing the stack live
    browser.get(stack.base_url + "/myapp/")
    wait_for(
        lambda: browser.find_element(By.ID, "updated").text.startswith("updated"),
        20,
        "the dashboard's first update",
    )
    # when: a task is submitted from the page's form
    field = browser.find_element(By.ID, "submit-sn")
    field.clear()
    field.send_keys(str(SN))
    browser.find_element(By.ID, "submit-button").click()
    task_id = wait_for(
        lambda: browser.find_element(By.ID, "submit-result").get_attribute("data-task-id"),
        20,
        "the submitted task's id on the page",
    )
    # then: its row's bar only grows, and reaches 100% with the task ready
    seen: list[int] = []

    def finished() -> bool:
        shown = progress_of(browser, task_id)
        if shown is None:
            return False
        state, percent = shown
        seen.append(percent)
        return state == "ready" and percent == 100

    wait_for(finished, 90, f"task {task_id} at 100% on the dashboard", step_s=0.2)
    assert seen == sorted(seen), seen
    assert http.status(task_id)["state"] == "ready"
    # and the rest of the page shows the stack: every worker, both stores, the charts
    workers = browser.find_elements(By.CSS_SELECTOR, "#workers tr[data-worker]")
    assert len(workers) == int(settings.workers)
    stores = browser.find_elements(By.CSS_SELECTOR, "#stores tbody tr")
    assert {row.find_elements(By.TAG_NAME, "td")[0].text for row in stores} == {
        "task",
        "sequence",
    }
    assert int(browser.find_element(By.ID, "running").text) >= 0
    parts = browser.find_elements(By.CSS_SELECTOR, "#parts li.up")
    assert len(parts) == 3
    # the page made no error (a failed request, a script error)
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 20_000

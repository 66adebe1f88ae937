"""Headless Chromium through selenium and Debian's chromium-driver, with the console and network logs.

``python -m tests.viewer.browser PAGE PNG [--layer L --head H --token I --diff]`` saves a screenshot of a
viewer page with that head open and that token hovered (docs/viewer.png).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")
MISSING = None if CHROMIUM and DRIVER else "chromium and chromium-driver are not installed (apt-get install them)"


def open_browser(width: int = 1400, height: int = 1600):
    """A headless Chromium that logs the console and every network event (the driver binary on PATH,
    so selenium never tries to download one)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)


def console_errors(driver) -> list[str]:
    """The console messages of level SEVERE (errors, CSP violations included)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def requested_urls(driver) -> list[str]:
    """The URL of every request the page made (Chrome DevTools ``Network.requestWillBeSent`` events)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def screenshot(page: Path, png: Path, layer: int = 0, head: int = 0, token: int | None = None, diff: bool = False,
               width: int = 1400, height: int = 1600) -> None:
    """Save a screenshot of a viewer page with layer/head chosen, the difference shown and a token hovered."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = open_browser(width, height)
    try:
        driver.get(page.resolve().as_uri())
        Select(driver.find_element(By.ID, "layer")).select_by_value(str(layer))
        Select(driver.find_element(By.ID, "head")).select_by_value(str(head))
        if diff:
            driver.find_element(By.ID, "diff").click()
        if token is not None:
            css = f'#panel-attention .rowlabels .tok[data-i="{token}"]'
            ActionChains(driver).move_to_element(driver.find_element(By.CSS_SELECTOR, css)).click().perform()
        driver.save_screenshot(str(png))
    finally:
        driver.quit()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.viewer.browser")
    parser.add_argument("page", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--layer", type=int, default=0)
    parser.add_argument("--head", type=int, default=0)
    parser.add_argument("--token", type=int, default=None)
    parser.add_argument("--diff", action="store_true")
    parser.add_argument("--size", type=int, nargs=2, default=(1400, 1600), metavar=("W", "H"))
    a = parser.parse_args()
    screenshot(a.page, a.png, a.layer, a.head, a.token, a.diff, *a.size)

"""Headless Chromium through selenium and Debian's chromium-driver, with the console and network logs.

``python -m tests.viewer.browser PAGE PNG [WIDTH HEIGHT]`` saves a screenshot of a page (docs/viewer.png).
"""

from __future__ import annotations

import json
import shutil
import sys
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


def screenshot(page: Path, png: Path, width: int = 1400, height: int = 1600) -> None:
    """Save a screenshot of ``page`` as it first renders."""
    driver = open_browser(width, height)
    try:
        driver.get(page.resolve().as_uri())
        driver.save_screenshot(str(png))
    finally:
        driver.quit()


if __name__ == "__main__":
    args = sys.argv[1:]
    screenshot(Path(args[0]), Path(args[1]), *(int(a) for a in args[2:4]))

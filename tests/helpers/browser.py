"""A headless Chromium for the page tests (review page, benchmark board)."""

from __future__ import annotations

import shutil


def browser():
    """A headless Chromium driven by selenium, or None and the reason there is none."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        return (
            None,
            "no Chromium and chromedriver on PATH (.ci/run installs them: apt-get install chromium chromium-driver)",
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None, "selenium is not installed (pip install -e .[dev])"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,900"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options), None

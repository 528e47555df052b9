"""Headless chromium for the tests that open pages (the explorer page, the docs site).

Playwright drives Debian's chromium (its own browser download cannot run here). In CI a missing
browser or playwright fails these tests instead of skipping them: .ci/run installs chromium and
playwright is in the test extra.
"""
from __future__ import annotations

import os

import pytest

CHROMIUM = os.environ.get("LSTMKIT_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def unavailable(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must run the browser tests: {reason} (.ci/run installs chromium; playwright is in the test extra)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[test]')")
    if not os.path.exists(CHROMIUM):
        unavailable(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()

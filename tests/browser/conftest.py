"""Fixtures for the browser tests: Debian's Chromium driven by Playwright for Python, and a
folder of screenshots per test under test-artifacts/screenshots/.

No browser is ever downloaded (never run ``playwright install``): the tests use the Chromium
on PATH. Without it, or without the playwright package, they skip with the reason; CI sets
KHAIME_REQUIRE_BROWSER=1 (.ci/run), and then a missing browser fails them instead.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from ..live_server_support import live_shop_fixture, webhook_gate_fixture  # noqa: F401 - fixtures

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """The Chromium to drive; skips (or fails, with KHAIME_REQUIRE_BROWSER=1) when it can't run."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -r requirements.txt)")
    executable = shutil.which("chromium")
    if executable is None:
        missing.append("a chromium executable on PATH (apt-get install chromium)")
    if missing:
        reason = "browser tests need " + " and ".join(missing)
        if os.environ.get("KHAIME_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason}; KHAIME_REQUIRE_BROWSER=1 requires them", pytrace=False)
        pytest.skip(reason)
    return executable


@pytest.fixture(scope="module")
def browser(chromium_executable):
    """One headless Chromium for the module (launching takes about a second)."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio event loop running in this thread while it is open,
    # so Django takes every ORM call made from test code (and pytest-django's own flushes) for a
    # call from async code and raises SynchronousOnlyOperation. They are plain synchronous calls;
    # allow them, but only for as long as Playwright runs, so no other test loses the check.
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        chromium = playwright.chromium.launch(executable_path=chromium_executable, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh browser profile (no cookies) and tab for each test."""
    context = browser.new_context(viewport={"width": 1024, "height": 768}, locale="en-US")
    context.set_default_timeout(10_000)
    tab = context.new_page()
    yield tab
    context.close()


class Screenshots:
    """``shot("paid")`` writes NN-paid.png of the whole page, numbered in the order of the steps."""

    def __init__(self, page, folder: Path):
        self.page = page
        self.folder = folder
        self.taken: list[Path] = []

    def __call__(self, step: str) -> Path:
        path = self.folder / f"{len(self.taken) + 1:02d}-{step}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path


@pytest.fixture
def shot(request, page) -> Screenshots:
    """Screenshots of this test's steps, in test-artifacts/screenshots/<test name>/ (emptied first)."""
    name = re.sub(r"[^\w.-]+", "_", request.node.name)
    folder = request.config.rootpath / "test-artifacts" / "screenshots" / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return Screenshots(page, folder)

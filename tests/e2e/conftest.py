"""Browser fixtures: the system's Chromium driven by Playwright, and the IDE's address.

The browser is the system's Chromium (``chromium.py``). The IDE is opened where the platform
serves it (``/ide/``); a test front (``front.py``) with the real platform behind it serves
the terminal harness and can cut connections as a restarting server would. Each step's
screenshot lands in
``tests/e2e/artifacts/<test>/`` (git-ignored), and a failing test adds one of every open page.
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import ROOT
from tests.e2e.chromium import CHROMIUM, launch
from tests.e2e.front import Front
from tests.helpers import Platform

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
WEB = ROOT / "web"
TIMEOUT_MS = 20_000


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # noqa: ANN201
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="package")
def web_build() -> Path:
    """``web/dist`` and ``web/dist-e2e``, (re)built by ``make web`` only when stale."""
    if shutil.which("npm") is None:
        if not (WEB / "dist" / "index.html").exists() or not (WEB / "dist-e2e").exists():
            pytest.skip("npm is absent: the IDE (web/) cannot be built; install Node.js 20.19+")
        return WEB  # built earlier; without npm it cannot be checked for staleness
    subprocess.run(["make", "--no-print-directory", "-s", "web"], cwd=ROOT, check=True)
    return WEB


@pytest.fixture(scope="package")
def front(platform: Platform, web_build: Path) -> Iterator[Front]:
    static = {"/e2e/": web_build / "dist-e2e", "/ide/": web_build / "dist"}
    running = Front(platform.base_url, static)
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="package")
def ide_url(platform: Platform) -> str:
    """Where a person opens the IDE: the platform's own /ide/."""
    return platform.base_url + "/ide/"


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: scripts/system-deps.sh --test installs chromium")
    with sync_playwright() as playwright:
        launched = launch(playwright)
        yield launched
        launched.close()


@pytest.fixture
def new_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Callable[[], Page]]:
    """Pages of separate browser contexts: one per person (own cookies)."""
    contexts = []

    def make() -> Page:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield make
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        folder = artifacts_for(request.node.name)
        for n, context in enumerate(contexts):
            for m, page in enumerate(context.pages):
                page.screenshot(path=folder / f"failure-{n}-{m}.png")
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page: Callable[[], Page]) -> Page:
    return new_page()


def artifacts_for(test_name: str) -> Path:
    folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def snap(request: pytest.FixtureRequest) -> Callable[[Page, str], None]:
    """``snap(page, "step")`` saves artifacts/<test>/<nn>-step.png."""
    folder = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    counter = itertools.count(1)

    def take(page: Page, step: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=folder / f"{next(counter):02d}-{step}.png")

    return take


@pytest.fixture
def api_client(platform: Platform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.base_url, timeout=30) as client:
        yield client

"""Browser fixtures: the system's Chromium driven by Playwright, the IDE's address, probes.

The browser is Debian's ``/usr/bin/chromium`` (``scripts/system-deps.sh --test`` installs it);
Playwright's own browser download is never used. The IDE is opened where the platform serves
it (``/ide/``); until the platform does, a test front (``front.py``) serves ``web/dist`` on one
origin with the real platform behind it. Each step's screenshot lands in
``tests/e2e/artifacts/<test>/`` (git-ignored), and a failing test adds one of every open page.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import ROOT
from tests.e2e.front import Front
from tests.helpers import PASSWORD, Platform, User, new_user, new_workspace

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
# Headless and quiet: this machine has no network, so Chromium's own background traffic
# (updates, sync, field trials) is switched off instead of failing at every start.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
WEB = ROOT / "web"
SUBPROTOCOL = "channel.v1.terminal"
TIMEOUT_MS = 20_000


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # noqa: ANN201
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@cache
def platform_serves_ide(base_url: str) -> bool:
    """Does the platform itself serve the IDE at /ide/ (the lead's ingress change)?"""
    try:
        response = httpx.get(base_url + "/ide/", timeout=10)
    except httpx.TransportError:
        return False
    return response.status_code == 200 and 'content="cep-ide"' in response.text


@cache
def terminal_speaks_channel_mode(base_url: str, ws_url: str) -> bool:
    """Does the terminal WebSocket accept the channel subprotocol (the new terminal protocol,
    which brings channel and plain mode together)?"""
    from websockets.sync.client import connect

    with httpx.Client(base_url=base_url, timeout=30) as anonymous:
        user = new_user(anonymous)
    workspace = new_workspace(user)
    headers = {**user.headers, "Cookie": login_cookie(base_url, user)}
    try:
        with connect(
            f"{ws_url}/api/terminal/ws/{workspace}",
            subprotocols=[SUBPROTOCOL],
            additional_headers=headers,
            open_timeout=30,
        ) as socket:
            return socket.subprotocol == SUBPROTOCOL
    except Exception:  # noqa: BLE001 - any refusal means "not available"
        return False
    finally:
        user.client.delete(f"/api/postgres_sessions/{workspace}")
        user.client.close()


def login_cookie(base_url: str, user: User) -> str:
    """A Cookie header of a fresh login of ``user`` (whatever the cookie is named)."""
    response = httpx.post(
        base_url + "/api/users/login", json={"username": user.username, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return "; ".join(f"{name}={value}" for name, value in response.cookies.items())


@pytest.fixture(scope="package")
def web_build() -> Path:
    """``web/dist`` and ``web/dist-e2e``, (re)built by ``make web`` only when stale."""
    subprocess.run(["make", "--no-print-directory", "-s", "web"], cwd=ROOT, check=True)
    return WEB


@pytest.fixture(scope="package")
def front(platform: Platform, web_build: Path) -> Iterator[Front]:
    static = {"/e2e/": web_build / "dist-e2e"}
    if not platform_serves_ide(platform.base_url):
        static["/ide/"] = web_build / "dist"
    running = Front(platform.base_url, static)
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="package")
def ide_url(platform: Platform, front: Front) -> str:
    """Where a person opens the IDE: the platform's /ide/ once it serves it, else the front."""
    base = platform.base_url if platform_serves_ide(platform.base_url) else front.url
    return base + "/ide/"


@pytest.fixture
def needs_channel_mode(platform: Platform) -> None:
    if not terminal_speaks_channel_mode(platform.base_url, platform.ws_url):
        pytest.skip(
            "needs the terminal's channel and plain modes (subprotocol channel.v1.terminal) "
            "from the lead's branch"
        )


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: scripts/system-deps.sh --test installs chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
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

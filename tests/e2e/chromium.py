"""The one way the browser tests and bench/browser.py start a browser: the system's Chromium.

Playwright drives Debian's ``/usr/bin/chromium`` (``scripts/system-deps.sh --test`` installs it;
``CHROMIUM`` names another binary); its own browser download is never used.
"""

from __future__ import annotations

import os
from pathlib import Path

from playwright.sync_api import Browser, Playwright

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


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )

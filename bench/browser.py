"""Browser benchmark of the web IDE: bundle size, load to interactive, keystroke to echo.

    .venv/bin/python -m bench.browser [--runs 5] [--keys 120] [--flood-lines 200000]

In ONE run it builds ``web/`` (``make web``), starts the platform as the tests do, opens the IDE
where the platform serves it (``/ide/``), or through the browser tests' same-origin front
(``tests/e2e/front.py``) until it does, and drives the system's Chromium headless (Playwright):

  bundle     bytes and gzip (level 6, what a web server sends) of ``web/dist``: all of it, what
             the first screen fetched, and what opening a workspace added (resource timing)
  load       navigation start -> the page's ``ide:interactive`` mark (logged in, the workspace
             list drawn): cold = a new browser context (empty cache), warm = a new tab of the
             same context (cached assets); the median of ``--runs``
  workspace  navigation -> ``ide:editor-ready`` (main.py shown, editable) and
             ``ide:terminal-ready`` (the shell's "ready" status), cold and warm
  echo       keydown -> the echoed character in xterm.js's rows (a MutationObserver in the page,
             the page's clock): p50 / p95 / p99 / max of ``--keys`` keystrokes; and keydown ->
             the keystroke's frame sent ("sent") and the message carrying the echo ("arrived");
             the rest is xterm.js drawing
  flood      ``seq 1 N`` typed -> its last line on screen: seconds, and the pause/resume control
             messages the client's flow control sent meanwhile

The terminal figures need the terminal's channel mode; without it they are reported as skipped.
Results: bench/results/browser-<time>.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import BrowserContext, Page, sync_playwright

from bench.http import fresh_database, start_gateway
from bench.stats import percentile
from tests.e2e.chromium import launch
from tests.e2e.front import Front
from tests.e2e.probes import platform_serves_ide, terminal_speaks_channel_mode
from tests.helpers import PASSWORD, new_user, new_workspace

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
DIST = ROOT / "web" / "dist"
MARK = "() => performance.getEntriesByName({name!r}).length > 0"
MARK_TIME = "() => performance.getEntriesByName({name!r})[0].startTime"
LOADED = "() => performance.getEntriesByType('resource').map(r => r.name)"

# Counts the flow-control messages the IDE's terminal client sends (channel 1 frames).
COUNT_CONTROLS = """
(() => {
  const send = WebSocket.prototype.send;
  window.__controls = { pause: 0, resume: 0 };
  WebSocket.prototype.send = function (data) {
    const echo = window.__echo;
    if (echo && echo.expect !== null && echo.sent === null && data instanceof Uint8Array
        && data[0] === 0) echo.sent = performance.now();
    if (data instanceof Uint8Array && data[0] === 1) {
      const text = new TextDecoder().decode(data.subarray(1));
      if (text.includes('"pause"')) window.__controls.pause++;
      if (text.includes('"resume"')) window.__controls.resume++;
    }
    return send.call(this, data);
  };
  // The echo probe's "arrived": the first WebSocket message after a keydown (listeners added
  // here run before the page's own).
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', () => {
        const echo = window.__echo;
        if (echo && echo.expect !== null && echo.arrived === null) echo.arrived = performance.now();
      });
    }
  };
})();
"""

# keydown time -> the moment the rows show the marker plus every character typed so far.
ECHO_PROBE = """
(marker) => {
  const rows = document.querySelector('.terminal-screen .xterm-rows');
  const state = { marker, typed: '', expect: null, t0: 0, samples: [], arrivals: [],
                  sent: null, sends: [], arrived: null, active: false };
  window.__echo = state;
  document.addEventListener('keydown', (event) => {
    if (!state.active || event.key.length !== 1) return;
    state.expect = state.typed + event.key;
    state.arrived = null;
    state.sent = null;
    state.t0 = performance.now();
  }, true);
  new MutationObserver(() => {
    if (state.expect === null) return;
    if (rows.textContent.includes(state.marker + state.expect)) {
      state.samples.push(performance.now() - state.t0);
      if (state.arrived !== null) state.arrivals.push(state.arrived - state.t0);
      if (state.sent !== null) state.sends.push(state.sent - state.t0);
      state.typed = state.expect;
      state.expect = null;
    }
  }).observe(rows, { childList: true, subtree: true, characterData: true });
}
"""


def gzip_size(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), compresslevel=6))


def dist_files() -> dict[str, Path]:
    """URL path (under /ide/) -> file, for everything the build produced."""
    return {
        "/ide/" + str(p.relative_to(DIST)): p
        for p in DIST.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


def sizes(urls: list[str], files: dict[str, Path]) -> dict[str, int]:
    """Raw and gzip bytes of the dist files behind these URLs."""
    paths = {
        files[u]
        for u in (re.sub(r"^https?://[^/]+", "", u).split("#")[0] for u in urls)
        if u in files
    }
    return {
        "files": len(paths),
        "bytes": sum(p.stat().st_size for p in paths),
        "gzip_bytes": sum(gzip_size(p) for p in paths),
    }


def new_context(browser: Any, base: str, username: str) -> BrowserContext:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(60_000)
    response = context.request.post(
        base + "/api/users/login", data={"username": username, "password": PASSWORD}
    )
    assert response.ok, response.text()
    return context


def mark(page: Page, name: str) -> float:
    page.wait_for_function(MARK.format(name=name))
    return round(page.evaluate(MARK_TIME.format(name=name)), 1)


def summary(values: list[float]) -> dict[str, Any]:
    return {"median_ms": round(statistics.median(values), 1), "runs_ms": values}


def measure_loads(
    browser: Any, ide: str, base: str, user: str, workspace: str, runs: int, terminal: bool
) -> dict[str, Any]:
    cold, warm, ws_cold, ws_warm, term_cold, term_warm = [], [], [], [], [], []
    resources: dict[str, list[str]] = {}
    for _ in range(runs):
        context = new_context(browser, base, user)
        page = context.new_page()
        page.goto(ide + "#/workspaces")
        cold.append(mark(page, "ide:interactive"))
        resources["first_screen"] = page.evaluate(LOADED)
        tab = context.new_page()
        tab.goto(ide + "#/workspaces")
        warm.append(mark(tab, "ide:interactive"))

        page = context.new_page()  # same context: the IDE's own assets are cached now
        page.goto(f"{ide}#/w/{workspace}")
        ws_warm.append(mark(page, "ide:editor-ready"))
        if terminal:
            term_warm.append(mark(page, "ide:terminal-ready"))
        context.close()

        context = new_context(browser, base, user)
        page = context.new_page()
        page.goto(f"{ide}#/w/{workspace}")
        ws_cold.append(mark(page, "ide:editor-ready"))
        if terminal:
            term_cold.append(mark(page, "ide:terminal-ready"))
        resources["workspace"] = page.evaluate(LOADED)
        context.close()
    result = {
        "load_cold": summary(cold),
        "load_warm": summary(warm),
        "workspace_editor_cold": summary(ws_cold),
        "workspace_editor_warm": summary(ws_warm),
    }
    if terminal:
        result["workspace_terminal_cold"] = summary(term_cold)
        result["workspace_terminal_warm"] = summary(term_warm)
    files = dist_files()
    first = sizes(resources["first_screen"], files)
    everything = sizes(resources["workspace"], files)
    result["bundle"] = {
        "dist_total": sizes(list(files), files),
        "first_screen": first,
        "workspace_view": everything,
    }
    return result


def measure_terminal(
    browser: Any, ide: str, base: str, user: str, workspace: str, keys: int, flood_lines: int
) -> dict[str, Any]:
    context = new_context(browser, base, user)
    context.add_init_script(COUNT_CONTROLS)
    page = context.new_page()
    page.goto(f"{ide}#/w/{workspace}")
    mark(page, "ide:terminal-ready")
    page.locator(".terminal-screen").click()
    page.evaluate(ECHO_PROBE, "#echo:")
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    done = 0
    while done < keys:
        page.keyboard.type("#echo:")
        page.wait_for_function(
            "() => document.querySelector('.xterm-rows').textContent.includes('#echo:')"
        )
        page.evaluate("() => { __echo.typed = ''; __echo.active = true; }")
        for char in alphabet[: min(len(alphabet), keys - done)]:
            page.keyboard.press(char)
            page.wait_for_function("() => __echo.expect === null", polling=1)
            done += 1
        page.evaluate("() => { __echo.active = false; }")
        page.keyboard.press("Enter")
        page.keyboard.type("clear\n")
        page.wait_for_function(
            "() => !document.querySelector('.xterm-rows').textContent.includes('#echo:')"
        )
    samples = page.evaluate("() => __echo.samples")
    arrivals = page.evaluate("() => __echo.arrivals")
    sends = page.evaluate("() => __echo.sends")
    echo = {
        "samples": len(samples),
        "p50_ms": round(percentile(samples, 0.50), 2),
        "p95_ms": round(percentile(samples, 0.95), 2),
        "p99_ms": round(percentile(samples, 0.99), 2),
        "max_ms": round(max(samples), 2),
        # keydown -> the keystroke's frame sent (the browser's input handling and xterm.js),
        # keydown -> the echo's WebSocket message (that, the network and the platform)
        "sent_p50_ms": round(percentile(sends, 0.50), 2) if sends else None,
        "arrived_p50_ms": round(percentile(arrivals, 0.50), 2) if arrivals else None,
        "arrived_p99_ms": round(percentile(arrivals, 0.99), 2) if arrivals else None,
    }

    page.keyboard.type(f"seq 1 {flood_lines}; echo FLOOD''DONE")
    started = time.perf_counter()
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('.xterm-rows').textContent.includes('FLOODDONE')",
        polling="raf",
        timeout=300_000,
    )
    seconds = time.perf_counter() - started
    flood_bytes = sum(len(str(n)) + 2 for n in range(1, flood_lines + 1))  # "n\r\n"
    flood = {
        "lines": flood_lines,
        "bytes": flood_bytes,
        "seconds": round(seconds, 2),
        "mb_per_s": round(flood_bytes / seconds / 1e6, 2),
        "controls_sent": page.evaluate("() => window.__controls"),
    }
    context.close()
    return {"echo": echo, "flood": flood}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keys", type=int, default=120)
    parser.add_argument("--flood-lines", type=int, default=200_000)
    args = parser.parse_args()

    subprocess.run(["make", "--no-print-directory", "-s", "web"], cwd=ROOT, check=True)
    RESULTS.mkdir(exist_ok=True)
    with fresh_database() as database_url:
        platform = start_gateway(database_url)
        front = None
        try:
            if platform_serves_ide(platform.base_url):
                origin = platform.base_url
            else:
                front = Front(platform.base_url, {"/ide/": DIST})
                origin = front.start()
            terminal = terminal_speaks_channel_mode(platform.base_url, platform.ws_url)
            with httpx.Client(base_url=platform.base_url, timeout=30) as anonymous:
                user = new_user(anonymous)
            workspace = new_workspace(user, "bench")
            user.client.post(f"/api/workspace/{workspace}/ensure-defaults")
            results: dict[str, Any] = {
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "served_by": "platform /ide/"
                if front is None
                else "test front (tests/e2e/front.py)",
                "terminal": "channel mode" if terminal else "skipped: no channel mode",
            }
            with sync_playwright() as playwright:
                browser = launch(playwright)
                results["chromium"] = browser.version
                ide = origin + "/ide/"
                results.update(
                    measure_loads(
                        browser, ide, origin, user.username, workspace, args.runs, terminal
                    )
                )
                if terminal:
                    results.update(
                        measure_terminal(
                            browser,
                            ide,
                            origin,
                            user.username,
                            workspace,
                            args.keys,
                            args.flood_lines,
                        )
                    )
                browser.close()
        finally:
            if front is not None:
                front.stop()
            platform.stop()
    out = RESULTS / f"browser-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items()}, indent=2))
    print(f"\nresults: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

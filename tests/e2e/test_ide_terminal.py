"""The terminal in the browser: the IDE's xterm.js client in channel mode, and the stock
xterm.js AttachAddon in plain mode. Both need the terminal protocol from the lead's branch;
until the platform accepts the channel subprotocol these tests skip and say so."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
from playwright.sync_api import Page, expect

from tests.e2e.front import Front
from tests.e2e.ui import (
    log_in,
    open_workspace,
    replace_editor_text,
    save_with_keyboard,
    terminal_text,
    tree_item,
    type_in_terminal,
)
from tests.helpers import PASSWORD, new_user, new_workspace

Snap = Callable[[Page, str], None]


def _ready_workspace(page: Page, ide_url: str, api_client: httpx.Client) -> str:
    user = new_user(api_client)
    workspace = new_workspace(user, "terminal")
    assert user.client.post(f"/api/workspace/{workspace}/ensure-defaults").status_code == 200
    log_in(page, ide_url, user.username)
    open_workspace(page, ide_url, workspace)
    expect(page.get_by_test_id("terminal-state")).to_have_text("ready")
    return workspace


def test_main_py_saved_in_the_editor_runs_in_the_terminal(
    page: Page, ide_url: str, api_client: httpx.Client, snap: Snap
):
    _ready_workspace(page, ide_url, api_client)
    replace_editor_text(page, 'print("hello from main.py", 6 * 7)\n')
    save_with_keyboard(page)
    expect(page.get_by_test_id("editor-state")).to_have_text("saved")
    type_in_terminal(page, "python3 main.py\n")
    expect(page.locator(".terminal-screen .xterm-rows")).to_contain_text("hello from main.py 42")
    snap(page, "main-py-ran")


def test_a_file_created_in_the_terminal_appears_in_the_tree(
    page: Page, ide_url: str, api_client: httpx.Client, snap: Snap
):
    _ready_workspace(page, ide_url, api_client)
    type_in_terminal(page, "mkdir -p out && echo made-in-the-shell > out/from_shell.txt\n")
    # no click: the tree refreshes by itself once the terminal goes quiet
    expect(tree_item(page, "out")).to_be_visible()
    tree_item(page, "out").locator(".tree-label").first.click()
    tree_item(page, "out/from_shell.txt").locator(".tree-label").click()
    expect(page.locator(".cm-content")).to_contain_text("made-in-the-shell")
    snap(page, "file-from-shell-in-tree")


def test_the_terminal_shows_its_recent_output_again_after_a_page_reload(
    page: Page, ide_url: str, api_client: httpx.Client, snap: Snap
):
    _ready_workspace(page, ide_url, api_client)
    type_in_terminal(page, "echo before-$((40+2))-reload\n")
    expect(page.locator(".terminal-screen .xterm-rows")).to_contain_text("before-42-reload")
    page.reload()
    expect(page.get_by_test_id("terminal-state")).to_have_text("ready")
    expect(page.locator(".terminal-screen .xterm-rows")).to_contain_text("before-42-reload")
    type_in_terminal(page, "echo after-$((40+3))-reload\n")
    expect(page.locator(".terminal-screen .xterm-rows")).to_contain_text("after-43-reload")
    snap(page, "replayed-after-reload")


def test_the_terminal_reconnects_by_itself_and_shows_what_the_shell_printed(
    page: Page, front: Front, api_client: httpx.Client, snap: Snap
):
    # through the test front, which can cut the connection as a restarting server would
    _ready_workspace(page, front.url + "/ide/", api_client)
    type_in_terminal(page, "echo before-$((40+2))-cut\n")
    rows = page.locator(".terminal-screen .xterm-rows")
    expect(rows).to_contain_text("before-42-cut")
    assert front.drop_websockets() == 1
    expect(page.get_by_test_id("terminal-state")).to_contain_text("reconnecting")
    snap(page, "connection-cut")
    expect(page.get_by_test_id("terminal-state")).to_have_text("ready")
    expect(rows).to_contain_text("before-42-cut")  # replayed by the platform on reattach
    type_in_terminal(page, "echo after-$((40+3))-cut\n")
    expect(rows).to_contain_text("after-43-cut")
    snap(page, "reconnected")


def test_the_shell_gets_the_size_of_the_pane_when_the_window_is_resized(
    page: Page, ide_url: str, api_client: httpx.Client, snap: Snap
):
    _ready_workspace(page, ide_url, api_client)

    def shell_size(tag: str) -> tuple[int, int]:
        type_in_terminal(page, f"echo {tag}-$(stty size | tr ' ' x)-end\n")
        pattern = re.compile(rf"{tag}-(\d+)x(\d+)-end")
        expect(page.locator(".terminal-screen .xterm-rows")).to_contain_text(pattern)
        rows, cols = pattern.search(terminal_text(page)).groups()
        return int(rows), int(cols)

    small = shell_size("small")
    page.set_viewport_size({"width": 1600, "height": 1000})
    # xterm.js draws one row element per row: once it has more, the resize was sent
    expect(page.locator(".terminal-screen .xterm-rows > div")).not_to_have_count(small[0])
    bigger = shell_size("bigger")
    assert bigger[0] > small[0] and bigger[1] > small[1], (small, bigger)
    snap(page, "resized")


def test_a_flood_of_output_arrives_whole_and_the_terminal_keeps_answering(
    page: Page, ide_url: str, api_client: httpx.Client, snap: Snap
):
    _ready_workspace(page, ide_url, api_client)
    # ~1.3 MB: far past the pause watermark, so the flow control has to pause and resume
    type_in_terminal(page, "seq 1 200000; echo flood-$((6*7))-done\n")
    rows = page.locator(".terminal-screen .xterm-rows")
    expect(rows).to_contain_text("flood-42-done", timeout=60_000)
    assert "200000" in terminal_text(page)
    type_in_terminal(page, "echo still-$((1+1))-here\n")
    expect(rows).to_contain_text("still-2-here")
    snap(page, "after-flood")


def test_the_stock_attach_addon_runs_a_command_in_plain_mode_without_stray_text(
    new_page: Callable[[], Page], front: Front, api_client: httpx.Client, snap: Snap
):
    user = new_user(api_client)
    workspace = new_workspace(user, "plain")
    page = new_page()
    login = page.request.post(
        front.url + "/api/users/login", data={"username": user.username, "password": PASSWORD}
    )
    assert login.ok, login.text()  # the browser context now holds the login cookie
    page.goto(f"{front.url}/e2e/index.html?session={workspace}")
    expect(page.locator("#state")).to_have_text('open protocol=""')
    page.locator("#terminal").click()
    page.keyboard.type("echo plain-$((6*7))-mode\n")
    page.wait_for_function("() => window.screenText().includes('plain-42-mode')")
    text = page.evaluate("() => window.screenText()")
    snap(page, "attach-addon-plain-mode")
    assert '"type"' not in text and '{"' not in text, text  # no control message became text
    expect(page.locator("#state")).to_have_text('open protocol=""')

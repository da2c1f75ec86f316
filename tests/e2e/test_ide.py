"""The IDE in a real headless Chromium: accounts, workspaces, the file tree and the editor."""

from __future__ import annotations

import base64
from collections.abc import Callable

import httpx
from playwright.sync_api import Page, expect

from tests.e2e.ui import (
    editor_text,
    log_in,
    open_workspace,
    replace_editor_text,
    save_with_keyboard,
    tree_item,
)
from tests.helpers import PASSWORD, new_user, new_workspace, unique_name, wait_until

Snap = Callable[[Page, str], None]


def _read(user, workspace: str, path: str) -> str:  # noqa: ANN001 - a tests.helpers.User
    response = user.client.get(f"/api/workspace/{workspace}/files/{path}")
    assert response.status_code == 200, response.text
    return response.json()["data"]["content"]


def _workspace_with_defaults(user) -> str:  # noqa: ANN001
    workspace = new_workspace(user, "editor")
    assert user.client.post(f"/api/workspace/{workspace}/ensure-defaults").status_code == 200
    return workspace


def test_a_new_person_registers_logs_out_and_logs_back_in(page: Page, ide_url: str, snap: Snap):
    username = unique_name("ide")
    page.goto(ide_url)
    expect(page.get_by_role("form", name="Log in")).to_be_visible()
    snap(page, "login-screen")

    page.get_by_role("link", name="Register").click()
    form = page.get_by_role("form", name="Register")
    form.get_by_label("Username").fill(username)
    form.get_by_label("Email").fill(f"{username}@example.com")
    form.get_by_label("Password").fill(PASSWORD)
    snap(page, "register-filled")
    form.get_by_role("button", name="Create account").click()
    expect(page.get_by_test_id("whoami")).to_contain_text(username)
    expect(page.locator(".workspace-list")).to_contain_text("No workspace yet")
    snap(page, "registered-and-logged-in")

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("form", name="Log in")).to_be_visible()

    form = page.get_by_role("form", name="Log in")
    form.get_by_label("Username or email").fill(username)
    form.get_by_label("Password").fill("not the password")
    form.get_by_role("button", name="Log in").click()
    expect(form.get_by_role("alert")).not_to_be_empty()
    snap(page, "wrong-password-refused")

    log_in(page, ide_url, username)
    expect(page.locator(".workspace-list")).to_be_visible()
    snap(page, "logged-back-in")


def test_workspaces_are_created_renamed_and_deleted_from_the_list(
    page: Page, ide_url: str, api_client: httpx.Client, snap: Snap
):
    user = new_user(api_client)
    log_in(page, ide_url, user.username)

    page.get_by_role("button", name="New workspace").click()
    page.get_by_role("dialog").get_by_label("Name").fill("demo")
    page.get_by_role("dialog").get_by_role("button", name="Create").click()
    expect(page.locator(".workspace-title")).to_have_text("demo")
    expect(tree_item(page, "main.py")).to_be_visible()
    expect(tree_item(page, "requirements.txt")).to_be_visible()
    expect(page.locator(".editor-path")).to_contain_text("main.py")
    snap(page, "new-workspace-open")

    page.get_by_role("link", name="Workspaces", exact=True).first.click()
    expect(page.locator(".workspace-row")).to_have_count(1)
    page.get_by_role("button", name="Rename demo").click()
    page.get_by_role("dialog").get_by_label("Name").fill("renamed")
    page.get_by_role("dialog").get_by_role("button", name="Rename").click()
    expect(page.locator(".workspace-name")).to_have_text("renamed")
    sessions = user.client.get("/api/postgres_sessions/").json()["data"]
    assert [s["name"] for s in sessions] == ["renamed"]
    snap(page, "renamed")

    page.get_by_role("button", name="Delete renamed").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(page.locator(".workspace-list")).to_contain_text("No workspace yet")
    assert user.client.get("/api/postgres_sessions/").json()["data"] == []
    snap(page, "deleted")


def test_main_py_is_edited_and_saved_with_ctrl_s(
    page: Page, ide_url: str, api_client: httpx.Client, snap: Snap
):
    user = new_user(api_client)
    workspace = _workspace_with_defaults(user)
    log_in(page, ide_url, user.username)
    open_workspace(page, ide_url, workspace)
    expect(page.locator(".editor-path")).to_contain_text("Python")
    assert editor_text(page).strip() == _read(user, workspace, "main.py").strip()
    snap(page, "main-py-open")

    replace_editor_text(page, 'print("saved from the IDE", 6 * 7)\n')
    expect(page.get_by_test_id("editor-state")).to_have_text("unsaved")
    save_with_keyboard(page)
    expect(page.get_by_test_id("editor-state")).to_have_text("saved")
    assert _read(user, workspace, "main.py") == 'print("saved from the IDE", 6 * 7)\n'
    snap(page, "saved")


def test_a_save_over_a_change_made_behind_the_editors_back_asks_what_to_do(
    page: Page, ide_url: str, api_client: httpx.Client, snap: Snap
):
    user = new_user(api_client)
    workspace = _workspace_with_defaults(user)
    log_in(page, ide_url, user.username)
    open_workspace(page, ide_url, workspace)
    url = f"/api/workspace/{workspace}/files/main.py"
    conflict = page.get_by_role("dialog", name="This file changed on the platform")

    # 1. keep editing: nothing is written, my text stays
    replace_editor_text(page, "mine = 1\n")
    assert user.client.put(url, json={"content": "theirs = 1\n"}).status_code == 200
    save_with_keyboard(page)
    expect(conflict).to_be_visible()
    snap(page, "conflict-prompt")
    conflict.get_by_role("button", name="Keep editing").click()
    expect(conflict).to_be_hidden()
    assert editor_text(page) == "mine = 1\n"
    expect(page.get_by_test_id("editor-state")).to_contain_text("not saved")
    assert _read(user, workspace, "main.py") == "theirs = 1\n"

    # 2. reload theirs: the editor shows the platform's version
    save_with_keyboard(page)
    expect(conflict).to_be_visible()
    conflict.get_by_role("button", name="Reload theirs").click()
    expect(page.locator(".cm-content")).to_contain_text("theirs = 1")
    expect(page.get_by_test_id("editor-state")).to_have_text("saved")
    snap(page, "reloaded-theirs")

    # 3. overwrite mine: my version replaces theirs
    replace_editor_text(page, "mine = 2\n")
    assert user.client.put(url, json={"content": "theirs = 2\n"}).status_code == 200
    save_with_keyboard(page)
    expect(conflict).to_be_visible()
    conflict.get_by_role("button", name="Overwrite mine").click()
    expect(page.get_by_test_id("editor-state")).to_have_text("saved")
    assert _read(user, workspace, "main.py") == "mine = 2\n"
    snap(page, "overwrote-mine")


def test_the_tree_makes_nested_folders_renames_deletes_and_shows_binary_files_as_binary(
    page: Page, ide_url: str, api_client: httpx.Client, snap: Snap
):
    user = new_user(api_client)
    workspace = _workspace_with_defaults(user)
    binary = base64.b64encode(bytes([0, 1, 2, 255, 254])).decode()
    created = user.client.post(
        f"/api/workspace/{workspace}/files",
        json={"path": "data.bin", "content": binary, "encoding": "base64"},
    )
    assert created.status_code == 201, created.text
    log_in(page, ide_url, user.username)
    open_workspace(page, ide_url, workspace)
    dialog = page.get_by_role("dialog")

    page.get_by_role("button", name="+ Folder").click()
    dialog.get_by_label("Path").fill("pkg/sub")
    dialog.get_by_role("button", name="Create").click()
    expect(tree_item(page, "pkg/sub")).to_be_visible()

    page.get_by_role("button", name="+ File").click()  # into the selected folder
    expect(dialog.get_by_label("Path")).to_have_value("pkg/sub/")
    page.keyboard.type("util.py")  # the cursor waits after the folder
    dialog.get_by_role("button", name="Create").click()
    expect(tree_item(page, "pkg/sub/util.py")).to_be_visible()
    expect(page.locator(".editor-path")).to_contain_text("pkg/sub/util.py")
    replace_editor_text(page, "VALUE = 42\n")
    save_with_keyboard(page)
    expect(page.get_by_test_id("editor-state")).to_have_text("saved")
    snap(page, "nested-file-created")

    tree_item(page, "pkg").locator(".tree-row").first.hover()
    page.get_by_role("button", name="Rename pkg", exact=True).click()
    dialog.get_by_label("New path").fill("lib")
    dialog.get_by_role("button", name="Rename").click()
    expect(tree_item(page, "lib/sub/util.py")).to_be_visible()
    expect(tree_item(page, "pkg")).to_have_count(0)
    expect(page.locator(".editor-path")).to_contain_text("lib/sub/util.py")
    paths = [e["path"] for e in user.client.get(f"/api/workspace/{workspace}/files").json()["data"]]
    assert "pkg" not in paths and "lib/sub/util.py" in paths
    assert _read(user, workspace, "lib/sub/util.py") == "VALUE = 42\n"
    snap(page, "folder-renamed")

    tree_item(page, "lib").locator(".tree-row").first.hover()
    page.get_by_role("button", name="Delete lib", exact=True).click()
    dialog.get_by_role("button", name="Delete").click()
    expect(tree_item(page, "lib")).to_have_count(0)
    expect(page.locator(".editor-path")).to_have_text("No file open")
    wait_until(
        lambda: all(
            not e["path"].startswith("lib")
            for e in user.client.get(f"/api/workspace/{workspace}/files").json()["data"]
        ),
        "lib/ to be deleted",
    )
    snap(page, "folder-deleted")

    tree_item(page, "data.bin").locator(".tree-label").click()
    expect(page.get_by_test_id("binary-file")).to_contain_text("binary file")
    expect(page.locator(".editor-pane .cm-content")).to_have_count(0)
    expect(tree_item(page, "data.bin").locator(".badge")).to_have_text("binary")
    snap(page, "binary-file")

"""What a person does in the IDE, as Playwright steps (selectors in one place)."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.helpers import PASSWORD


def log_in(page: Page, ide_url: str, username: str, password: str = PASSWORD) -> None:
    page.goto(ide_url + "#/login")
    form = page.get_by_role("form", name="Log in")
    form.get_by_label("Username or email").fill(username)
    form.get_by_label("Password").fill(password)
    form.get_by_role("button", name="Log in").click()
    expect(page.get_by_test_id("whoami")).to_contain_text(username)


def open_workspace(page: Page, ide_url: str, workspace_id: str) -> None:
    page.goto(f"{ide_url}#/w/{workspace_id}")
    expect(page.locator(".cm-content")).to_be_visible()


def tree_item(page: Page, path: str):  # noqa: ANN201 - a Locator
    return page.locator(f'.tree [role="treeitem"][data-path="{path}"]')


def editor_text(page: Page) -> str:
    """The document in CodeMirror: one DOM line per document line (an empty one holds a <br>)."""
    return "\n".join(t.rstrip("\n") for t in page.locator(".cm-content .cm-line").all_inner_texts())


def replace_editor_text(page: Page, text: str) -> None:
    page.locator(".cm-content").click()
    page.keyboard.press("ControlOrMeta+a")
    # inserted as text input, not key by key: no auto-indent or bracket closing interferes
    page.keyboard.insert_text(text)


def save_with_keyboard(page: Page) -> None:
    page.locator(".cm-content").press("ControlOrMeta+s")


def terminal_text(page: Page) -> str:
    return page.locator(".terminal-screen .xterm-rows").inner_text().replace("\xa0", " ")


def type_in_terminal(page: Page, text: str) -> None:
    page.locator(".terminal-screen").click()
    page.keyboard.type(text)

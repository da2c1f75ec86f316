"""Reviews in the IDE: an author submits, a reviewer claims, reads read-only and decides,
and the author sees the decision."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from playwright.sync_api import Page, expect

from tests.e2e.ui import editor_text, log_in, open_workspace, tree_item
from tests.helpers import new_user, new_workspace

CODE = 'def answer():\n    return 42\n\nprint("reviewed", answer())\n'


def test_a_reviewer_claims_reads_read_only_and_approves_and_the_author_sees_the_decision(
    new_page: Callable[[], Page],
    ide_url: str,
    api_client: httpx.Client,
    snap: Callable[[Page, str], None],
):
    author = new_user(api_client)
    reviewer = new_user(api_client)
    workspace = new_workspace(author, "for review")
    put = author.client.put(f"/api/workspace/{workspace}/files/main.py", json={"content": CODE})
    assert put.status_code == 200, put.text

    # The author submits the workspace for review.
    page = new_page()
    log_in(page, ide_url, author.username)
    open_workspace(page, ide_url, workspace)
    page.get_by_role("button", name="Submit for review").click()
    dialog = page.get_by_role("dialog", name="Submit for review")
    dialog.get_by_label("Title").fill("Please review the answer")
    dialog.get_by_label("What should the reviewer look at?").fill("Is 42 right?")
    dialog.get_by_label("Priority").select_option("high")
    dialog.get_by_role("button", name="Submit").click()
    badge = page.get_by_test_id("review-badge")
    expect(badge.locator(".review-status")).to_have_text("pending")
    expect(page.get_by_role("button", name="Submit for review")).to_have_count(0)
    snap(page, "author-submitted")

    # The second user turns reviewing on, sees the request and claims it.
    other = new_page()
    log_in(other, ide_url, reviewer.username)
    other.get_by_role("link", name="Reviews").click()
    expect(other.locator(".review-sections")).to_contain_text("You are not a reviewer")
    other.get_by_role("link", name="Settings", exact=True).first.click()
    other.get_by_label("I review other people's workspaces").check()
    other.get_by_role("button", name="Save").click()
    expect(other.get_by_test_id("reviewer-state")).to_have_text("yes (level 1)")
    snap(other, "reviewer-on")

    other.get_by_role("link", name="Reviews").click()
    waiting = other.locator('[data-section="waiting"]')
    row = waiting.locator(".review-row", has_text="Please review the answer")
    expect(row).to_be_visible()
    expect(row.locator(".priority")).to_have_text("high")
    snap(other, "review-queue")
    row.get_by_role("button", name="Claim").click()

    # The read-only view: the files, no save, no terminal, no tree actions.
    expect(other.locator(".review-head h1")).to_contain_text("Please review the answer")
    expect(other.locator(".review-head .review-status")).to_have_text("in review")
    expect(other.locator(".cm-content")).to_contain_text("return 42")
    assert editor_text(other) == CODE
    expect(other.locator(".cm-content")).to_have_attribute("contenteditable", "false")
    expect(other.get_by_role("button", name="Save")).to_have_count(0)
    expect(other.get_by_role("button", name="+ File")).to_have_count(0)
    expect(other.locator(".terminal-pane")).to_have_count(0)
    expect(tree_item(other, "requirements.txt")).to_have_count(0)  # only what the author has
    other.locator(".cm-content").click()
    other.keyboard.type("sabotage")
    assert editor_text(other) == CODE
    snap(other, "read-only-review")

    other.get_by_placeholder("Comment for the author (optional)").fill("Looks right to me")
    other.get_by_role("button", name="Approve").click()
    expect(other.locator(".review-head .review-status")).to_have_text("approved")
    expect(other.get_by_role("button", name="Approve")).to_have_count(0)
    snap(other, "approved")

    # The author sees the decision and the comment.
    page.reload()
    expect(badge.locator(".review-status")).to_have_text("approved")
    expect(badge).to_contain_text("Looks right to me")
    snap(page, "author-sees-approval")
    page.get_by_role("link", name="Reviews").click()
    mine = page.locator('[data-section="submitted"] .review-row', has_text="Please review")
    expect(mine.locator(".review-status")).to_have_text("approved")
    snap(page, "author-review-list")

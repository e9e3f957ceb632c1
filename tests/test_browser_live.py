"""The page keeps up with what happens, in every tab, without a reload."""

import pytest
from playwright.sync_api import expect

from tests.helpers import ask, sign_up

pytestmark = pytest.mark.browser


def mark(page):
    """A flag a reload would clear."""
    page.evaluate("window.notReloaded = true")


def not_reloaded(page):
    assert page.evaluate("window.notReloaded") is True


def test_a_conversation_started_on_the_page_gets_its_controls_at_once(server, page):
    sign_up(page, server)
    mark(page)

    ask(page, "Plan a picnic", model="fake-model")

    header = page.get_by_role("navigation", name="Conversation")
    for control in ("Settings", "Markdown", "JSON"):
        expect(header.get_by_role("link", name=control)).to_be_visible()
    expect(page.locator('article.role-assistant[data-status="complete"]')).to_have_count(1)
    header.get_by_text("Manage").click()
    expect(header.get_by_label("Title")).to_have_value("Plan a picnic")
    header.get_by_text("Manage").click()
    header.get_by_role("link", name="Settings").click()
    panel = page.get_by_role("dialog", name="Conversation settings")
    expect(panel.get_by_label("Title")).to_have_value("Plan a picnic")
    panel.get_by_role("button", name="Close").click()
    conversation = page.url.split("/c/")[1].strip("/")
    expect(header.get_by_role("link", name="JSON")).to_have_attribute(
        "href", f"/c/{conversation}/export.json"
    )
    not_reloaded(page)


def test_an_edited_message_gets_its_version_switcher_at_once(server, page):
    sign_up(page, server)
    ask(page, "Tell me about cats", model="fake-model")
    expect(page.locator('article.role-assistant[data-status="complete"]')).to_have_count(1)
    mark(page)

    page.locator("article.role-user").get_by_role("button", name="Edit").click()
    page.get_by_label("Message").fill("Tell me about dogs")
    page.get_by_label("Message").press("Enter")

    switcher = page.locator("article.role-user .siblings")
    expect(switcher).to_contain_text("2 / 2")
    expect(page.locator('article.role-assistant[data-status="complete"]')).to_have_count(1)
    not_reloaded(page)
    switcher.get_by_role("button", name="Previous version").click()
    expect(page.locator("article.role-user .message-body")).to_have_text("Tell me about cats")


def test_changes_made_in_one_tab_show_in_the_other(server, context):
    first, second = context.new_page(), context.new_page()
    sign_up(first, server)
    ask(first, "A question", model="fake-model")
    expect(first.locator('article.role-assistant[data-status="complete"]')).to_have_count(1)
    ask(first, "Another one", model="fake-model")
    expect(first.locator('article.role-assistant[data-status="complete"]')).to_have_count(2)
    second.goto(first.url)
    expect(second.locator('body[data-connection="open"]')).to_have_count(1)
    mark(second)

    first.reload()
    first.get_by_text("Manage").click()
    first.get_by_label("Title").fill("Renamed")
    first.get_by_role("button", name="Rename").click()
    expect(second.get_by_role("heading", name="Renamed")).to_be_visible()
    expect(second.get_by_role("navigation", name="Conversations")).to_contain_text("Renamed")

    first.get_by_text("Manage").click()
    first.get_by_role("button", name="Pin", exact=True).click()
    pinned = second.locator('li.day[data-day="pinned"]')
    expect(pinned).to_have_text("Pinned")
    expect(pinned.locator("xpath=following-sibling::li[1]")).to_have_text("Renamed")
    second.get_by_text("Manage").click()
    expect(second.get_by_role("button", name="Unpin")).to_be_visible()
    second.get_by_text("Manage").click()

    first.once("dialog", lambda confirm: confirm.accept())
    first.locator("article.role-user").last.get_by_role("button", name="Delete").click()
    expect(first.get_by_text("The message was deleted.")).to_be_visible()
    expect(second.locator("article.message")).to_have_count(2)
    expect(second.locator("article.role-user .message-body")).to_have_text("A question")
    not_reloaded(second)

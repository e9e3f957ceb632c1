"""Where the page opens, where notices go, and the page on a phone (390 × 844), in English
and in Chinese."""

import pytest
from playwright.sync_api import expect

from tests.helpers import PASSWORD, ask, sign_up

pytestmark = pytest.mark.browser

LONG = "Tell me everything about the history of tea. " * 12


def replies_done(page, count):
    expect(page.locator('article.role-assistant[data-status="complete"]')).to_have_count(count)


def uncovered(locator):
    """Passes only if a click would reach the element: nothing lies over it."""
    locator.click(trial=True, timeout=2000)


def test_a_conversation_opens_at_its_latest_message_also_after_saving_settings(server, page):
    page.set_viewport_size({"width": 1280, "height": 600})
    sign_up(page, server)
    for n in range(4):
        ask(page, f"{n}: {LONG}", model="fake-model")
        replies_done(page, n + 1)
    page.goto(page.url)  # opened afresh

    expect(page.locator("article.role-assistant").last).to_be_in_viewport()
    expect(page.locator("article.role-user").first).not_to_be_in_viewport()

    page.get_by_role("link", name="Settings").click()
    panel = page.get_by_role("dialog", name="Conversation settings")
    panel.get_by_label("Temperature").fill("0.5")
    panel.get_by_role("button", name="Save").click()

    expect(page.get_by_role("status").filter(has_text="Settings saved.")).to_be_visible()
    expect(page.locator("article.role-assistant").last).to_be_in_viewport()
    uncovered(page.get_by_role("heading", level=1))
    uncovered(page.get_by_text("Manage"))


def test_notices_never_cover_controls_and_archiving_says_what_happened(server, page):
    sign_up(page, server)
    ask(page, "Tidy me", model="fake-model")
    replies_done(page, 1)
    page.reload()

    page.get_by_text("Manage").click()
    page.get_by_role("button", name="Archive", exact=True).click()
    expect(page.locator("#notices")).to_have_text(
        "“Tidy me” was archived: it is listed under Archived, below your conversations."
    )
    uncovered(page.get_by_text("Manage"))
    page.get_by_text("Manage").click()
    page.get_by_role("button", name="Unarchive").click()
    expect(page.locator("#notices")).to_have_text("“Tidy me” is back among your conversations.")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_text("Manage").click()
    page.locator(".conversation-menu").get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status").filter(has_text="“Tidy me” was deleted.")).to_be_visible()
    undo = page.get_by_role("button", name="Undo delete")
    uncovered(undo)
    page.wait_for_timeout(8500)  # a notice with Undo does not go away by itself
    undo.click()
    expect(page.get_by_role("heading", name="Tidy me")).to_be_visible()


PHONE = {"width": 390, "height": 844}
WORDS = {
    "en-GB": {"menu": "Menu", "usage": "My usage", "preferences": "Preferences",
              "sign_out": "Sign out", "sign_up": "Sign up", "message": "Message"},
    "zh-CN": {"menu": "菜单", "usage": "我的用量", "preferences": "偏好设置",
              "sign_out": "退出登录", "sign_up": "注册", "message": "消息"},
}  # fmt: skip


@pytest.mark.parametrize("locale", ["en-GB", "zh-CN"])
def test_on_a_phone_the_sidebar_is_a_drawer_and_the_composer_stays_at_the_bottom(
    server, context, locale
):
    words = WORDS[locale]
    page = context.browser.new_context(viewport=PHONE, locale=locale).new_page()
    page.goto(server + "/")
    page.locator("#id_username").fill("alice")
    page.locator("#id_password1").fill(PASSWORD)
    page.locator("#id_password2").fill(PASSWORD)
    page.get_by_role("button", name=words["sign_up"]).click()

    expect(page.locator('body[data-connection="open"]')).to_have_count(1)  # the page is live
    sidebar = page.locator("#sidebar")
    expect(sidebar).to_be_hidden()
    composer = page.locator("#composer").bounding_box()
    assert abs(composer["y"] + composer["height"] - PHONE["height"]) <= 1  # at the bottom
    page.get_by_role("button", name=words["menu"]).click()
    expect(sidebar).to_be_visible()
    for link in ("usage", "preferences"):
        expect(sidebar.get_by_role("link", name=words[link])).to_be_in_viewport()
    expect(sidebar.get_by_role("button", name=words["sign_out"])).to_be_in_viewport()
    page.keyboard.press("Escape")
    expect(sidebar).to_be_hidden()
    expect(page.get_by_role("button", name=words["menu"])).to_be_focused()

    ask_in = page.get_by_label(words["message"], exact=True)
    page.locator("#model-picker").select_option(label="fake-model")
    ask_in.fill(LONG)
    ask_in.press("Enter")
    replies_done(page, 1)
    page.set_viewport_size({"width": 390, "height": 500})  # the keyboard opens
    expect(page.locator("article.role-assistant").last).to_be_in_viewport()
    expect(ask_in).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.context.close()

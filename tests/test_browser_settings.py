"""The conversation settings panel in Debian's chromium, checked in what the upstream got."""

import pytest
from playwright.sync_api import expect

from tests.helpers import ask, sign_up

pytestmark = pytest.mark.browser


def replies_done(page, count):
    expect(page.locator('article.role-assistant[data-status="complete"]')).to_have_count(count)


def test_the_settings_panel_refuses_a_bad_value_and_applies_a_good_one(server, page, fake_upstream):
    from axe_playwright_python.sync_playwright import Axe

    sign_up(page, server)
    ask(page, "First", model="fake-model")
    replies_done(page, 1)
    page.reload()  # the conversation's own page, with its settings
    panel = page.get_by_role("dialog", name="Conversation settings")

    page.get_by_role("link", name="Settings").click()
    expect(panel).to_be_visible()
    expect(panel.get_by_label("Title")).to_be_focused()  # the first field
    serious = [
        violation["id"]
        for violation in Axe().run(page, context="#settings-panel").response["violations"]
        if violation["impact"] in ("serious", "critical")
    ]
    assert serious == []
    panel.get_by_label("Temperature").fill("3")
    panel.get_by_role("button", name="Save").click()

    expect(panel.locator("#id_temperature_error")).to_have_text("Must be between 0 and 2.")
    expect(panel.get_by_label("Temperature")).to_be_focused()
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    page.get_by_role("link", name="Settings").click()
    expect(panel.get_by_label("Temperature")).to_have_value("")  # nothing was saved

    panel.get_by_label("Temperature").fill("0.4")
    panel.get_by_label("Max tokens").fill("50")
    panel.get_by_role("button", name="Save").click()

    expect(page.get_by_role("status")).to_contain_text("Settings saved.")
    expect(panel).to_be_hidden()
    ask(page, "Second", model="fake-model")
    replies_done(page, 2)
    sent = fake_upstream.requests[-1]["body"]
    assert (sent["temperature"], sent["max_tokens"]) == (0.4, 50)
    assert [m["content"] for m in sent["messages"] if m["role"] == "user"] == ["First", "Second"]

    page.get_by_role("link", name="Settings").click()
    expect(panel.get_by_label("Max tokens")).to_have_value("50")
    panel.get_by_role("button", name="Reset to model defaults").click()

    expect(page.get_by_role("status")).to_contain_text("the model's defaults apply")
    ask(page, "Third", model="fake-model")
    replies_done(page, 3)
    sent = fake_upstream.requests[-1]["body"]
    assert "temperature" not in sent and sent["max_tokens"] == 4096  # the site's bound
    assert sent["messages"][-1] == {"role": "user", "content": "Third"}


def test_logit_bias_rows_are_added_and_removed_and_my_defaults_start_a_new_chat(
    server, page, fake_upstream
):
    sign_up(page, server)
    page.get_by_role("link", name="Preferences").click()
    expect(page.get_by_role("heading", name="Defaults for new conversations")).to_be_visible()
    page.get_by_label("System prompt").fill("Answer in French.")
    rows = page.locator("[data-row]")
    rows.nth(0).get_by_label("Token id").fill("50256")
    rows.nth(0).get_by_label("Bias").fill("-100")
    page.get_by_role("button", name="Add a row").click()
    expect(rows).to_have_count(2)
    expect(rows.nth(1).get_by_label("Token id")).to_be_focused()
    page.keyboard.type("11")
    rows.nth(1).get_by_label("Bias").fill("5")
    page.get_by_role("button", name="Add a row").click()
    rows.nth(2).get_by_role("button", name="Remove row").click()
    expect(rows).to_have_count(2)
    page.get_by_role("button", name="Save").click()

    expect(page.get_by_role("status")).to_contain_text("Your defaults for new conversations")
    expect(rows).to_have_count(3)  # the two saved, and an empty one
    page.get_by_role("link", name="Back to the chat").click()
    ask(page, "Bonjour", model="fake-model")
    replies_done(page, 1)
    sent = fake_upstream.requests[-1]["body"]
    assert sent["logit_bias"] == {"50256": -100, "11": 5}
    assert sent["messages"][0] == {"role": "system", "content": "Answer in French."}

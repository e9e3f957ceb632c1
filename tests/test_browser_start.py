"""The first hour, from `make run`: the site answers at once, a provider that is down is
named and offered in every open tab when it comes back, the bundled model is made ready in
the background and says what it is."""

import pytest
from playwright.sync_api import expect

from conversations.management.commands.serve import free_port
from tests.fake_upstream import FakeUpstream
from tests.helpers import API_KEY, ask, sign_up

pytestmark = pytest.mark.browser


def test_a_provider_down_at_start_is_named_and_offered_in_every_tab_once_back(
    start_server, context
):
    port = free_port()
    server = start_server(
        {
            "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
            "OPENAI_API_KEY": API_KEY,
            "CONFAB_PROVIDER_RETRY_S": "1",
            "CONFAB_AUTO_TITLE": "false",
        }
    )
    first = context.new_page()
    sign_up(first, server)
    second = context.new_page()
    second.goto(server + "/")
    for page in (first, second):
        expect(page.locator("#provider-notices")).to_contain_text(
            f"Confab cannot reach the provider “Default”: 127.0.0.1:{port} refused the connection"
        )
        expect(page.locator("#welcome")).to_have_text(
            "No model is available yet. An administrator must add a provider in the admin."
        )
        page.evaluate("window.notReloaded = true")

    upstream = FakeUpstream(port=port).start()
    try:
        for page in (first, second):
            expect(page.locator("#model-picker option")).to_have_text(["fake-model"])
            expect(page.locator("#provider-notices li")).to_have_count(0)
            expect(page.locator("#welcome")).to_have_text(
                "Ask anything. Your first message starts a new conversation."
            )
            assert page.evaluate("window.notReloaded") is True
        ask(second, "Hello again", model="fake-model")
        done = second.locator('article.role-assistant[data-status="complete"] .message-body')
        expect(done).to_have_text("You said: Hello again")
    finally:
        upstream.stop()


@pytest.mark.local_model
def test_the_bundled_model_is_prepared_in_the_background_and_says_what_it_is(start_server, page):
    server = start_server({"OPENAI_BASE_URL": None})
    sign_up(page, server)
    page.evaluate("window.notReloaded = true")
    smol = page.locator("#model-picker option", has_text="SmolLM2 135M")

    expect(smol).to_have_text("SmolLM2 135M (small local demo, English only)", timeout=120_000)
    expect(smol).to_be_enabled()
    assert page.evaluate("window.notReloaded") is True
    note = page.locator("#demo-note")
    expect(note).to_contain_text("SmolLM2 is a small local demo model: it speaks English only")
    expect(note.get_by_role("link", name="Connect a real provider")).to_have_attribute(
        "href", "/admin/conversations/provider/add/"
    )

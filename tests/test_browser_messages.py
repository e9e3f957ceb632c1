"""Journeys through what each message offers, and through search, in Debian's chromium."""

import json

import pytest
from playwright.sync_api import expect

from tests.fake_upstream import chunk, echo, reply, sse, stream_headers
from tests.helpers import API_KEY, JOURNEY_PARTS, ask, sign_up

pytestmark = pytest.mark.browser


def finished_replies(page):
    return page.locator('article.role-assistant:not([data-status="streaming"])')


def test_copy_regenerate_with_another_model_view_the_request_and_delete(server, context):
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    sign_up(page, server)

    ask(page, "Say **bold** things", model="fake-model")
    reply = finished_replies(page)
    expect(reply.locator(".message-body strong")).to_have_text("bold")
    reply.get_by_role("button", name="Copy", exact=True).click()
    expect(reply.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == "You said: Say **bold** things"

    reply.get_by_role("button", name="Another model…").click()
    dialog = page.get_by_role("dialog", name="Regenerate with another model")
    dialog.get_by_label("Model for the new reply").select_option(label="slow-model")
    dialog.get_by_role("button", name="Regenerate").click()
    expect(page.locator('article.role-assistant[data-status="streaming"]')).to_have_count(1)
    regenerated = page.locator('article.role-assistant[data-status="complete"]')
    expect(regenerated.locator(".message-body")).to_have_text(
        "".join(JOURNEY_PARTS).strip(), timeout=15_000
    )
    expect(regenerated.locator(".message-role")).to_contain_text("slow-model")
    expect(regenerated.locator(".siblings")).to_contain_text("2 / 2")

    regenerated.get_by_role("button", name="View request").click()
    drawer = page.get_by_role("dialog", name="Request sent upstream")
    expect(drawer).to_be_visible()
    shown = json.loads(drawer.locator("#request-json").inner_text())
    assert shown["model"] == "slow-model"
    assert shown["messages"] == [{"role": "user", "content": "Say **bold** things"}]
    assert shown["stream_options"] == {"include_usage": True}
    expect(drawer.locator("#request-usage")).to_contain_text("70")
    assert API_KEY not in page.content()
    drawer.get_by_role("button", name="Close").click()
    expect(drawer).to_be_hidden()

    regenerated.locator(".siblings").get_by_role("button", name="Previous version").click()
    expect(finished_replies(page).locator(".message-body")).to_have_text(
        "You said: Say **bold** things".replace("**", "")
    )

    page.once("dialog", lambda confirm: confirm.accept())
    page.locator("article.role-user").get_by_role("button", name="Delete").click()
    expect(page.get_by_text("The message was deleted.")).to_be_visible()
    expect(page.locator("article.message")).to_have_count(0)


def test_search_finds_a_message_and_leads_to_it(server, page):
    sign_up(page, server)
    ask(page, "Where do zebras sleep?", model="fake-model")
    expect(finished_replies(page)).to_have_count(1)
    ask(page, "And giraffes?", model="fake-model")
    expect(finished_replies(page)).to_have_count(2)

    page.get_by_role("searchbox", name="Search conversations").fill("zebras")
    page.keyboard.press("Enter")

    results = page.locator(".search-results li")
    # The title, the reply that repeats the question (newest first), and the question.
    expect(results).to_have_count(3)
    expect(results.nth(1).locator("mark")).to_have_text("zebras")
    results.last.get_by_role("link").click()
    target = page.locator("article.role-user:target")
    expect(target).to_have_count(1)
    expect(target.locator(".message-body")).to_have_text("Where do zebras sleep?")


def two_choices(body):
    """Two alternatives, interleaved as providers send them, when asked for n = 2."""
    if body.get("n") != 2:
        return echo(body)
    steps = [stream_headers()]
    for index in (0, 1):
        steps.append(sse(chunk({"role": "assistant", "content": ""}, index=index)))
    for first, second in zip(["Red", " apples."], ["Green", " pears."], strict=True):
        steps += [0.05, sse(chunk({"content": first}, index=0))]
        steps += [sse(chunk({"content": second}, index=1))]
    steps += [sse(chunk(finish_reason="stop", index=i)) for i in (0, 1)]
    usage = {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15}
    return [*steps, sse(chunk(choices=False, usage=usage)), sse("[DONE]")]


def test_two_alternatives_stream_and_the_switcher_shows_each(server, page, fake_upstream):
    fake_upstream.script("fake-model", two_choices)
    sign_up(page, server)
    ask(page, "Name a fruit", model="fake-model")
    expect(finished_replies(page)).to_have_count(1)
    page.reload()
    page.get_by_role("link", name="Settings").click()
    panel = page.get_by_role("dialog", name="Conversation settings")
    panel.get_by_label("Choices (n)").fill("2")
    panel.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status").filter(has_text="Settings saved.")).to_be_visible()

    ask(page, "Another fruit, twice", model="fake-model")

    expect(finished_replies(page)).to_have_count(2)  # the first reply and one alternative
    expect(finished_replies(page).last.locator(".message-body")).to_have_text("Red apples.")
    switcher = finished_replies(page).last.locator(".siblings")
    expect(switcher).to_contain_text("1 / 2")
    assert fake_upstream.requests[-1]["body"]["n"] == 2
    red = finished_replies(page).last.get_attribute("data-id")
    switcher.get_by_role("button", name="Next version").click()
    expect(finished_replies(page).last.locator(".message-body")).to_have_text("Green pears.")
    expect(finished_replies(page).last.locator(".siblings")).to_contain_text("2 / 2")
    page.reload()  # the version chosen is remembered
    expect(finished_replies(page).last.locator(".message-body")).to_have_text("Green pears.")

    # A link to the other version (as search makes) shows it without choosing it; a send
    # from that page continues the branch it shows.
    page.goto(page.url.split("#")[0] + f"?show={red}")
    expect(finished_replies(page).last.locator(".message-body")).to_have_text("Red apples.")
    ask(page, "Which is sweeter?", model="fake-model")
    expect(finished_replies(page)).to_have_count(3)
    sent = fake_upstream.requests[-1]["body"]["messages"]
    assert [m["content"] for m in sent if m["role"] == "assistant"][-1] == "Red apples."


def test_what_cannot_be_done_says_so_signed_out_or_offline(server, context, console_errors):
    console_errors.allow("WebSocket connection to .* failed")  # reconnecting while offline
    page = context.new_page()
    sign_up(page, server)
    ask(page, "Hello", model="fake-model")
    reply = finished_replies(page)
    expect(reply).to_have_count(1)

    context.clear_cookies()  # signed out in another tab: the request is a login page now
    reply.get_by_role("button", name="View request").click()
    expect(page.locator("#composer-error")).to_have_text(
        "The request could not be loaded. Check your connection and try again."
    )
    expect(page.get_by_role("dialog", name="Request sent upstream")).to_be_hidden()

    context.set_offline(True)
    page.evaluate("window.confab.socket.drop()")
    reply.get_by_role("button", name="Another model…").click()
    page.get_by_role("dialog", name="Regenerate with another model").get_by_role(
        "button", name="Regenerate"
    ).click()
    expect(page.locator("#composer-error")).to_have_text(
        "Not connected, so this did not happen. Try again in a moment."
    )
    context.set_offline(False)


def test_copy_in_one_tab_and_a_deletion_in_another_reach_both(server, context):
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    first = context.new_page()
    sign_up(first, server)
    ask(first, "Say **bold** things", model="fake-model")
    expect(finished_replies(first)).to_have_count(1)
    finished_replies(first).get_by_role("button", name="Regenerate").click()
    expect(finished_replies(first).locator(".siblings")).to_contain_text("2 / 2")
    ask(first, "And more", model="fake-model")
    expect(finished_replies(first)).to_have_count(2)
    second = context.new_page()
    second.goto(first.url)
    expect(second.locator('body[data-connection="open"]')).to_have_count(1)
    second.evaluate("window.stayed = true")  # gone if the tab reloads

    # Copy: what the message says, as written, in either tab.
    second.locator("article.role-user").first.get_by_role("button", name="Copy").click()
    assert second.evaluate("navigator.clipboard.readText()") == "Say **bold** things"
    finished_replies(first).last.get_by_role("button", name="Copy", exact=True).click()
    assert first.evaluate("navigator.clipboard.readText()") == "You said: And more"

    # A deletion in the first tab leaves the second at once, without a reload.
    first.once("dialog", lambda confirm: confirm.accept())
    first.locator("article.role-user").last.get_by_role("button", name="Delete").click()
    expect(first.get_by_text("The message was deleted.")).to_be_visible()
    expect(second.locator("article.role-user")).to_have_count(1)
    expect(second.locator("article.message")).to_have_count(2)

    # Deleting a version: the other tab shows the one now on show, its switcher gone.
    first.once("dialog", lambda confirm: confirm.accept())
    finished_replies(first).get_by_role("button", name="Delete").click()
    expect(first.get_by_text("The message was deleted.")).to_be_visible()
    expect(second.locator(".siblings")).to_have_count(0)
    expect(finished_replies(second)).to_have_count(1)
    expect(finished_replies(first)).to_have_count(1)
    assert second.evaluate("window.stayed") is True
    assert first.get_by_text("The message was deleted.").count() == 1  # its notice, not stolen


@pytest.fixture
def long_model(fake_upstream):
    """`long-model` writes a first paragraph, then a line every 100 ms for 6 s."""
    parts = ["First paragraph stays put.\n\n", *[f"Line {i}.\n\n" for i in range(60)]]
    fake_upstream.script("long-model", reply(parts, delay=0.1))


SELECT_FIRST_PARAGRAPH = """() => {
  const paragraph = document.querySelector('article[data-status="streaming"] .message-body p');
  const range = document.createRange();
  range.selectNodeContents(paragraph);
  getSelection().removeAllRanges();
  getSelection().addRange(range);
  window.selected = paragraph;
}"""


def test_a_streaming_reply_keeps_the_selection_the_scroll_and_what_is_typed(
    long_model, server, page
):
    page.set_viewport_size({"width": 900, "height": 600})
    sign_up(page, server)
    ask(page, "Write a long answer", model="long-model")
    streaming = page.locator('article.role-assistant[data-status="streaming"] .message-body')
    messages = page.locator("#messages")
    jump = page.get_by_role("button", name="Jump to latest")

    # The reader selects text already written: it stays selected as more arrives.
    expect(streaming.locator("p").first).to_have_text("First paragraph stays put.")
    page.evaluate(SELECT_FIRST_PARAGRAPH)
    expect(streaming).to_contain_text("Line 15.")
    assert page.evaluate("getSelection().toString()") == "First paragraph stays put."
    assert page.evaluate("window.selected.isConnected") is True

    # Following the reply at the bottom, until the reader scrolls up; then a way back.
    at_bottom = "(el) => el.scrollHeight - el.scrollTop - el.clientHeight < 40"
    assert messages.evaluate(at_bottom)
    expect(jump).to_be_hidden()
    messages.hover()
    page.mouse.wheel(0, -400)
    expect(jump).to_be_visible()
    held = messages.evaluate("(el) => el.scrollTop")
    expect(streaming).to_contain_text("Line 30.")
    assert messages.evaluate("(el) => el.scrollTop") == held  # not pulled down
    jump.click()
    expect(jump).to_be_hidden()
    expect(streaming).to_contain_text("Line 40.")
    assert messages.evaluate(at_bottom)  # and following again

    # A message written meanwhile waits, says so, and goes when the reply ends.
    page.locator("#model-picker").select_option(label="fake-model")
    page.get_by_label("Message").fill("And a short one")
    expect(page.locator("#composer-wait")).to_contain_text("goes when it ends")
    expect(page.locator("#send-button")).to_have_text("Queue")
    page.get_by_label("Message").press("Enter")
    expect(page.locator("#composer-queue")).to_contain_text(
        "Your message will be sent when the reply ends."
    )
    expect(page.locator("article.role-user")).to_have_count(1)  # not yet
    expect(page.locator("article.role-user")).to_have_count(2, timeout=15_000)
    expect(page.locator("article.role-assistant").last.locator(".message-body")).to_have_text(
        "You said: And a short one"
    )
    expect(page.locator("#composer-queue")).to_be_hidden()
    expect(page.locator("#send-button")).to_have_text("Send")
    expect(page.locator("#composer-error")).to_be_hidden()  # nothing refused as busy

"""Share links in Debian's chromium: a snapshot that later messages never reach, read by
another member, continued in their own conversation, refused to a visitor unless the owner
says anyone, and gone once revoked."""

import pytest
from playwright.sync_api import expect

from tests.helpers import add_user, ask, sign_in, sign_up

pytestmark = pytest.mark.browser


def finished_replies(page):
    return page.locator('article.role-assistant:not([data-status="streaming"])')


def share(page, conversation_url, audience="People signed in to this Confab"):
    """The owner shares the conversation from its page; the link, from the page it lands on."""
    page.goto(conversation_url)
    page.get_by_role("link", name="Share", exact=True).click()
    page.get_by_label(audience).check()
    page.get_by_role("button", name="Create the link").click()
    expect(page.get_by_role("status").filter(has_text="Your link is ready.")).to_be_visible()
    return page.get_by_label("Your link").input_value()


def test_a_share_is_a_snapshot_for_members_or_anyone_until_it_is_revoked(
    server, context, console_errors
):
    console_errors.allow("status of 404")  # the revoked links, and alice's page to bob
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    alice = context.new_page()
    sign_up(alice, server)
    ask(alice, "Is the area $\\pi r^2$?", model="fake-model")
    expect(finished_replies(alice)).to_have_count(1)
    conversation = alice.url

    link = share(alice, conversation)
    alice.get_by_role("button", name="Copy link").click()
    assert alice.evaluate("navigator.clipboard.readText()") == link
    assert link.startswith(server + "/s/")
    alice.goto(conversation)
    ask(alice, "A later question", model="fake-model")
    expect(finished_replies(alice)).to_have_count(2)

    # Another member reads the snapshot, math drawn, without the later messages.
    add_user(alice, server, "bob")
    bob = sign_in(context.browser.new_context(), server, "bob")
    requests = []
    bob.on("request", lambda request: requests.append(request.url))
    assert bob.goto(link).status == 200
    messages = bob.locator("#share-messages article")
    expect(messages).to_have_count(2)
    expect(messages.last.locator(".message-body .math > math")).to_have_count(1)
    expect(bob.locator("body")).not_to_contain_text("A later question")
    expect(bob.get_by_role("button", name="Revoke this link")).to_have_count(0)
    assert [url for url in requests if not url.startswith(server)] == []
    assert bob.locator('meta[name="robots"]').get_attribute("content") == "noindex, nofollow"

    # ... and continues it in a conversation of his own, which alice's never becomes.
    bob.get_by_role("button", name="Continue in my own conversation").click()
    expect(bob.get_by_role("status").filter(has_text="your own copy")).to_be_visible()
    assert bob.url != conversation and "/c/" in bob.url
    expect(bob.locator("article.role-user")).to_have_count(1)
    ask(bob, "And the circumference?", model="fake-model")
    expect(finished_replies(bob)).to_have_count(2)
    assert bob.goto(conversation).status == 404

    # A visitor not signed in is asked to sign in, unless the owner said anyone.
    visitor = context.browser.new_context().new_page()
    visitor.goto(link)
    expect(visitor.get_by_role("heading", name="Sign in")).to_be_visible()
    public = share(alice, conversation, audience="Anyone with the link")
    assert visitor.goto(public).status == 200
    expect(visitor.locator("#share-messages article")).to_have_count(4)  # what there is now
    expect(visitor.get_by_role("link", name="Sign in to continue")).to_be_visible()

    # Revoked from the owner's list, each link is gone for everyone.
    alice.goto(server + "/")
    alice.get_by_role("link", name="Shared links").click()
    rows = alice.locator("#shared-links tbody tr")
    expect(rows).to_have_count(2)
    for _ in range(2):
        alice.get_by_role("button", name="Revoke").first.click()
        expect(alice.get_by_role("status").filter(has_text="is revoked")).to_be_visible()
    expect(rows.filter(has_text="revoked")).to_have_count(2)
    assert visitor.goto(public).status == 404
    assert bob.goto(link).status == 404

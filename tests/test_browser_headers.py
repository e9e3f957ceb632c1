"""The pages under their Content-Security-Policy, in Debian's chromium: the policy refuses
nothing they need, the chat websocket and the admin included."""

import pytest
from playwright.sync_api import expect

from tests.fake_upstream import reply
from tests.helpers import ask, sign_up

pytestmark = pytest.mark.browser

# What once needed a style attribute: an aligned table, and math that Temml styles (a
# displayed formula, a box, a bold symbol, side scripts, a colour).
STYLED = [
    "| name | tokens |\n| :--- | ---: |\n| alice | 12 |\n\n",
    "$$\n\\boxed{E = mc^2}\n$$\n\n",
    "Bold $\\pmb{x}$, $\\sideset{_a}{^b}\\sum$ and $\\color{red}{r}$.",
]

# A violation is also a console error, which fails any journey (tests/browsing.py); the event
# says which directive refused what, and where.
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => window.reportViolation(
  `${location.pathname}: ${event.violatedDirective} refused ${event.blockedURI} ` +
  `(${event.sourceFile}:${event.lineNumber})`
));
"""


@pytest.fixture
def styled(fake_upstream):
    fake_upstream.script("styled", reply(STYLED))


def computed(locator, prop):
    return locator.evaluate(f"(element) => getComputedStyle(element)[{prop!r}]")


def test_no_page_breaks_its_content_security_policy(styled, server, context):
    refused = []
    context.expose_function("reportViolation", lambda violation: refused.append(violation))
    context.add_init_script(REPORT_VIOLATIONS)
    page = context.new_page()
    sign_up(page, server)

    ask(page, "Show me styles", model="styled")  # over the websocket, once it is open
    reply_body = page.locator('article.role-assistant[data-status="complete"] .message-body')
    expect(reply_body.locator(".math > math")).to_have_count(4)
    conversation = page.url
    page.goto(conversation + "share/")
    page.get_by_role("button", name="Create the link").click()
    shared = page.url  # the share link's page: its math drawn as the chat page draws it
    expect(page.locator("#share-messages .math > math")).to_have_count(4)
    visited = []
    for path in [
        conversation,  # the reply again, as the server renders it
        conversation + "settings/",
        conversation + "share/",
        shared,
        "/settings/shares/",
        "/usage/",
        "/search/?q=styles",
        "/settings/",
        "/accounts/password_change/",
        "/admin/",
        "/admin/conversations/conversation/",
        "/admin/conversations/usagerecord/",
        "/admin/conversations/usagerecord/dashboard/",
        "/admin/conversations/share/",
    ]:
        response = page.goto(path if path.startswith("http") else server + path)
        visited.append(response.headers.get("content-security-policy", ""))
        if path == shared:
            expect(page.locator("#share-messages .math > math")).to_have_count(4)
            assert computed(page.locator("td.align-right"), "textAlign") == "right"
        if path == conversation:
            # Styled, through classes and CSSOM, as the policy allows.
            expect(reply_body.locator(".math > math")).to_have_count(4)
            assert computed(reply_body.locator("td.align-right"), "textAlign") == "right"
            assert computed(reply_body.locator("math[display=block]"), "display") == "block math"
            boxed = reply_body.locator("math[display=block] mrow").first
            assert computed(boxed, "borderTopStyle") == "solid"
            page.get_by_role("button", name="Theme: system").click()
            expect(page.locator("html[data-theme=light]")).to_have_count(1)
            page.get_by_role("link", name="Settings").click()  # the panel, fetched
            expect(page.get_by_role("dialog", name="Conversation settings")).to_be_visible()
    page.goto(server + "/")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

    assert all("script-src 'self'" in policy for policy in visited), visited
    assert refused == []

"""The agent workflow in Debian's chromium: an administrator turns a built-in tool on and
registers a real MCP server; a question needs both; each stage shows as it happens, one
call waits for approval across a reload, and the answer stands after the steps."""

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from tests.fake_upstream import agent, calls, reply
from tests.helpers import ask, sign_up

pytestmark = pytest.mark.browser


@pytest.fixture
def agent_model(fake_upstream):
    """A model that calls the calculator and the MCP server's lookup, then the server's
    slow tool, then answers; listed by the fake upstream before Confab starts."""
    fake_upstream.script(
        "agent-model",
        agent(
            calls(("calculator", {"expression": "6 * 7"}),
                  ("atlas__lookup_capital", {"country": "Kenya"})),
            calls(("atlas__slow", {"seconds": 1.5}), content="Let me check the atlas once more."),
            reply(["6 × 7 = **42**, ", "and the capital of Kenya is ", "Nairobi."], delay=0.05),
        ),
    )  # fmt: skip


def register_atlas(page, server, mcp_server):
    page.goto(server + "/admin/conversations/toolserver/add/")
    page.get_by_label("Name:").fill("atlas")
    page.get_by_label("URL:").fill(mcp_server)
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("Atlas answers with 5 tools")


def test_a_question_that_needs_two_tools_shows_every_stage(
    agent_model, server, page, mcp_server, context
):
    sign_up(page, server)
    # The administrator turns the calculator on, asking before each call…
    page.goto(server + "/admin/conversations/builtintool/")
    row = page.get_by_role("row", name="calculator")
    row.get_by_role("checkbox").last.check()
    row.get_by_role("combobox").select_option("ask")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    # …and registers the MCP server, whose tools are listed at once.
    register_atlas(page, server, mcp_server)

    page.goto(server + "/")
    ask(page, "What is 6 × 7, and what is the capital of Kenya?", model="agent-model")

    # The MCP lookup runs at once; the calculator waits for the user, in every tab.
    lookup = page.locator('article.role-tool[aria-label="Tool atlas__lookup_capital"]')
    expect(lookup.locator(".tool-output")).to_have_text("Nairobi")
    calculator = page.locator('article.role-tool[aria-label="Tool calculator"]')
    expect(calculator.get_by_role("group", name="Run this call?")).to_be_visible()
    expect(calculator.locator(".tool-arguments")).to_contain_text('"expression": "6 * 7"')
    expect(page.get_by_role("button", name="Stop")).to_be_visible()

    page.reload()  # the wait is stored: it is there after a reload
    calculator = page.locator('article.role-tool[aria-label="Tool calculator"]')
    expect(calculator.get_by_text("Waiting for your approval")).to_be_visible()
    other_tab = context.new_page()
    other_tab.goto(page.url)
    expect(other_tab.get_by_role("button", name="Approve")).to_be_visible()

    calculator.get_by_role("button", name="Approve").click()
    for tab in (page, other_tab):
        shown = tab.locator('article.role-tool[aria-label="Tool calculator"]')
        expect(shown.locator(".tool-output")).to_have_text("42")
        expect(shown.get_by_role("button", name="Approve")).to_have_count(0)

    # The next step: the model's words, then the slow tool running, then its result.
    slow = page.locator('article.role-tool[aria-label="Tool atlas__slow"]')
    expect(slow.get_by_role("status")).to_have_text("Running…")
    expect(page.get_by_text("Let me check the atlas once more.")).to_be_visible()
    expect(slow.locator(".tool-output")).to_have_text("Waited 1.5 s.", timeout=10_000)

    answer = page.locator("article.role-assistant").last
    expect(answer.locator(".message-body")).to_have_text(
        "6 × 7 = 42, and the capital of Kenya is Nairobi."
    )
    expect(answer).not_to_have_class("step")  # the answer stands outside the steps
    expect(answer.locator(".turn-usage")).to_contain_text("This turn: 3 model calls")
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()

    page.reload()
    expect(page.locator("article.step")).to_have_count(5)  # 2 calls, 3 results
    expect(page.locator("article.role-tool .tool-output")).to_have_text(
        ["42", "Nairobi", "Waited 1.5 s."]
    )
    violations = Axe().run(page).response["violations"]
    serious = [v["id"] for v in violations if v["impact"] in ("serious", "critical")]
    assert serious == [], serious


def test_a_call_waiting_for_approval_is_answered_from_the_keyboard(
    agent_model, server, page, mcp_server
):
    sign_up(page, server)
    page.goto(server + "/admin/conversations/builtintool/")
    row = page.get_by_role("row", name="calculator")
    row.get_by_role("checkbox").last.check()
    row.get_by_role("combobox").select_option("ask")
    page.get_by_role("button", name="Save").click()
    register_atlas(page, server, mcp_server)
    page.goto(server + "/")
    ask(page, "What is 6 × 7, and what is the capital of Kenya?", model="agent-model")
    approve = page.get_by_role("button", name="Approve")
    expect(approve).to_be_visible()
    expect(page.locator("#announcer")).to_contain_text(
        "The tool calculator waits for your approval."
    )
    approve.focus()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Deny")).to_be_focused()
    page.keyboard.press("Enter")
    calculator = page.locator('article.role-tool[aria-label="Tool calculator"]')
    expect(calculator.locator(".tool-output")).to_have_text(
        "The user denied this call: it did not run."
    )
    expect(calculator.get_by_text("Error")).to_be_visible()


@pytest.fixture
def planner(fake_upstream):
    """Two steps (a slow call, then a quick one) before its answer; a follow-up question
    it answers at once."""

    def follow_up(body):
        return reply(["That is all."])

    def first_turn(turn):
        def play(body):
            if body["messages"][-1].get("content") == "And then?":
                return follow_up(body)
            return turn

        return play

    fake_upstream.script(
        "planner",
        agent(
            first_turn(calls(("atlas__slow", {"seconds": 1.5}))),
            calls(("atlas__lookup_capital", {"country": "France"})),
            reply(["Done planning."]),
        ),
    )


def test_a_message_sent_mid_turn_waits_for_the_answer(planner, server, page, mcp_server):
    sign_up(page, server)
    register_atlas(page, server, mcp_server)
    page.goto(server + "/")
    ask(page, "Plan it", model="planner")
    expect(page.locator('article.role-tool[aria-label="Tool atlas__slow"]')).to_be_visible()
    page.get_by_label("Message").fill("And then?")
    page.get_by_label("Message").press("Enter")  # queued: the turn is not over

    answers = page.locator("article.role-assistant:not(.step) .message-body")
    expect(answers).to_have_text(["Done planning.", "That is all."], timeout=15_000)
    expect(page.locator("article.role-tool .tool-output")).to_have_text(["Waited 1.5 s.", "Paris"])
    # The follow-up came after the whole turn, not in the middle of it.
    roles = page.locator("#messages article.message").evaluate_all(
        "articles => articles.map(a => a.classList.contains('role-user') ? "
        "a.querySelector('.message-body').textContent : a.dataset.role || 'assistant')"
    )
    assert roles == ["Plan it", "assistant", "tool", "assistant", "tool", "assistant",
                     "And then?", "assistant"]  # fmt: skip

"""The conversation settings panel in Debian's chromium, checked in what the upstream got."""

import pytest
from playwright.sync_api import expect

from tests.helpers import ask, sign_up

pytestmark = pytest.mark.browser


def replies_done(page, count):
    complete = page.locator('article.role-assistant[data-status="complete"]')
    expect(complete).to_have_count(count, timeout=15_000)  # a loaded machine is slow, not wrong


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

    expect(page.get_by_role("status").filter(has_text="Settings saved.")).to_be_visible()
    expect(panel).to_be_hidden()
    ask(page, "Second", model="fake-model")
    replies_done(page, 2)
    sent = fake_upstream.requests[-1]["body"]
    assert (sent["temperature"], sent["max_tokens"]) == (0.4, 50)
    assert [m["content"] for m in sent["messages"] if m["role"] == "user"] == ["First", "Second"]

    page.get_by_role("link", name="Settings").click()
    expect(panel.get_by_label("Max tokens")).to_have_value("50")
    panel.get_by_role("button", name="Reset to model defaults").click()

    expect(page.get_by_role("status").filter(has_text="the model's defaults apply")).to_be_visible()
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

    expect(
        page.get_by_role("status").filter(has_text="Your defaults for new conversations")
    ).to_be_visible()
    expect(rows).to_have_count(3)  # the two saved, and an empty one
    page.get_by_role("link", name="Back to the chat").click()
    ask(page, "Bonjour", model="fake-model")
    replies_done(page, 1)
    sent = fake_upstream.requests[-1]["body"]
    assert sent["logit_bias"] == {"50256": -100, "11": 5}
    assert sent["messages"][0] == {"role": "system", "content": "Answer in French."}


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
FORECAST = {
    "type": "object",
    "properties": {"city": {"$ref": "#/$defs/city"}},
    "required": ["city"],
    "additionalProperties": False,
    "$defs": {"city": {"type": "string"}},
}


def test_the_logit_bias_tools_and_schema_editors_check_as_one_types(server, page, fake_upstream):
    import json

    sign_up(page, server)
    ask(page, "First", model="fake-model")
    replies_done(page, 1)
    page.reload()
    page.get_by_role("link", name="Settings").click()
    panel = page.get_by_role("dialog", name="Conversation settings")

    # Logit bias: a row needs both, and a bias from -100 to 100, said before any save.
    row = panel.locator("[data-row]").first
    row.get_by_label("Token id").fill("50256")
    bias_check = panel.locator("#id_logit_bias_rows-check")
    expect(bias_check).to_have_text("Each row needs a token id and a bias.")
    row.get_by_label("Bias").fill("-150")
    expect(bias_check).to_contain_text("from -100 to 100")
    row.get_by_label("Bias").fill("-100")
    expect(bias_check).to_have_text("")

    # Tools: JSON as it is typed, then the shape of each tool; "Add a function" starts one.
    tools = panel.locator("#id_tools")
    tools.fill('[{"type": "function"')
    expect(panel.locator("#id_tools-check")).to_contain_text("This is not valid JSON")
    expect(tools).to_have_attribute("aria-invalid", "true")
    panel.get_by_role("button", name="Save").click()  # refused here, nothing sent
    expect(tools).to_be_focused()
    tools.fill("")
    panel.get_by_role("button", name="Add a function").click()
    assert json.loads(tools.input_value())[0]["function"]["name"] == ""
    expect(panel.locator("#id_tools-check")).to_contain_text(
        'Each tool must be {"type": "function"'
    )
    page.keyboard.type("get_weather")  # the cursor waits in the name
    expect(panel.locator("#id_tools-check")).to_have_text("")
    tools.fill(json.dumps([WEATHER]))
    panel.get_by_label("Tool choice").select_option(label="Auto: the model decides")

    # The JSON schema: an object, with its name and description.
    panel.get_by_label("Response format").select_option(
        label="JSON schema: JSON that follows a schema"
    )
    panel.get_by_label("Schema name").fill("forecast")
    panel.get_by_label("Schema description").fill("A forecast")
    schema = panel.locator("#id_schema")
    schema.fill("[1, 2]")
    expect(panel.locator("#id_schema-check")).to_have_text("The schema must be a JSON object.")
    schema.fill(json.dumps(FORECAST))
    expect(panel.locator("#id_schema-check")).to_have_text("")
    panel.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status").filter(has_text="Settings saved.")).to_be_visible()

    ask(page, "Second", model="fake-model")
    replies_done(page, 2)
    sent = fake_upstream.requests[-1]["body"]
    assert sent["logit_bias"] == {"50256": -100}
    assert sent["tools"] == [WEATHER] and sent["tool_choice"] == "auto"
    expected = {"name": "forecast", "description": "A forecast", "schema": FORECAST}
    assert sent["response_format"] == {"type": "json_schema", "json_schema": expected}

    # Saved again unchanged, every key of the schema stays.
    page.get_by_role("link", name="Settings").click()
    expect(panel.locator("#id_schema")).to_have_value(json.dumps(FORECAST, indent=2))
    panel.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status").filter(has_text="Settings saved.")).to_be_visible()
    ask(page, "Third", model="fake-model")
    replies_done(page, 3)
    assert fake_upstream.requests[-1]["body"]["response_format"]["json_schema"] == expected

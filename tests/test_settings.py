"""Conversation settings, "Reset to model defaults", and a user's defaults for new chats."""

import json
from html.parser import HTMLParser

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import Group
from django.urls import reverse

from conversations.models import Conversation, Preferences
from tests.helpers import add_model, send_event

pytestmark = pytest.mark.django_db

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}


@pytest.fixture
def conversation(alice, model):
    return Conversation.objects.create(
        owner=alice, title="Weather", model=model, system_prompt="Be brief."
    )


@pytest.fixture
def settings_url(client, alice, conversation):
    client.force_login(alice)
    return reverse("settings", args=[conversation.id])


def form_data(model, **fields):
    """What the settings form posts with only `fields` filled in."""
    return {"title": "Weather", "model": str(model.public_id), "system_prompt": "", **fields}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("temperature", "3", "Must be between 0 and 2."),
        ("temperature", "-0.1", "Must be between 0 and 2."),
        ("top_p", "1.5", "Must be between 0 and 1."),
        ("n", "9", "Must be between 1 and 8."),
        ("n", "0", "Must be between 1 and 8."),
        ("max_tokens", "0", "Must be between 1 and 10000000."),
        ("presence_penalty", "-2.5", "Must be between -2 and 2."),
        ("frequency_penalty", "2.5", "Must be between -2 and 2."),
        ("seed", "1.5", "Must be between"),
        ("stop", "a\nb\nc\nd\ne", "Must be a string or a list of up to 4 strings."),
        ("tools", '{"type": "function"}', "Must be a list of up to 128 function tools."),
        ("tools", "[{", "This is not valid JSON"),
    ],
)
def test_it_refuses_a_value_out_of_range_beside_its_field_and_saves_nothing(
    client, settings_url, conversation, model, field, value, message
):
    conversation.params = {"temperature": 1.0}
    conversation.save()

    response = client.post(settings_url, form_data(model, **{field: value, "title": "Changed"}))

    assert response.status_code == 200
    errors = response.context["form"].errors
    assert list(errors) == [field] and message in errors[field][0]
    assert f'id="id_{field}_error"' in response.content.decode()  # shown beside the field
    conversation.refresh_from_db()
    assert (conversation.title, conversation.params) == ("Weather", {"temperature": 1.0})


def test_it_refuses_more_tokens_than_the_model_allows(client, settings_url, model):
    model.max_output_tokens = 100
    model.save()

    page = client.get(settings_url).content.decode()
    response = client.post(settings_url, form_data(model, max_tokens="500"))

    assert 'max="100"' in page and "Fake model allows at most 100." in page
    assert response.context["form"].errors == {
        "max_tokens": ["Must be between 1 and 100 for this model."]
    }


def test_a_filled_form_saves_exactly_these_params(client, settings_url, conversation, model):
    response = client.post(
        settings_url,
        form_data(
            model,
            title="Tuned",
            system_prompt="Answer in French.",
            temperature="0.4",
            top_p="0.9",
            seed="42",
            max_tokens="50",
            n="2",
            stop="END\n\\n\\n\n",
            presence_penalty="-1.5",
            frequency_penalty="2",
            logit_bias_token=["50256", "11", ""],
            logit_bias_bias=["-100", "5.5", ""],
            response_format="json_schema",
            schema_name="weather",
            schema=json.dumps(SCHEMA),
            schema_strict="on",
            tools=json.dumps([WEATHER_TOOL]),
            tool_choice="function",
            tool_function="get_weather",
        ),
    )

    assert response.status_code == 302
    conversation.refresh_from_db()
    assert conversation.params == {
        "temperature": 0.4,
        "top_p": 0.9,
        "seed": 42,
        "max_tokens": 50,
        "n": 2,
        "stop": ["END", "\n\n"],
        "presence_penalty": -1.5,
        "frequency_penalty": 2.0,
        "logit_bias": {"50256": -100, "11": 5.5},
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "weather", "schema": SCHEMA, "strict": True},
        },
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    }
    assert (conversation.title, conversation.system_prompt) == ("Tuned", "Answer in French.")
    assert conversation.auto_title is False


def test_empty_fields_are_not_set_so_the_model_defaults_apply(
    client, settings_url, conversation, model
):
    conversation.params = {"temperature": 1.2, "stop": ["END"]}
    conversation.save()

    client.post(settings_url, form_data(model, response_format="", tool_choice=""))

    conversation.refresh_from_db()
    assert conversation.params == {}


def test_what_is_saved_is_shown_again_and_saving_it_unchanged_keeps_it(
    client, settings_url, conversation, model
):
    params = {
        "temperature": 0.4,
        "stop": ["END", "\n\n"],
        "logit_bias": {"50256": -100, "11": 5.5},
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": SCHEMA}},
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
        "seed": 7,
    }
    conversation.params = params
    conversation.save()

    shown = fields_of(client.get(settings_url).content.decode())
    response = client.post(settings_url, shown)

    assert response.status_code == 302
    conversation.refresh_from_db()
    assert conversation.params == params
    assert shown["temperature"] == "0.4" and shown["stop"] == "END\n\\n\\n"
    assert shown["logit_bias_token"] == ["50256", "11", ""]  # and an empty row to fill
    assert shown["logit_bias_bias"] == ["-100", "5.5", ""]


def test_resaving_a_json_schema_keeps_every_key(client, settings_url, conversation, model):
    schema = {
        "type": "object",
        "properties": {"city": {"$ref": "#/$defs/city"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
        "additionalProperties": False,
        "$defs": {"city": {"type": "string", "description": "A city's name"}},
    }
    json_schema = {
        "name": "forecast",
        "description": "A weather forecast",
        "schema": schema,
        "strict": False,
        "x-provider-option": {"keep": True},  # no input shows it: kept all the same
    }
    conversation.params = {"response_format": {"type": "json_schema", "json_schema": json_schema}}
    conversation.save()

    shown = fields_of(client.get(settings_url).content.decode())
    client.post(settings_url, shown)

    conversation.refresh_from_db()
    assert conversation.params["response_format"]["json_schema"] == json_schema
    assert shown["schema_description"] == "A weather forecast"

    client.post(settings_url, {**shown, "schema_strict": "on", "schema_description": ""})

    conversation.refresh_from_db()
    changed = {**json_schema, "strict": True}
    del changed["description"]  # emptied: what an input shows, it also takes away
    assert conversation.params["response_format"]["json_schema"] == changed


def test_the_models_defaults_are_shown_as_placeholders(client, settings_url, model):
    model.default_params = {"temperature": 0.7, "stop": ["###"]}
    model.save()

    page = client.get(settings_url).content.decode()

    assert 'placeholder="0.7"' in page and 'placeholder="###"' in page
    assert 'min="0"' in page and 'max="2"' in page and 'step="any"' in page


def test_a_row_of_logit_bias_needs_both_a_token_and_a_bias(client, settings_url, model):
    half = client.post(settings_url, form_data(model, logit_bias_token="50256"))
    word = client.post(
        settings_url, form_data(model, logit_bias_token="hello", logit_bias_bias="5")
    )
    too_strong = client.post(
        settings_url, form_data(model, logit_bias_token="50256", logit_bias_bias="101")
    )

    assert half.context["form"].errors == {"logit_bias": ["Each row needs a token id and a bias."]}
    assert (
        word.context["form"].errors
        == too_strong.context["form"].errors
        == {"logit_bias": ["Must map token ids (integers as strings) to numbers from -100 to 100."]}
    )
    assert 'name="logit_bias_token" value="hello"' in word.content.decode()  # kept to fix


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"response_format": "json_schema"}, {"schema_name": ["Give the schema a name."]}),
        (
            {"response_format": "json_schema", "schema_name": "bad name!"},
            {"response_format": ["Must be {"]},
        ),
        (
            {"response_format": "json_schema", "schema_name": "w", "schema": "[1, 2]"},
            {"response_format": ["Must be {"]},
        ),
        ({"tool_choice": "auto"}, {"tool_choice": ["Needs tools to choose from."]}),
        ({"tool_choice": "function"}, {"tool_function": ["Name the function the model must"]}),
        (
            {
                "tools": json.dumps([WEATHER_TOOL]),
                "tool_choice": "function",
                "tool_function": "get_time",
            },
            {"tool_choice": ["Must name one of the tools."]},
        ),
    ],
)
def test_it_refuses_an_incomplete_json_schema_or_tool_choice(
    client, settings_url, conversation, model, fields, errors
):
    response = client.post(settings_url, form_data(model, **fields))

    found = response.context["form"].errors
    assert list(found) == list(errors)
    for name, [start] in errors.items():
        assert found[name][0].startswith(start), found[name]
    conversation.refresh_from_db()
    assert conversation.params == {}


@pytest.mark.parametrize(
    ("capability", "fields", "field"),
    [
        ("supports_tools", {"tools": json.dumps([WEATHER_TOOL])}, "tools"),
        ("supports_json", {"response_format": "json_object"}, "response_format"),
        ("supports_n", {"n": "2"}, "n"),
    ],
)
def test_a_model_without_the_capability_refuses_the_field(
    client, settings_url, model, capability, fields, field
):
    setattr(model, capability, False)
    model.save()

    response = client.post(settings_url, form_data(model, **fields))

    assert response.context["form"].errors == {field: ["This model does not support it."]}


def test_the_panel_gets_the_forms_alone(client, settings_url):
    panel = client.get(settings_url + "?panel=1").content.decode()

    assert "<html" not in panel and "data-settings-form" in panel
    assert "Reset to model defaults" in panel and 'name="temperature"' in panel


def test_the_chat_page_opens_the_settings_panel(client, settings_url, conversation):
    page = client.get(reverse("conversation", args=[conversation.id])).content.decode()

    assert 'aria-controls="settings-panel"' in page and 'id="settings-panel"' in page
    assert 'name="temperature"' not in page  # the panel's forms come when it opens


def test_reset_clears_the_request_fields_only(client, settings_url, conversation, model):
    conversation.params = {"temperature": 0.4, "max_tokens": 50}
    conversation.save()

    response = client.post(reverse("reset_settings", args=[conversation.id]), follow=True)

    conversation.refresh_from_db()
    assert conversation.params == {}
    assert (conversation.system_prompt, conversation.model) == ("Be brief.", model)
    assert response.redirect_chain == [(reverse("conversation", args=[conversation.id]), 302)]
    assert "Request fields cleared: the model&#x27;s defaults apply." in response.content.decode()


def test_reset_is_a_post(client, settings_url, conversation):
    response = client.get(reverse("reset_settings", args=[conversation.id]))

    assert response.status_code == 405


def test_it_rejects_outsider(client, alice, charlie, conversation):
    conversation.params = {"temperature": 0.4}
    conversation.save()
    client.force_login(charlie)
    url = reverse("settings", args=[conversation.id])

    assert client.get(url).status_code == 404
    assert client.get(url + "?panel=1").status_code == 404
    assert client.post(url, {"title": "Mine", "temperature": "1"}).status_code == 404
    assert client.post(reverse("reset_settings", args=[conversation.id])).status_code == 404
    conversation.refresh_from_db()
    assert (conversation.title, conversation.params) == ("Weather", {"temperature": 0.4})


def test_it_saves_my_defaults_for_new_conversations(client, alice, model):
    client.force_login(alice)

    response = client.post(
        reverse("preferences"),
        {"model": str(model.public_id), "system_prompt": "Be brief.", "temperature": "0.3"},
    )

    assert response.status_code == 302
    saved = Preferences.objects.get(user=alice)
    assert (saved.model, saved.system_prompt, saved.params) == (
        model,
        "Be brief.",
        {"temperature": 0.3},
    )
    page = client.get(reverse("preferences")).content.decode()
    assert 'value="0.3"' in page and "Be brief." in page
    assert "title" not in fields_of(page)


def test_my_defaults_use_the_same_rules(client, alice, model):
    client.force_login(alice)

    response = client.post(reverse("preferences"), {"temperature": "3", "n": "9"})

    assert response.context["form"].errors == {
        "temperature": ["Must be between 0 and 2."],
        "n": ["Must be between 1 and 8."],
    }
    assert not Preferences.objects.exists()


def test_my_defaults_refuse_a_model_i_may_not_use(client, alice, provider, model):
    secret = add_model(provider, "secret-model")
    secret.groups.add(Group.objects.create(name="staff"))
    disabled = add_model(provider, "old-model", enabled=False)
    client.force_login(alice)

    for refused in (secret, disabled):
        response = client.post(reverse("preferences"), {"model": str(refused.public_id)})

        assert response.context["form"].errors == {"model": ["This model is not available."]}
    assert not Preferences.objects.exists()
    assert str(secret.public_id) not in client.get(reverse("preferences")).content.decode()


def test_a_new_chat_preselects_my_preferred_model(client, alice, provider, model):
    other = add_model(provider, "other-model")
    Preferences.objects.create(user=alice, model=other)
    client.force_login(alice)

    page = client.get(reverse("chat")).content.decode()

    assert f'<option value="{other.public_id}" selected>' in page


@pytest.mark.django_db(transaction=True)
async def test_a_new_conversation_starts_from_my_defaults(
    alice, provider, model, sockets, fake_upstream
):
    preferred = await database_sync_to_async(add_model)(provider, "preferred-model")
    await database_sync_to_async(Preferences.objects.create)(
        user=alice,
        model=preferred,
        system_prompt="Answer in French.",
        params={"temperature": 0.3, "stop": ["END"]},
    )
    socket = await sockets(alice)

    await socket.send(**send_event("Bonjour"))  # no model named
    events = await socket.receive_until("message.done")

    body = fake_upstream.requests[-1]["body"]
    assert body["model"] == "preferred-model"
    assert body["messages"] == [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Bonjour"},
    ]
    assert (body["temperature"], body["stop"]) == (0.3, ["END"])
    created = await database_sync_to_async(Conversation.objects.get)(
        id=events[0]["conversation"]["id"]
    )
    assert created.system_prompt == "Answer in French."
    assert created.params == {"temperature": 0.3, "stop": ["END"]}

    # The send's own model and parameters win; later sends keep the conversation's.
    await socket.send(
        **send_event("Encore", str(created.id), model=str(model.public_id), params={"seed": 1})
    )
    await socket.receive_until("message.done")
    body = fake_upstream.requests[-1]["body"]
    assert (body["model"], body["temperature"], body["seed"]) == ("fake-model", 0.3, 1)


@pytest.mark.django_db(transaction=True)
async def test_my_defaults_leave_existing_conversations_alone(alice, model, sockets, fake_upstream):
    conversation = await database_sync_to_async(Conversation.objects.create)(
        owner=alice, model=model
    )
    await database_sync_to_async(Preferences.objects.create)(
        user=alice, system_prompt="Answer in French.", params={"temperature": 0.3}
    )
    socket = await sockets(alice)

    await socket.send(**send_event("Hello", conversation=str(conversation.id)))
    await socket.receive_until("message.done")

    body = fake_upstream.requests[-1]["body"]
    assert "temperature" not in body
    assert body["messages"] == [{"role": "user", "content": "Hello"}]


@pytest.mark.django_db(transaction=True)
async def test_defaults_a_model_cannot_take_are_refused_with_a_clear_error(
    alice, provider, model, sockets, fake_upstream
):
    plain = await database_sync_to_async(add_model)(
        provider, "plain-model", display_name="Plain", supports_tools=False
    )
    await database_sync_to_async(Preferences.objects.create)(
        user=alice, params={"tools": [WEATHER_TOOL]}
    )
    socket = await sockets(alice)

    await socket.send(**send_event("Hi", model=str(plain.public_id)))
    error = await socket.receive()

    assert error["type"] == "error" and error["code"] == "invalid"
    assert error["message"] == (
        "Your defaults for new conversations do not suit Plain: "
        "tools: This model does not support it."
    )
    assert fake_upstream.requests == []
    assert not await database_sync_to_async(Conversation.objects.exists)()


class _Fields(HTMLParser):
    """The values a browser would post from the page's first settings form."""

    def __init__(self):
        super().__init__()
        self.values, self.state = {}, "before"  # then "in", "template", "after"
        self.textarea = self.select = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and "settings-form" in (attrs.get("class") or ""):
            self.state = "in" if self.state == "before" else self.state
        elif self.state != "in":
            return
        elif tag == "template":  # a row for settings.js to copy, never posted
            self.state = "template"
        elif tag == "input" and attrs.get("type") not in ("submit", "checkbox"):
            self._add(attrs["name"], attrs.get("value") or "")
        elif tag == "input" and attrs.get("type") == "checkbox" and "checked" in attrs:
            self._add(attrs["name"], "on")
        elif tag in ("textarea", "select"):
            setattr(self, tag, attrs["name"])
            self._add(attrs["name"], "")
        elif tag == "option" and "selected" in attrs:
            self.values[self.select] = attrs.get("value") or ""

    def handle_data(self, data):
        if self.textarea:
            self.values[self.textarea] += data

    def handle_endtag(self, tag):
        if tag == "template" and self.state == "template":
            self.state = "in"
        elif tag == "textarea" and self.textarea:
            value = self.values[self.textarea]
            self.values[self.textarea] = value.removeprefix("\n")  # as browsers read it
            self.textarea = None
        elif tag == "form" and self.state == "in":
            self.state = "after"

    def _add(self, name, value):
        if name not in self.values:
            self.values[name] = value
        elif isinstance(self.values[name], list):
            self.values[name].append(value)
        else:
            self.values[name] = [self.values[name], value]


def fields_of(page):
    parser = _Fields()
    parser.feed(page)
    return parser.values

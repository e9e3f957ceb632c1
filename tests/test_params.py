"""Request fields: one set of rules for the websocket, conversation settings and admin."""

import uuid

import pytest
from channels.db import database_sync_to_async
from django.urls import reverse

from conversations.forms import ParamsForm
from conversations.models import Conversation, LanguageModel
from conversations.upstream import pseudonymous_user

pytestmark = pytest.mark.django_db

VALID = {
    "temperature": 0.7,
    "top_p": 0.9,
    "n": 2,
    "stop": ["END", "\n\n"],
    "max_tokens": 256,
    "presence_penalty": -1.5,
    "frequency_penalty": 2,
    "logit_bias": {"50256": -100, "11": 5.5},
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "weather", "schema": {"type": "object"}, "strict": True},
    },
    "seed": 42,
    "stream": True,
    "stream_options": {"include_usage": True},
}


def errors_for(params, model=None):
    form = ParamsForm(params, model=model)
    assert not form.is_valid()
    return form.error_text()


def test_it_accepts_every_field_of_the_api():
    form = ParamsForm(VALID)

    assert form.is_valid(), form.errors
    assert form.params() == {
        k: v for k, v in VALID.items() if k not in ("stream", "stream_options")
    }


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"temperature": 2.5}, "params.temperature: Must be between 0 and 2."),
        ({"temperature": "hot"}, "params.temperature: Must be between 0 and 2."),
        ({"top_p": -0.1}, "params.top_p: Must be between 0 and 1."),
        ({"n": 9}, "params.n: Must be between 1 and 8."),
        ({"n": 1.5}, "params.n: Must be between 1 and 8."),
        ({"max_tokens": 0}, "params.max_tokens: Must be between 1 and"),
        ({"presence_penalty": 3}, "params.presence_penalty: Must be between -2 and 2."),
        ({"frequency_penalty": -2.1}, "params.frequency_penalty: Must be between -2 and 2."),
        ({"stop": ["a", "b", "c", "d", "e"]}, "params.stop: Must be a string or a list of up to 4"),
        ({"stop": [1]}, "params.stop: Must be a string or a list of up to 4"),
        ({"logit_bias": {"abc": 1}}, "params.logit_bias: Must map token ids"),
        ({"logit_bias": {"²": 1}}, "params.logit_bias: Must map token ids"),
        ({"logit_bias": {"12": 101}}, "from -100 to 100"),
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "params.tools:"),
        ({"tools": {"type": "function"}}, "params.tools: Must be a list"),
        ({"tool_choice": "sometimes"}, 'params.tool_choice: Must be "none", "auto", "required"'),
        (
            {
                "tools": VALID["tools"],
                "tool_choice": {"type": "function", "function": {"name": "x"}},
            },
            "params.tool_choice: Must name one of the tools.",
        ),
        ({"tool_choice": "required"}, "params.tool_choice: Needs tools to choose from."),
        ({"response_format": {"type": "xml"}}, 'params.response_format: Must be {"type": "text"}'),
        ({"response_format": {"type": "json_schema"}}, "params.response_format:"),
        ({"seed": 2**64}, "params.seed: Must be between"),
        ({"stream": False}, "params.stream: Confab always streams"),
        ({"stream_options": {"include_usage": False}}, "params.stream_options:"),
        ({"user": "alice"}, "user is set by Confab"),
        ({"model": "gpt-4o"}, "model is set by Confab"),
        ({"top_k": 40}, "Unknown parameter: top_k."),
    ],
)
def test_a_bad_value_is_refused_with_the_field_and_its_range(params, message):
    assert message in errors_for(params)


def test_max_tokens_is_bounded_by_the_models_limit(model):
    model.max_output_tokens = 1000

    assert "params.max_tokens: Must be between 1 and 1000 for this model." in errors_for(
        {"max_tokens": 1001}, model
    )


def test_the_user_field_is_a_stable_pseudonym(alice, bob, settings):
    pseudonym = pseudonymous_user(alice.pk)

    assert pseudonym == pseudonymous_user(alice.pk)
    assert pseudonym != pseudonymous_user(bob.pk)
    settings.SECRET_KEY = "another server"
    assert pseudonymous_user(alice.pk) != pseudonym  # meaningless without our secret


@pytest.mark.django_db(transaction=True)
async def test_model_defaults_apply_unless_the_conversation_or_send_overrides(
    alice, model, sockets, fake_upstream
):
    model.default_params = {"temperature": 0.2, "top_p": 0.5, "seed": 7}
    model.extra_body = {"top_k": 40, "reasoning_effort": "high"}
    model.max_output_tokens = 500
    await database_sync_to_async(model.save)()
    conversation = await database_sync_to_async(Conversation.objects.create)(
        owner=alice, model=model, params={"top_p": 0.8}
    )
    socket = await sockets(alice)

    await socket.send(
        type="send",
        conversation=str(conversation.id),
        content="Hi",
        params={"seed": 8},
        client_id=str(uuid.uuid4()),
    )
    await socket.receive_until("message.done")

    body = fake_upstream.requests[-1]["body"]
    assert body["temperature"] == 0.2  # the model's default
    assert body["top_p"] == 0.8  # the conversation's
    assert body["seed"] == 8  # this send's
    assert (body["top_k"], body["reasoning_effort"]) == (40, "high")  # passed through
    assert body["max_tokens"] == 500  # the model's limit when nobody sets one


@pytest.mark.django_db(transaction=True)
async def test_a_refused_parameter_sends_nothing_upstream(alice, model, sockets, fake_upstream):
    socket = await sockets(alice)
    await socket.send(
        type="send", content="Hi", params={"stream": False}, client_id=str(uuid.uuid4())
    )

    error = await socket.receive()

    assert error["code"] == "invalid" and "params.stream" in error["message"]
    assert fake_upstream.requests == []


def test_the_settings_form_uses_the_same_rules(client, alice, model):
    conversation = Conversation.objects.create(owner=alice, model=model)
    client.force_login(alice)
    url = reverse("settings", args=[conversation.id])

    model_id = str(model.public_id)
    refused = client.post(url, {"model": model_id, "temperature": "3"})
    saved = client.post(url, {"title": "Tuned", "model": model_id, "temperature": "1.1", "n": "2"})

    assert refused.context["form"].errors == {"temperature": ["Must be between 0 and 2."]}
    assert saved.status_code == 302
    conversation.refresh_from_db()
    assert (conversation.title, conversation.params) == ("Tuned", {"temperature": 1.1, "n": 2})


def test_settings_reject_outsider(client, alice, charlie):
    conversation = Conversation.objects.create(owner=alice)
    client.force_login(charlie)

    assert client.get(reverse("settings", args=[conversation.id])).status_code == 404
    assert client.post(reverse("settings", args=[conversation.id]), {}).status_code == 404


def model_form_data(model, **changes):
    return {
        "provider": model.provider_id,
        "upstream_id": model.upstream_id,
        "display_name": "",
        "enabled": "on",
        "max_output_tokens": "",
        "context_window": "",
        "supports_tools": "on",
        "supports_json": "on",
        "supports_n": "on",
        "default_params": "{}",
        "extra_body": "{}",
        "prices-TOTAL_FORMS": "0",
        "prices-INITIAL_FORMS": "0",
        "prices-MIN_NUM_FORMS": "0",
        "prices-MAX_NUM_FORMS": "1000",
        **changes,
    }


def test_admin_model_defaults_use_the_same_rules(alice_admin, model):
    url = reverse("admin:conversations_languagemodel_change", args=[model.pk])

    bad = alice_admin.post(url, model_form_data(model, default_params='{"top_p": 2}'))
    clash = alice_admin.post(url, model_form_data(model, extra_body='{"temperature": 1}'))
    good = alice_admin.post(
        url,
        model_form_data(model, default_params='{"top_p": 0.3}', extra_body='{"top_k": 20}'),
    )

    assert "top_p: Must be between 0 and 1." in bad.content.decode()
    assert "Standard fields belong in default parameters: temperature." in clash.content.decode()
    assert good.status_code == 302
    model.refresh_from_db()
    assert (model.default_params, model.extra_body) == ({"top_p": 0.3}, {"top_k": 20})


def test_admin_syncs_a_providers_models_as_disabled_entries(
    alice_admin, provider, model, fake_upstream
):
    fake_upstream.script("another-model", [])

    response = alice_admin.post(
        reverse("admin:conversations_provider_changelist"),
        {"action": "sync_models", "_selected_action": [provider.pk]},
        follow=True,
    )

    assert "1 new model, disabled until you enable it." in response.content.decode()
    added = LanguageModel.objects.get(provider=provider, upstream_id="another-model")
    assert not added.enabled
    model.refresh_from_db()
    assert model.enabled  # known models keep their settings


def provider_form_data(**changes):
    return {
        "name": "Local vLLM",
        "base_url": "http://vllm:8000/v1",
        "api_key": "",
        "extra_headers": "{}",
        "first_byte_timeout_s": "",
        "idle_timeout_s": "",
        "enabled": "on",
        **changes,
    }


def test_admin_accepts_a_provider_on_a_host_without_a_dot(alice_admin):
    from conversations.models import Provider

    response = alice_admin.post(reverse("admin:conversations_provider_add"), provider_form_data())

    assert response.status_code == 302
    assert Provider.objects.get(name="Local vLLM").base_url == "http://vllm:8000/v1"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"base_url": "ftp://host/v1"}, "Enter an http:// or https:// address"),
        ({"base_url": "https://host/v1?api-version=1"}, "without a query"),
        ({"extra_headers": '{"X-Title": "Café"}'}, "in ASCII"),
        ({"extra_headers": '{"Authorization": "Bearer x"}'}, "Put the key in the API key field"),
    ],
)
def test_admin_refuses_a_provider_that_cannot_work(alice_admin, changes, message):
    response = alice_admin.post(
        reverse("admin:conversations_provider_add"), provider_form_data(**changes)
    )

    assert message in response.content.decode()


@pytest.mark.parametrize(
    ("flag", "params"),
    [
        ("supports_tools", {"tools": VALID["tools"]}),
        ("supports_json", {"response_format": {"type": "json_object"}}),
        ("supports_n", {"n": 3}),
    ],
)
def test_a_model_refuses_what_the_administrator_says_it_cannot_do(model, flag, params):
    setattr(model, flag, False)

    [name] = params
    assert f"params.{name}: This model does not support it." in errors_for(params, model)

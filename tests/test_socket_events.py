"""Every websocket event, in a conversation that has a model, with the default parameters
and with saved ones: each answers with its events, reaches the user's other tabs, and logs
nothing (the suite fails on any error logged; see conftest.no_errors_logged)."""

import uuid

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from conversations.models import Conversation, Message, Preferences
from tests.fake_upstream import reply
from tests.helpers import SLOW_PARTS

pytestmark = pytest.mark.django_db(transaction=True)

SAVED = {"temperature": 0.3, "max_tokens": 64, "stop": ["END"]}
# Every request is bounded: the site's default when neither the model nor the user set one.
DEFAULTS = {"max_tokens": 4096}


@pytest.fixture(params=[{}, SAVED], ids=["default-params", "saved-params"])
def saved_params(request):
    return request.param


@pytest.fixture
def answered(alice, model, saved_params):
    """Alice's conversation with the model: one question, answered."""
    conversation = Conversation.objects.create(
        owner=alice, title="Plans", model=model, params=saved_params
    )
    question = Message.objects.create(
        conversation=conversation, role=Message.Role.USER, content="first question"
    )
    answer = Message.objects.create(
        conversation=conversation,
        parent=question,
        role=Message.Role.ASSISTANT,
        content="first answer",
        model=model,
        model_name=model.upstream_id,
        params=saved_params,
    )
    return conversation, question, answer


@pytest.fixture
def other_model(provider):
    return provider.models.create(upstream_id="other-model", display_name="Other")


def send(conversation, content, **extra):
    return {
        "type": "send",
        "conversation": str(conversation.id) if conversation else None,
        "content": content,
        "parent": None,
        "params": {},
        "client_id": str(uuid.uuid4()),
        **extra,
    }


def types(events):
    return [event["type"] for event in events]


def assert_a_reply_streamed(events, text):
    assert "error" not in types(events), events
    created = [e["message"] for e in events if e["type"] == "message.created"]
    done = events[-1]["message"]
    assert created[-1]["status"] == "streaming" and done["id"] == created[-1]["id"]
    assert done["status"] == "complete" and done["content"] == text
    assert "".join(e.get("content", "") for e in events if e["type"] == "message.delta") == text
    return created, done


async def sidebar_update(tab, conversation_id):
    """The sidebar event another tab of the user gets for the conversation."""
    event = (await tab.receive_until("conversation.updated"))[-1]
    assert event["conversation"]["id"] == str(conversation_id)
    return event["conversation"]


async def test_send_streams_a_reply_with_the_saved_parameters(
    alice, answered, saved_params, sockets, fake_upstream
):
    conversation, _, answer = answered
    tab, other_tab = await sockets(alice), await sockets(alice)

    await tab.send(**send(conversation, "second question"))
    events = await tab.receive_until("message.done")

    created, _ = assert_a_reply_streamed(events, "You said: second question")
    assert [m["role"] for m in created] == ["user", "assistant"]
    assert created[0]["parent"] == str(answer.id)
    body = fake_upstream.requests[-1]["body"]
    assert {name: body.get(name) for name in SAVED} == {
        name: saved_params.get(name, DEFAULTS.get(name)) for name in SAVED
    }
    summary = await sidebar_update(other_tab, conversation.id)
    assert (summary["title"], summary["model"], summary["generating"]) == (
        "Plans", "fake-model", True,
    )  # fmt: skip
    assert (await sidebar_update(other_tab, conversation.id))["generating"] is False


async def test_send_starts_a_conversation_from_saved_defaults(
    alice, model, saved_params, sockets, fake_upstream
):
    await database_sync_to_async(Preferences.objects.create)(
        user=alice, model=model, system_prompt="Be brief.", params=saved_params
    )
    tab, other_tab = await sockets(alice), await sockets(alice)

    await tab.send(**send(None, "hello"))
    events = await tab.receive_until("message.done")

    assert types(events)[0] == "conversation.created"
    assert_a_reply_streamed(events, "You said: hello")
    body = fake_upstream.requests[-1]["body"]
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body.get("temperature") == saved_params.get("temperature")
    created = (await other_tab.receive_until("conversation.created"))[-1]["conversation"]
    assert created["id"] == events[0]["conversation"]["id"] and created["model"] == "fake-model"


async def test_edit_answers_the_new_version_of_a_question(
    alice, answered, saved_params, sockets, fake_upstream
):
    conversation, question, _ = answered
    tab, other_tab = await sockets(alice), await sockets(alice)

    await tab.send(type="edit", message=str(question.id), content="first, better",
                   client_id=str(uuid.uuid4()))  # fmt: skip
    events = await tab.receive_until("message.done")

    created, _ = assert_a_reply_streamed(events, "You said: first, better")
    assert created[0]["parent"] is None and created[0]["id"] != str(question.id)
    sent = fake_upstream.requests[-1]["body"]
    assert sent["max_tokens"] == saved_params.get("max_tokens", DEFAULTS["max_tokens"])
    assert (await sidebar_update(other_tab, conversation.id))["generating"] is True


async def test_regenerate_answers_again_with_the_same_model(
    alice, answered, saved_params, sockets, fake_upstream
):
    conversation, question, answer = answered
    tab, other_tab = await sockets(alice), await sockets(alice)

    await tab.send(type="regenerate", message=str(answer.id))
    events = await tab.receive_until("message.done")

    created, done = assert_a_reply_streamed(events, "You said: first question")
    assert [m["parent"] for m in created] == [str(question.id)]
    assert done["model"] == "fake-model" and done["params"] == saved_params
    summary = await sidebar_update(other_tab, conversation.id)
    assert (summary["model"], summary["generating"]) == ("fake-model", True)


async def test_regenerate_with_another_model_and_parameters(
    alice, answered, other_model, sockets, fake_upstream
):
    conversation, _, answer = answered
    tab, other_tab = await sockets(alice), await sockets(alice)

    await tab.send(type="regenerate", message=str(answer.id), model=str(other_model.public_id),
                   params={"temperature": 1.5})  # fmt: skip
    events = await tab.receive_until("message.done")

    _, done = assert_a_reply_streamed(events, "You said: first question")
    assert done["model"] == "other-model" and done["params"] == {"temperature": 1.5}
    assert fake_upstream.requests[-1]["body"]["model"] == "other-model"
    # The sidebar, in every tab, names the model the conversation now uses.
    assert (await sidebar_update(other_tab, conversation.id))["model"] == "other-model"


async def test_stop_ends_a_reply_in_every_tab(alice, answered, sockets, fake_upstream):
    conversation, _, _ = answered
    fake_upstream.script("fake-model", reply(SLOW_PARTS, delay=0.05))
    tab, other_tab = await sockets(alice), await sockets(alice)
    await other_tab.send(type="subscribe", conversation=str(conversation.id))
    await tab.send(**send(conversation, "go on"))
    started = await tab.receive_until("message.delta")
    placeholder = [e["message"] for e in started if e["type"] == "message.created"][-1]

    await tab.send(type="stop", message=placeholder["id"])
    done = (await tab.receive_until("message.done"))[-1]["message"]
    seen_elsewhere = (await other_tab.receive_until("message.done"))[-1]["message"]

    assert done["status"] == seen_elsewhere["status"] == "cancelled"
    assert done["content"] and "".join(SLOW_PARTS).startswith(done["content"])


async def test_subscribe_catches_up_on_a_reply_in_flight(alice, answered, sockets, fake_upstream):
    conversation, _, _ = answered
    fake_upstream.script("fake-model", reply(SLOW_PARTS, delay=0.02))
    tab, late_tab = await sockets(alice), await sockets(alice)
    await tab.send(**send(conversation, "go on"))
    await tab.receive_until("message.delta")

    await late_tab.send(type="subscribe", conversation=str(conversation.id))
    events = await late_tab.receive_until("message.done")

    snapshot = next(e for e in events if e["type"] == "message.snapshot")
    later = "".join(e.get("content", "") for e in events if e["type"] == "message.delta"
                    and e["seq"] > snapshot["seq"])  # fmt: skip
    assert snapshot["message"]["content"] + later == "".join(SLOW_PARTS)
    assert "error" not in types(events)


async def test_a_send_after_selecting_a_branch_continues_it(
    alice, answered, saved_params, sockets, fake_upstream
):
    conversation, _, answer = answered
    tab = await sockets(alice)
    await tab.send(type="regenerate", message=str(answer.id))
    await tab.receive_until("message.done")

    def select_first_answer():
        client = Client()
        client.force_login(alice)
        return client.post(f"/m/{answer.id}/show/", follow=True)

    assert (await database_sync_to_async(select_first_answer)()).status_code == 200
    await tab.send(**send(conversation, "and then?"))
    events = await tab.receive_until("message.done")

    created, _ = assert_a_reply_streamed(events, "You said: and then?")
    assert created[0]["parent"] == str(answer.id)
    assert [m["content"] for m in fake_upstream.requests[-1]["body"]["messages"][-3:]] == [
        "first question", "first answer", "and then?",
    ]  # fmt: skip


@pytest.mark.logs_errors("websocket event failed")
@pytest.mark.parametrize(
    ("accept_language", "says"),
    [
        ("en", "The server ran into an error and could not do this. Nothing you wrote is lost"),
        ("zh-CN,zh;q=0.9", "服务器出错，未能完成此操作。你写的内容没有丢失"),
    ],
)
async def test_a_server_fault_says_what_happened_and_what_to_do(
    alice, answered, sockets, monkeypatch, accept_language, says
):
    """No server bug can be made on purpose: the send's preparation is made to fail."""
    conversation, _, _ = answered

    def broken(user, data):
        raise RuntimeError("a bug")

    monkeypatch.setattr("conversations.consumers.prepare_send", broken)
    tab = await sockets(alice, headers=[(b"accept-language", accept_language.encode())])
    event = send(conversation, "hello")

    await tab.send(**event)
    error = await tab.receive()

    assert (error["type"], error["code"], error["client_id"]) == (
        "error", "internal", event["client_id"],
    )  # fmt: skip
    assert error["message"].startswith(says)
    await tab.send(type="subscribe", conversation=str(conversation.id))
    assert await tab.nothing_more()  # still open, and answering

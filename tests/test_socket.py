"""The chat websocket itself: who may connect, and every bad event answered with a clear
error while the socket stays open."""

import json
import uuid

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conversations.models import Message
from tests.helpers import (
    open_socket,
    refused_code,
    send_event,
)

pytestmark = pytest.mark.django_db(transaction=True)


async def test_it_answers_invalid_events_and_keeps_the_socket_open(alice, model, sockets):
    socket = await sockets(alice)
    bad = [
        {"text_data": "not json"},
        {"bytes_data": b"\x00\x01"},
        {"text_data": "[1, 2]"},
        {"text_data": '{"type": "dance"}'},
        {"text_data": '{"type": "subscribe", "conversation": "not-a-uuid"}'},
        {"text_data": '{"type": "send", "conversation": null, "content": "   "}'},
        {"text_data": '{"type": "send", "content": 42}'},
        {"text_data": '{"type": "send", "content": "hi", "params": {"temperature": 3}}'},
        {"text_data": '{"type": "send", "content": "hi", "params": {"bogus": 1}}'},
        {"text_data": '{"type": "send", "content": "hi", "params": [1]}'},
        {"text_data": '{"type": "stop", "message": "' + str(uuid.uuid4()) + '"}'},
        {"text_data": '{"type": ["send"], "content": "hi"}'},
        {"text_data": '{"type": {"send": 1}, "content": "hi"}'},
        {"text_data": "[" * 10_000 + "]" * 10_000},
        {"text_data": '{"type": "send", "content": "hi", "params": ' + "[" * 40 + "]" * 40 + "}"},
        {"text_data": '{"type": "send", "content": "a lone \\ud800 surrogate"}'},
        {"text_data": '{"type": "send", "content": "hi", "client_id": "\\udfff"}'},
        {"text_data": '{"type": "send", "content": "hi", "params": {"stop": "\\u0000"}}'},
        # A surrogate pair is no lone surrogate: the event is read, and answered.
        {
            "text_data": '{"type": "stop", "message": "'
            + str(uuid.uuid4())
            + '", "x": "\\ud83d\\ude00"}'
        },
    ]
    codes = []
    for frame in bad:
        await socket.send_raw(**frame)
        event = await socket.receive()
        assert event["type"] == "error" and event["message"]
        codes.append(event["code"])

    assert codes == [
        "bad_json", "bad_frame", "unknown_type", "unknown_type", "invalid", "invalid",
        "invalid", "invalid", "invalid", "invalid", "not_found", "unknown_type",
        "unknown_type", "too_deep", "too_deep", "bad_unicode", "bad_unicode", "bad_unicode",
        "not_found",
    ]  # fmt: skip
    await socket.send(**send_event("still here"))
    assert (await socket.receive_until("message.done"))[-1]["message"]["status"] == "complete"


async def test_it_names_the_field_and_range_of_a_bad_parameter(alice, model, sockets):
    socket = await sockets(alice)
    await socket.send(**send_event(params={"temperature": 3}))

    error = await socket.receive()

    assert error["code"] == "invalid"
    assert "params.temperature" in error["message"] and "2" in error["message"]
    assert await database_sync_to_async(Message.objects.count)() == 0


async def test_it_refuses_a_message_that_is_too_long(alice, model, sockets, settings):
    socket = await sockets(alice)
    await socket.send(**send_event("x" * 100_001))

    error = await socket.receive()

    assert error["code"] == "invalid" and "content" in error["message"]


async def test_it_rejects_unauthenticated_sockets(db):
    socket = await open_socket(None)

    assert await refused_code(socket.communicator) == 4401


def origin(value):
    return [(b"origin", value.encode())]


async def test_it_accepts_a_page_of_its_own_origin(alice, sockets):
    socket = await sockets(alice, headers=origin("http://127.0.0.1:8000"))

    await socket.send(type="subscribe", conversation=str(uuid.uuid4()))
    assert (await socket.receive())["code"] == "not_found"


@pytest.mark.parametrize(
    "page",
    [
        "http://127.0.0.1:9999",  # another port of the same host
        "https://127.0.0.1:8000",  # another scheme
        "http://127.0.0.1",  # the default port is another port
        "http://evil.example:8000",
        "null",
    ],
)
async def test_it_refuses_a_page_of_another_origin(alice, page):
    socket = await open_socket(alice, headers=origin(page))

    assert await refused_code(socket.communicator) == 4403


async def test_it_refuses_a_socket_without_an_origin_or_with_a_foreign_host(alice):
    from chatsite.asgi import application

    for headers in (
        [(b"host", b"127.0.0.1:8000")],
        [(b"host", b"evil.example:8000"), (b"origin", b"http://evil.example:8000")],
    ):
        communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
        assert (await communicator.connect())[0]
        assert await refused_code(communicator) == 4403


async def test_it_accepts_a_trusted_origin(alice, sockets, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://chat.example.com", "https://*.example.org"]

    for page in ("https://chat.example.com", "https://team.example.org"):
        socket = await sockets(alice, headers=origin(page))
        await socket.send(type="subscribe", conversation=str(uuid.uuid4()))
        assert (await socket.receive())["code"] == "not_found"
    refused = await open_socket(alice, headers=origin("http://chat.example.com"))
    assert await refused_code(refused.communicator) == 4403


async def test_behind_a_trusted_proxy_the_forwarded_scheme_counts(alice, sockets, settings):
    settings.TRUST_PROXY_HEADERS = True
    forwarded = [(b"x-forwarded-proto", b"https")]

    socket = await sockets(alice, headers=[*origin("https://127.0.0.1:8000"), *forwarded])
    refused = await open_socket(alice, headers=[*origin("http://127.0.0.1:8000"), *forwarded])

    await socket.send(type="subscribe", conversation=str(uuid.uuid4()))
    assert (await socket.receive())["code"] == "not_found"
    assert await refused_code(refused.communicator) == 4403


async def test_it_rejects_outsider(alice, charlie, model, sockets, fake_upstream):
    owner = await sockets(alice)
    await owner.send(**send_event("alice's secret"))
    events = await owner.receive_until("message.done")
    conversation = events[0]["conversation"]["id"]
    user_message = events[1]["message"]["id"]
    reply_id = events[-1]["message"]["id"]
    outsider = await sockets(charlie)

    attempts = [
        {"type": "subscribe", "conversation": conversation},
        send_event("let me in", conversation=conversation),
        {"type": "stop", "message": reply_id},
        send_event("branch off", parent=user_message),
    ]
    answers = []
    for attempt in attempts:
        await outsider.send(**attempt)
        answers.append(await outsider.receive())

    assert [a["code"] for a in answers] == ["not_found"] * 4
    await outsider.send(type="subscribe", conversation=str(uuid.uuid4()))
    assert (await outsider.receive())["message"] == answers[0]["message"]
    assert await database_sync_to_async(Message.objects.count)() == 2
    assert await outsider.nothing_more()


async def test_an_oversized_frame_gets_an_error_not_a_closed_socket(alice, model, sockets,
                                                                   settings):  # fmt: skip
    settings.CONFAB_MAX_FRAME_BYTES = 1000
    socket = await sockets(alice)

    await socket.send(**send_event("x" * 2000))
    error = await socket.receive()

    assert error["code"] == "too_large" and "1000 bytes" in error["message"]
    await socket.send(**send_event("small"))
    assert (await socket.receive_until("message.done"))[-1]["message"]["status"] == "complete"


async def test_the_default_model_checks_the_parameters_too(alice, provider, sockets,
                                                           fake_upstream):  # fmt: skip
    from conversations.models import LanguageModel

    await database_sync_to_async(LanguageModel.objects.create)(
        provider=provider, upstream_id="fake-model", max_output_tokens=100, supports_n=False
    )
    socket = await sockets(alice)

    await socket.send(**send_event(params={"max_tokens": 500, "n": 2}))
    error = await socket.receive()

    assert error["code"] == "invalid"
    assert "params.n: This model does not support it." in error["message"]
    assert "params.max_tokens: Must be between 1 and 100 for this model." in error["message"]
    assert fake_upstream.requests == []


async def test_bad_input_is_logged_once_without_its_content(alice, sockets, caplog):
    socket = await sockets(alice)

    await socket.send_raw(text_data='{"type": "send", "content": "my secret \\ud800 plans"}')
    await socket.receive()

    logged = [r for r in caplog.records if r.name.startswith("conversations")]
    assert [(r.levelname, r.exc_info) for r in logged] == [("WARNING", None)]
    assert "bad_unicode" in logged[0].getMessage() and "secret" not in logged[0].getMessage()


async def test_a_subscribe_names_at_most_32_replies(alice, sockets):
    socket = await sockets(alice)
    ids = [str(uuid.uuid4()) for _ in range(33)]

    await socket.send(type="subscribe", conversation=str(uuid.uuid4()), streaming=ids)
    error = await socket.receive()

    assert error["code"] == "invalid" and "32" in error["message"]


async def test_a_finished_reply_is_sent_once_per_socket(alice, model, sockets):
    socket = await sockets(alice)
    await socket.send(**send_event())
    events = await socket.receive_until("message.done")
    conversation, reply = events[0]["conversation"]["id"], events[-1]["message"]["id"]
    tab = await sockets(alice)

    await tab.send(type="subscribe", conversation=conversation, streaming=[reply])
    first = await tab.receive()
    await tab.send(type="subscribe", conversation=conversation, streaming=[reply] * 32)

    assert (first["type"], first["message"]["id"]) == ("message.done", reply)
    assert await tab.nothing_more()


async def test_a_socket_sending_too_many_events_is_told_to_wait(alice, sockets, settings):
    settings.CONFAB_SOCKET_EVENTS_BURST = 3
    settings.CONFAB_SOCKET_EVENTS_PER_MINUTE = 6
    socket = await sockets(alice)
    other_tab = await sockets(alice)

    answers = []
    for _ in range(4):
        await socket.send(type="subscribe", conversation=str(uuid.uuid4()))
        answers.append(await socket.receive())
    await socket.send_raw(text_data="not even json")  # every frame counts
    answers.append(await socket.receive())

    assert [a["code"] for a in answers] == ["not_found"] * 3 + ["rate_limited"] * 2
    assert 1 <= answers[-1]["retry_after"] <= 10
    await other_tab.send(type="subscribe", conversation=str(uuid.uuid4()))
    assert (await other_tab.receive())["code"] == "not_found"  # a budget per socket


async def test_a_client_id_another_user_used_is_a_new_send_for_this_one(
    alice, charlie, model, sockets
):
    client_id = str(uuid.uuid4())
    owner = await sockets(alice)
    await owner.send(**send_event("alice's", client_id=client_id))
    await owner.receive_until("message.done")
    outsider = await sockets(charlie)

    await outsider.send(**send_event("charlie's", client_id=client_id))
    events = await outsider.receive_until("message.done")

    assert [e["type"] for e in events[:3]] == [
        "conversation.created", "message.created", "message.created",
    ]  # fmt: skip
    assert events[1]["message"]["content"] == "charlie's"
    assert events[-1]["message"]["status"] == "complete"
    await owner.send(**send_event("alice's again", client_id=client_id))
    retried = (await owner.receive_until("message.created"))[-1]
    assert (retried["type"], retried["message"]["content"]) == ("message.created", "alice's")


# Text of any code point, lone surrogates and NUL included.
any_text = st.text(st.characters(exclude_categories=()), max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)
ids = st.uuids().map(str) | json_values
events = st.fixed_dictionaries(
    {"type": st.sampled_from(["subscribe", "send", "edit", "regenerate", "stop"]) | json_values},
    optional={
        "conversation": st.none() | ids,
        "content": any_text | st.integers(1, 150_000).map("x".__mul__) | json_values,
        "parent": ids,
        "message": ids,
        "model": ids,
        "params": json_values,
        "streaming": st.lists(ids, max_size=40) | json_values,
        "client_id": ids,
    },
)
deep = st.integers(1, 5000).map(lambda depth: "[" * depth + "]" * depth)


def wire_text(value, ascii_only):
    """As a browser would send it: JSON in UTF-8 (a lone surrogate travels escaped)."""
    text = json.dumps(value, ensure_ascii=ascii_only)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(value)
    return text


frames = (
    st.builds(wire_text, events | json_values, st.booleans()).map(lambda t: {"text_data": t})
    | deep.map(lambda t: {"text_data": t})
    | any_text.filter(lambda t: t and t.isascii()).map(lambda t: {"text_data": t})
    | st.binary(min_size=1, max_size=64).map(lambda b: {"bytes_data": b})
)
ANSWERS = {"conversation.created", "message.created", "message.snapshot", "message.done"}


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frame=frames)
async def test_every_generated_frame_is_answered_and_others_are_served(frame, alice, bob, sockets):
    socket = await open_socket(alice)
    other = await open_socket(bob)
    try:
        await socket.send_raw(**frame)
        answer = await socket.receive()
        await other.send(type="subscribe", conversation=str(uuid.uuid4()))
        served = await other.receive()
    finally:
        await socket.close()
        await other.close()

    assert answer["type"] in ANSWERS or (
        answer["type"] == "error" and answer["code"] != "internal" and answer["message"]
    )
    assert served["code"] == "not_found"

"""The chat websocket, end to end through the runner and the fake upstream over loopback."""

import asyncio
import threading
import uuid
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer

from conversations import fanout
from conversations.generation import runner
from conversations.models import Conversation, Message, UsageRecord
from conversations.upstream import pseudonymous_user
from tests.conftest import API_KEY, open_socket, refused_code
from tests.fake_upstream import CLOSE, chunk, http_error, reply, sse, stream_headers

pytestmark = pytest.mark.django_db(transaction=True)

SLOW_PARTS = [f"word{i} " for i in range(40)]
SLOW_TEXT = "".join(SLOW_PARTS)


def send_event(content="hello world", conversation=None, **extra):
    return {
        "type": "send",
        "conversation": conversation,
        "content": content,
        "parent": None,
        "params": {},
        "client_id": str(uuid.uuid4()),
        **extra,
    }


async def slow_model(fake_upstream, model, delay):
    """A model that streams SLOW_PARTS with `delay` seconds between them."""
    fake_upstream.script("slow", reply(SLOW_PARTS, delay=delay))
    return await database_sync_to_async(model.provider.models.create)(upstream_id="slow")


def streamed_text(events):
    return "".join(e.get("content", "") for e in events if e["type"] == "message.delta")


@database_sync_to_async
def get_message(message_id):
    return Message.objects.get(id=message_id)


@database_sync_to_async
def ledger():
    return list(UsageRecord.objects.order_by("created"))


async def wait_for_status(message_id, timeout=10):
    async with asyncio.timeout(timeout):
        while (message := await get_message(message_id)).status == Message.Status.STREAMING:
            await asyncio.sleep(0.05)
    return message


async def test_it_streams_a_reply_and_saves_it_with_usage(alice, model, sockets, fake_upstream):
    socket = await sockets(alice)
    await socket.send(**send_event("hello world"))

    events = await socket.receive_until("message.done")

    types = [e["type"] for e in events]
    assert types[:3] == ["conversation.created", "message.created", "message.created"]
    assert set(types[3:-1]) == {"message.delta"}
    user_message, placeholder = events[1]["message"], events[2]["message"]
    assert (user_message["role"], user_message["content"]) == ("user", "hello world")
    assert (placeholder["role"], placeholder["status"]) == ("assistant", "streaming")
    assert placeholder["parent"] == user_message["id"]
    assert streamed_text(events) == "You said: hello world"
    seqs = [e["seq"] for e in events if e["type"] == "message.delta"]
    assert seqs == sorted(set(seqs)) and seqs[0] == 1

    done = events[-1]["message"]
    assert done["status"] == "complete"
    assert done["finish_reason"] == "stop"
    assert done["usage"] == {
        "prompt_tokens": 11,
        "completion_tokens": 7,
        "total_tokens": 18,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "estimated": False,
    }
    assert "You said: hello world" in done["html"]

    saved = await get_message(done["id"])
    assert saved.content == "You said: hello world"
    assert saved.status == Message.Status.COMPLETE
    assert (saved.prompt_tokens, saved.completion_tokens, saved.total_tokens) == (11, 7, 18)
    assert saved.cost == Decimal(11 * 2 + 7 * 8) / 1_000_000
    assert saved.ttft_ms is not None and saved.duration_ms >= saved.ttft_ms
    assert saved.completed is not None
    [record] = await ledger()
    assert (record.message_id, record.total_tokens, record.estimated) == (saved.id, 18, False)
    assert record.user_id == alice.id and record.status == "complete"


async def test_it_sends_the_whole_request_upstream(alice, model, sockets, fake_upstream):
    conversation = await database_sync_to_async(Conversation.objects.create)(
        owner=alice, system_prompt="Be brief.", model=model, params={"temperature": 0.5}
    )
    socket = await sockets(alice)
    await socket.send(**send_event("first", conversation=str(conversation.id)))
    await socket.receive_until("message.done")
    await socket.send(
        **send_event("second", conversation=str(conversation.id), params={"max_tokens": 50})
    )
    await socket.receive_until("message.done")

    request = fake_upstream.requests[-1]
    assert request["headers"]["authorization"] == f"Bearer {API_KEY}"
    body = request["body"]
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "You said: first"},
        {"role": "user", "content": "second"},
    ]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0.5 and body["max_tokens"] == 50
    assert body["user"] == pseudonymous_user(alice.pk)
    assert "alice" not in body["user"]


async def test_it_coalesces_deltas_into_few_frames(alice, model, sockets, fake_upstream):
    parts = [f"{i} " for i in range(300)]
    fake_upstream.script("burst", reply(parts))
    burst = await database_sync_to_async(model.provider.models.create)(upstream_id="burst")
    socket = await sockets(alice)
    await socket.send(**send_event(model=str(burst.public_id)))

    events = await socket.receive_until("message.done")

    frames = [e for e in events if e["type"] == "message.delta"]
    assert streamed_text(events) == "".join(parts)
    assert len(frames) < len(parts) / 10


async def test_it_finishes_the_reply_after_the_socket_goes_away(
    alice, model, sockets, fake_upstream
):
    slow = await slow_model(fake_upstream, model, delay=0.02)
    socket = await sockets(alice)
    await socket.send(**send_event(model=str(slow.public_id)))
    events = await socket.receive_until("message.delta")
    await socket.close()

    saved = await wait_for_status(events[2]["message"]["id"])

    assert saved.status == Message.Status.COMPLETE
    assert saved.content == SLOW_TEXT
    assert len(await ledger()) == 1


async def test_stop_ends_the_reply_at_once_and_keeps_the_partial_text(
    alice, model, sockets, fake_upstream
):
    slow = await slow_model(fake_upstream, model, delay=0.05)
    socket = await sockets(alice)
    await socket.send(**send_event(model=str(slow.public_id)))
    events = await socket.receive_until("message.delta")
    reply_id = events[2]["message"]["id"]

    await socket.send(type="stop", message=reply_id)
    events += await socket.receive_until("message.done")

    done = events[-1]["message"]
    assert done["status"] == "cancelled"
    assert done["content"] == streamed_text(events)
    assert 0 < len(done["content"]) < len(SLOW_TEXT)
    assert done["usage"]["estimated"] is True
    assert done["usage"]["completion_tokens"] > 0
    saved = await get_message(reply_id)
    assert (saved.status, saved.content) == (Message.Status.CANCELLED, done["content"])
    [record] = await ledger()
    assert record.estimated and record.status == "cancelled"
    await asyncio.sleep(0.3)
    assert fake_upstream.closed_early == ["slow"]


async def test_stop_from_another_tab_stops_it_in_both(alice, model, sockets, fake_upstream):
    slow = await slow_model(fake_upstream, model, delay=0.05)
    first, second = await sockets(alice), await sockets(alice)
    await first.send(**send_event(model=str(slow.public_id)))
    events = await first.receive_until("message.delta")
    conversation, reply_id = events[0]["conversation"]["id"], events[2]["message"]["id"]

    await second.send(type="subscribe", conversation=conversation)
    before = await second.receive_until("message.snapshot")
    await second.send(type="stop", message=reply_id)

    assert before[-1]["message"]["id"] == reply_id
    first_done = (await first.receive_until("message.done"))[-1]["message"]
    after = await second.receive_until("message.done")
    assert first_done["status"] == after[-1]["message"]["status"] == "cancelled"
    seen = [e["type"] for e in before + after]
    assert "conversation.created" in seen  # the second tab's sidebar learnt of it too


async def test_a_late_subscriber_gets_the_exact_text(alice, model, sockets, fake_upstream):
    slow = await slow_model(fake_upstream, model, delay=0.02)
    first, second = await sockets(alice), await sockets(alice)
    await first.send(**send_event(model=str(slow.public_id)))
    events = await first.receive_until("message.delta")
    await asyncio.sleep(0.2)

    await second.send(type="subscribe", conversation=events[0]["conversation"]["id"])
    late = await second.receive_until("message.done")
    late = late[[e["type"] for e in late].index("message.snapshot") :]

    snapshot = late[0]
    assert snapshot["type"] == "message.snapshot"
    text, seq = snapshot["message"]["content"], snapshot["seq"]
    for event in late[1:]:
        if event["type"] == "message.delta" and event["seq"] > seq:
            text += event.get("content", "")
    assert text == SLOW_TEXT
    await first.receive_until("message.done")


async def test_it_checkpoints_the_text_while_streaming(
    alice, model, sockets, fake_upstream, settings
):
    settings.CONFAB_CHECKPOINT_INTERVAL_MS = 100
    slow = await slow_model(fake_upstream, model, delay=0.05)
    socket = await sockets(alice)
    await socket.send(**send_event(model=str(slow.public_id)))
    events = await socket.receive_until("message.delta")
    reply_id = events[2]["message"]["id"]

    await asyncio.sleep(0.6)
    checkpoint = await get_message(reply_id)

    assert checkpoint.status == Message.Status.STREAMING
    assert checkpoint.content and SLOW_TEXT.startswith(checkpoint.content)
    await socket.send(type="stop", message=reply_id)
    await socket.receive_until("message.done")


async def test_a_retried_send_is_not_sent_twice(alice, model, sockets, fake_upstream):
    socket = await sockets(alice)
    event = send_event("only once")
    await socket.send(**event)
    first = await socket.receive_until("message.done")

    await socket.send(**event)
    again = [await socket.receive(), await socket.receive()]

    assert [e["type"] for e in again] == ["message.created", "message.created"]
    assert again[0]["message"]["id"] == first[1]["message"]["id"]
    assert len(fake_upstream.requests) == 1
    assert await database_sync_to_async(Message.objects.count)() == 2


@pytest.mark.parametrize(
    ("steps", "status", "error"),
    [
        (http_error(401, f"Incorrect API key provided: {API_KEY}"), "failed", "HTTP 401"),
        (http_error(500, "The server had an error"), "failed", "HTTP 500"),
        (
            [
                stream_headers(),
                sse(chunk({"content": "Partial"})),
                sse({"error": {"message": "Rate limit reached mid-stream"}}),
            ],
            "failed",
            "Rate limit reached mid-stream",
        ),
        ([stream_headers(), sse(chunk({"content": "Partial"})), CLOSE], "interrupted", "closed"),
    ],
    ids=["http-401", "http-500", "error-event", "cut"],
)
async def test_a_failed_request_ends_the_reply_with_a_readable_error(
    alice, model, sockets, fake_upstream, steps, status, error
):
    fake_upstream.script("broken", steps)
    broken = await database_sync_to_async(model.provider.models.create)(upstream_id="broken")
    socket = await sockets(alice)
    await socket.send(**send_event(model=str(broken.public_id)))

    done = (await socket.receive_until("message.done"))[-1]["message"]

    assert done["status"] == status
    assert error in done["error"]
    assert API_KEY not in done["error"] and API_KEY not in done["html"]
    partial = "Partial" if "Partial" in str(steps) else ""
    assert done["content"] == partial
    assert len(await ledger()) == 1


async def test_it_estimates_usage_when_the_provider_sends_none(
    alice, model, sockets, fake_upstream
):
    fake_upstream.script("no-usage", reply(["你好，", "世界！", " Hello there."], usage=None))
    no_usage = await database_sync_to_async(model.provider.models.create)(upstream_id="no-usage")
    socket = await sockets(alice)
    await socket.send(**send_event("你好", model=str(no_usage.public_id)))

    done = (await socket.receive_until("message.done"))[-1]["message"]

    assert done["content"] == "你好，世界！ Hello there."
    usage = done["usage"]
    assert usage["estimated"] is True
    assert usage["completion_tokens"] == 6 + 4  # six CJK characters, 13 other characters
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    [record] = await ledger()
    assert record.estimated


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
    ]
    codes = []
    for frame in bad:
        await socket.send_raw(**frame)
        event = await socket.receive()
        assert event["type"] == "error" and event["message"]
        codes.append(event["code"])

    assert codes == [
        "bad_json", "bad_frame", "unknown_type", "unknown_type", "invalid", "invalid",
        "invalid", "invalid", "invalid", "invalid", "not_found",
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


async def test_it_rejects_outsider(alice, bob, model, sockets, fake_upstream):
    owner = await sockets(alice)
    await owner.send(**send_event("alice's secret"))
    events = await owner.receive_until("message.done")
    conversation = events[0]["conversation"]["id"]
    user_message = events[1]["message"]["id"]
    reply_id = events[-1]["message"]["id"]
    outsider = await sockets(bob)

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


async def test_a_busy_process_refuses_new_replies_clearly(alice, bob, model, sockets,
                                                          fake_upstream, settings):  # fmt: skip
    settings.CONFAB_MAX_GENERATIONS_PER_PROCESS = 1
    fake_upstream.script("fake-model", reply(SLOW_PARTS, delay=0.05))
    first, second = await sockets(alice), await sockets(bob)
    await first.send(**send_event())
    started = await first.receive_until("message.delta")

    await second.send(**send_event())
    refusal = await second.receive()

    assert (refusal["code"], refusal["retry_after"]) == ("busy", 5)
    assert "busy" in refusal["message"]
    await first.send(type="stop", message=started[2]["message"]["id"])
    await first.receive_until("message.done")


async def test_sends_queued_too_long_for_the_database_make_new_ones_busy(
    alice, bob, model, sockets, fake_upstream
):
    """When the database thread falls behind, a new send is refused at once, not queued;
    the sends already waiting are served when it catches up."""
    queued = [await sockets(alice) for _ in range(3)] + [await sockets(bob) for _ in range(2)]
    late = await sockets(bob)
    release = threading.Event()
    blocker = asyncio.ensure_future(database_sync_to_async(release.wait)(10))  # the thread busy
    for socket in queued:
        await socket.send(**send_event())
    await asyncio.sleep(0.3)  # longer than CONFAB_MAX_SEND_WAIT_MS (200)

    await late.send(**send_event())
    refusal = await late.receive()
    release.set()
    await blocker

    assert (refusal["code"], refusal["retry_after"]) == ("busy", 5)
    for socket in queued:
        events = await socket.receive_until("message.done")
        assert streamed_text(events) == "You said: hello world"


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


async def test_regenerate_makes_a_sibling_reply(alice, model, sockets, fake_upstream):
    fake_upstream.script("fake-model", http_error(500, "overloaded"))
    socket = await sockets(alice)
    await socket.send(**send_event("try me"))
    failed = (await socket.receive_until("message.done"))[-1]["message"]
    fake_upstream.reset()

    await socket.send(type="regenerate", message=failed["id"])
    events = await socket.receive_until("message.done")

    created, done = events[0]["message"], events[-1]["message"]
    assert (created["parent"], created["status"]) == (failed["parent"], "streaming")
    assert (done["id"], done["status"], done["content"]) == (created["id"], "complete",
                                                             "You said: try me")  # fmt: skip
    conversation = await database_sync_to_async(Conversation.objects.get)(id=done["conversation"])
    branch = await database_sync_to_async(conversation.branch)()
    assert [m.id for m in branch][-1] == uuid.UUID(done["id"])  # the new one is shown
    assert await database_sync_to_async(Message.objects.filter(id=failed["id"]).exists)()


async def test_regenerate_rejects_outsider_and_user_messages(alice, bob, model, sockets,
                                                             fake_upstream):  # fmt: skip
    owner = await sockets(alice)
    await owner.send(**send_event())
    events = await owner.receive_until("message.done")
    outsider = await sockets(bob)

    await outsider.send(type="regenerate", message=events[-1]["message"]["id"])
    stolen = await outsider.receive()
    await owner.send(type="regenerate", message=events[1]["message"]["id"])
    not_a_reply = (await owner.receive_until("error"))[-1]

    assert stolen["code"] == not_a_reply["code"] == "not_found"
    assert len(fake_upstream.requests) == 1


async def test_edit_starts_a_new_branch_from_the_same_point(alice, model, sockets, fake_upstream):
    socket = await sockets(alice)
    await socket.send(**send_event("first question"))
    first = await socket.receive_until("message.done")
    conversation = first[0]["conversation"]["id"]
    await socket.send(**send_event("second question", conversation=conversation))
    second = await socket.receive_until("message.done")
    original = second[0]["message"]

    await socket.send(type="edit", message=original["id"], content="second, better",
                      client_id=str(uuid.uuid4()))  # fmt: skip
    edited = await socket.receive_until("message.done")

    new_question = edited[0]["message"]
    assert (new_question["role"], new_question["content"]) == ("user", "second, better")
    assert new_question["parent"] == original["parent"] and new_question["id"] != original["id"]
    assert edited[-1]["message"]["content"] == "You said: second, better"
    assert fake_upstream.requests[-1]["body"]["messages"] == [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "You said: first question"},
        {"role": "user", "content": "second, better"},
    ]


async def test_edit_rejects_outsider_and_replies(alice, bob, model, sockets, fake_upstream):
    owner = await sockets(alice)
    await owner.send(**send_event())
    events = await owner.receive_until("message.done")
    outsider = await sockets(bob)

    await outsider.send(type="edit", message=events[1]["message"]["id"], content="mine now")
    stolen = await outsider.receive()
    await owner.send(type="edit", message=events[-1]["message"]["id"], content="a reply?")
    not_a_question = (await owner.receive_until("error"))[-1]

    assert stolen["code"] == not_a_question["code"] == "not_found"
    assert len(fake_upstream.requests) == 1


async def test_a_send_continues_the_branch_on_show(alice, model, sockets, fake_upstream):
    socket = await sockets(alice)
    await socket.send(**send_event("question"))
    first = (await socket.receive_until("message.done"))[-1]["message"]
    await socket.send(type="regenerate", message=first["id"])
    await socket.receive_until("message.done")
    conversation = await database_sync_to_async(Conversation.objects.get)(id=first["conversation"])
    conversation.shown_id = uuid.UUID(first["id"])  # the user switched back to the first
    await database_sync_to_async(conversation.save)()

    await socket.send(**send_event("and then?", conversation=first["conversation"]))
    created = await socket.receive_until("message.created")

    assert created[-1]["message"]["parent"] == first["id"]
    await socket.receive_until("message.done")


async def test_a_first_reply_gets_the_conversation_a_title(alice, model, sockets, fake_upstream,
                                                           settings):  # fmt: skip
    settings.CONFAB_AUTO_TITLE = True

    def answer_or_title(body):
        if body["messages"][-1]["content"].startswith("Write a title"):
            return reply(["“Everything, Answered”\n"], usage=(30, 4))
        return reply(["The ", "answer."])

    fake_upstream.script("fake-model", answer_or_title)
    socket = await sockets(alice)
    await socket.send(**send_event("What is the answer to everything, in one word?"))
    done = (await socket.receive_until("message.done"))[-1]["message"]

    updated = await socket.receive_until("conversation.updated")
    while updated[-1]["conversation"]["title"] != "Everything, Answered":
        updated = await socket.receive_until("conversation.updated")

    title_request = fake_upstream.requests[-1]["body"]
    assert title_request["max_tokens"] == 24
    assert "What is the answer to everything" in title_request["messages"][0]["content"]
    conversation = await database_sync_to_async(Conversation.objects.get)(id=done["conversation"])
    assert conversation.title == "Everything, Answered"
    rows = await database_sync_to_async(list)(UsageRecord.objects.order_by("created"))
    assert [(r.message_id is None, r.total_tokens) for r in rows][-1] == (True, 34)


@pytest.mark.django_db
def test_a_title_the_user_gave_is_never_replaced(client, alice, model):
    from django.urls import reverse

    conversation = Conversation.objects.create(owner=alice, title="first words", model=model)
    client.force_login(alice)

    client.post(reverse("rename", args=[conversation.id]), {"title": "Mine"})

    conversation.refresh_from_db()
    assert (conversation.title, conversation.auto_title) == ("Mine", False)


async def test_the_sending_tab_hears_of_its_reply_before_the_first_frame_with_a_slow_layer(
    alice, model, sockets, fake_upstream, monkeypatch
):
    """With several processes, new messages also cross the channel layer, which may be slower
    than the provider's first token; the page drops a frame of a reply it does not know."""
    layer = get_channel_layer()
    group_send = layer.group_send

    async def slow_group_send(group, message):
        await asyncio.sleep(0.05)  # Redis under load
        await group_send(group, message)

    monkeypatch.setattr(fanout, "single_process", lambda: False)
    monkeypatch.setattr(layer, "group_send", slow_group_send)
    socket = await sockets(alice)

    await socket.send(**send_event("hello world"))
    events = await socket.receive_until("message.done")

    types = [e["type"] for e in events]
    assert types[:3] == ["conversation.created", "message.created", "message.created"]
    assert streamed_text(events) == "You said: hello world"


async def test_a_process_that_falls_behind_is_dropped_not_the_reply(
    alice, model, sockets, fake_upstream, monkeypatch
):
    slow = await slow_model(fake_upstream, model, delay=0.05)
    layer = get_channel_layer()
    send = layer.send

    async def full_elsewhere(channel, message):
        if channel == "runner.behind":
            raise ChannelFull()  # that process has not read its last `capacity` messages
        await send(channel, message)

    monkeypatch.setattr(layer, "send", full_elsewhere)
    socket = await sockets(alice)
    await socket.send(**send_event(model=str(slow.public_id)))
    events = await socket.receive_until("message.delta")
    generation = runner.generations[events[2]["message"]["id"]]
    generation.send_snapshots("runner.behind", "specific.behind!1")

    events += await socket.receive_until("message.done")

    assert "runner.behind" not in generation.remote
    assert streamed_text(events) == SLOW_TEXT
    later = [e for e in events if e["type"] == "message.delta"][1:]
    assert len(later) > 10, "frames kept coming while the reply streamed, not all at the end"


async def test_frames_reach_another_process_in_few_messages_for_all_its_sockets(
    alice, model, sockets, fake_upstream
):
    """Two tabs in another process watch a reply run here: that process's mailbox gets each
    tab's snapshot, then every frame once per message for both tabs, in order."""
    slow = await slow_model(fake_upstream, model, delay=0.02)
    layer = get_channel_layer()
    elsewhere = f"runner.{uuid.uuid4().hex}"  # the layer may be a Redis kept between runs
    socket = await sockets(alice)
    await socket.send(**send_event(model=str(slow.public_id)))
    events = await socket.receive_until("message.delta")
    reply_id = events[2]["message"]["id"]
    conversation_id = events[2]["message"]["conversation"]
    for tab in ("specific.elsewhere!1", "specific.elsewhere!2"):
        await layer.group_send(
            fanout.runners_group(conversation_id),
            {"type": "runner.snapshot", "conversation": conversation_id, "origin": "elsewhere",
             "reply_to": elsewhere, "socket": tab},
        )  # fmt: skip
    events += await socket.receive_until("message.done")

    seen = {"specific.elsewhere!1": [], "specific.elsewhere!2": []}
    messages = 0
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):  # until nothing more comes
            while True:
                message = await layer.receive(elsewhere)
                assert message["type"] == "runner.deliver"
                messages += 1
                for tabs, delivered in message["batch"]:
                    for tab in tabs:
                        seen[tab] += delivered

    final = (await get_message(reply_id)).content
    for delivered in seen.values():
        snapshot, *frames = delivered
        assert snapshot["type"] == "message.snapshot"
        assert [f["seq"] for f in frames] == list(
            range(snapshot["seq"] + 1, snapshot["seq"] + 1 + len(frames))
        )
        assert snapshot["message"]["content"] + streamed_text(frames) == final == SLOW_TEXT
    frames_each = len(seen["specific.elsewhere!2"]) - 1
    assert frames_each > 5
    assert messages <= frames_each + 2, "one message carries a frame to both tabs"


async def test_message_done_reaches_another_process_after_the_last_frames(
    alice, model, sockets, fake_upstream, monkeypatch
):
    """Frames go to another process through its mailbox, `message.done` by a group send:
    with the layer slow, the end must still not overtake the text before it there."""
    slow = await slow_model(fake_upstream, model, delay=0.02)
    layer = get_channel_layer()
    elsewhere = f"runner.{uuid.uuid4().hex}"
    send, group_send, log = layer.send, layer.group_send, []

    async def slow_send(channel, message):
        if channel == elsewhere:
            await asyncio.sleep(0.3)  # Redis under load
            log.append("frames")
        await send(channel, message)

    async def logged_group_send(group, message):
        log.append(message.get("event", {}).get("type") or message["type"])
        await group_send(group, message)

    monkeypatch.setattr(fanout, "single_process", lambda: False)
    monkeypatch.setattr(layer, "send", slow_send)
    monkeypatch.setattr(layer, "group_send", logged_group_send)
    socket = await sockets(alice)
    await socket.send(**send_event(model=str(slow.public_id)))
    events = await socket.receive_until("message.delta")
    conversation_id = events[0]["conversation"]["id"]
    await layer.group_send(
        fanout.runners_group(conversation_id),
        {"type": "runner.snapshot", "conversation": conversation_id, "origin": "elsewhere",
         "reply_to": elsewhere, "socket": "specific.elsewhere!1"},
    )  # fmt: skip
    await socket.receive_until("message.done")
    async with asyncio.timeout(5):
        while "message.done" not in log or fanout.outbox.senders:  # all sent
            await asyncio.sleep(0.01)

    assert "frames" in log
    assert max(i for i, kind in enumerate(log) if kind == "frames") < log.index("message.done")

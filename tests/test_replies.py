"""A reply, end to end: a send through the socket, the runner and the fake upstream over
loopback, to the stored message, its usage and every tab that shows it."""

import asyncio
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async

from conversations.models import Conversation, Message
from conversations.upstream import pseudonymous_user
from tests.fake_upstream import CLOSE, chunk, http_error, reply, sse, stream_headers
from tests.helpers import (
    API_KEY,
    SLOW_TEXT,
    get_message,
    ledger,
    reply_ended,
    send_event,
    slow_model,
    streamed_text,
)

pytestmark = pytest.mark.django_db(transaction=True)


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

    saved = await reply_ended(events[2]["message"]["id"])

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
    assert await asyncio.to_thread(fake_upstream.wait_hung_up, "slow")
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

"""Getting frames to every tab: the outbox batches frames for sockets in other processes,
one layer message per process at a time and bounded; a reply's events reach another
process in order, even with the layer slow or full."""

import asyncio
import uuid

import pytest
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer

from conversations import fanout
from conversations.generation import runner
from tests.helpers import (
    SLOW_TEXT,
    get_message,
    send_event,
    slow_model,
    streamed_text,
)


async def all_sent(outbox):
    """Until every sender of `outbox` has finished: their tasks awaited."""
    async with asyncio.timeout(5):
        await asyncio.gather(*outbox.senders.values())


async def test_frames_queued_while_a_send_is_on_its_way_go_out_together():
    sent = []
    layer = get_channel_layer()
    outbox = fanout.Outbox(lambda process: None)
    elsewhere = f"runner.{uuid.uuid4().hex}"  # the layer may be a Redis kept between runs

    outbox.put(elsewhere, {"tab!1"}, [{"seq": 1}])
    outbox.put(elsewhere, {"tab!1", "tab!2"}, [{"seq": 2}, {"seq": 3}])
    async with asyncio.timeout(5):
        sent.append(await layer.receive(elsewhere))

    [message] = sent
    assert message["type"] == "runner.deliver"
    assert message["batch"] == [
        [["tab!1"], [{"seq": 1}]],
        [["tab!1", "tab!2"], [{"seq": 2}, {"seq": 3}]],
    ]


async def test_a_process_the_layer_cannot_keep_up_with_is_given_up(monkeypatch):
    """No unbounded queue: while one send hangs, at most `max_queued` events wait for it."""
    given_up = []
    outbox = fanout.Outbox(given_up.append, max_queued=5)
    layer = get_channel_layer()
    release = asyncio.Event()

    async def hanging_send(channel, message):
        await release.wait()  # Redis not answering

    monkeypatch.setattr(layer, "send", hanging_send)
    outbox.put("runner.slow", ["tab!1"], [{"seq": 1}])
    await asyncio.sleep(0)  # the first message is on its way, and hangs
    for seq in range(2, 8):
        outbox.put("runner.slow", ["tab!1"], [{"seq": seq}])

    assert given_up == ["runner.slow"]
    assert "runner.slow" not in outbox.queues
    release.set()
    await all_sent(outbox)


async def test_sent_waits_until_what_was_queued_has_left(monkeypatch):
    layer = get_channel_layer()
    release, delivered = asyncio.Event(), []

    async def held_send(channel, message):
        await release.wait()
        delivered.append(message["batch"])

    monkeypatch.setattr(layer, "send", held_send)
    outbox = fanout.Outbox(lambda process: None)
    outbox.put("runner.held", ["tab!1"], [{"seq": 1}])
    waiting = asyncio.ensure_future(outbox.sent("runner.held"))
    await asyncio.sleep(0.05)

    assert not waiting.done() and delivered == []
    release.set()
    async with asyncio.timeout(5):
        await waiting
    assert delivered == [[[["tab!1"], [{"seq": 1}]]]]
    await all_sent(outbox)


@pytest.mark.django_db(transaction=True)
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


@pytest.mark.django_db(transaction=True)
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


@pytest.mark.django_db(transaction=True)
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


@pytest.mark.django_db(transaction=True)
async def test_message_done_reaches_another_process_after_the_last_frames(
    alice, model, sockets, fake_upstream, monkeypatch
):
    """Frames go to another process through its mailbox, `message.done` by a group send:
    with the layer slow, the end must still not overtake the text before it there."""
    slow = await slow_model(fake_upstream, model, delay=0.02)
    layer = get_channel_layer()
    elsewhere = f"runner.{uuid.uuid4().hex}"
    send, group_send, log = layer.send, layer.group_send, []
    done_sent = asyncio.Event()

    async def slow_send(channel, message):
        if channel == elsewhere:
            await asyncio.sleep(0.3)  # Redis under load
            log.append("frames")
        await send(channel, message)

    async def logged_group_send(group, message):
        kind = message.get("event", {}).get("type") or message["type"]
        log.append(kind)
        await group_send(group, message)
        if kind == "message.done":
            done_sent.set()

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
        await done_sent.wait()
    await all_sent(fanout.outbox)

    assert "frames" in log
    assert max(i for i, kind in enumerate(log) if kind == "frames") < log.index("message.done")

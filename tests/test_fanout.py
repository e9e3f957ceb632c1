"""The outbox: frames for sockets in other processes, batched per process and bounded."""

import asyncio
import uuid

from channels.layers import get_channel_layer

from conversations import fanout


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
    async with asyncio.timeout(5):
        while outbox.senders:
            await asyncio.sleep(0.01)


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
    async with asyncio.timeout(5):
        while outbox.senders:
            await asyncio.sleep(0.01)

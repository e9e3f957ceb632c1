"""Admission: a process at its limits refuses new replies at once, clearly, and serves the
ones it took."""

import asyncio
import threading

import pytest
from channels.db import database_sync_to_async

from tests.fake_upstream import reply
from tests.helpers import (
    SLOW_PARTS,
    send_event,
    streamed_text,
)

pytestmark = pytest.mark.django_db(transaction=True)


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

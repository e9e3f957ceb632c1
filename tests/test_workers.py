"""Several workers on PostgreSQL and Redis: a reply belongs to the process that runs it,
yet every tab on any worker sees it, can stop it, and gets it back exactly after a drop.
Two real `manage.py serve` processes behind no proxy, no sticky sessions."""

import asyncio
import os
import random
import signal
import time
import uuid
from pathlib import Path
from urllib.request import urlopen

import httpx
import pytest

from tests.cluster import Cluster
from tests.fake_upstream import agent, calls, reply

SLOW = [f"w{i} " for i in range(60)]  # 60 chunks, 50 ms apart: three seconds
SLOW_TEXT = "".join(SLOW)


@pytest.fixture(scope="module")
def cluster(fake_upstream_server, tmp_path_factory):
    fake_upstream_server.script("slow", reply(SLOW, delay=0.05, usage=(30, 60)))
    fake_upstream_server.script("quick", reply(["ok"], usage=(3, 1)))
    with Cluster(
        fake_upstream_server.url,
        tmp_path_factory.mktemp("cluster"),
        CONFAB_CHECKPOINT_INTERVAL_MS=300,
        CONFAB_STALE_AFTER_S=3,
        CONFAB_SHUTDOWN_GRACE_S=2,
        CONFAB_USER_MAX_CONCURRENT=2,
        CONFAB_USER_SENDS_PER_MINUTE=6,
    ) as cluster:
        cluster.start("a")
        cluster.start("b")
        yield cluster


@pytest.fixture
def upstream(cluster, fake_upstream_server):
    fake_upstream_server.script("slow", reply(SLOW, delay=0.05, usage=(30, 60)))
    fake_upstream_server.script("quick", reply(["ok"], usage=(3, 1)))
    return fake_upstream_server


@pytest.fixture
def session(cluster):
    return cluster.session_for(f"user-{uuid.uuid4().hex[:8]}")


def send(cluster, model="slow", **extra):
    return {
        "type": "send",
        "conversation": None,
        "content": "Count.",
        "model": cluster.model_id(model),
        "params": {},
        "client_id": str(uuid.uuid4()),
        **extra,
    }


async def start_reply(tab, cluster, **extra):
    """Send, and return (conversation id, reply id) once the reply has begun."""
    await tab.send(**send(cluster, **extra))
    created = await tab.receive_until(
        lambda e: e["type"] == "message.created" and e["message"]["role"] == "assistant"
    )
    return created["message"]["conversation"], created["message"]["id"]


def stored(cluster, message_id):
    [row] = cluster.query(
        "SELECT status, content, usage_estimated, completion_tokens FROM conversations_message"
        " WHERE id = %s",
        uuid.UUID(message_id),
    )
    return row


async def test_a_reply_run_by_one_worker_streams_to_a_tab_on_the_other(cluster, upstream, session):
    async with cluster.tab("a", session) as sender, cluster.tab("b", session) as watcher:
        conversation, reply_id = await start_reply(sender, cluster)
        await watcher.send(type="subscribe", conversation=conversation)

        done = await watcher.until_done(reply_id)
        await sender.until_done(reply_id)

    assert done["message"]["status"] == "complete"
    assert watcher.text[reply_id] == sender.text[reply_id] == SLOW_TEXT
    deltas = [e for e in watcher.events if e["type"] == "message.delta"]
    assert deltas, "the watcher saw the reply live, not only at the end"


async def test_a_tab_on_the_other_worker_sees_new_messages_live(cluster, upstream, session):
    async with cluster.tab("a", session) as sender, cluster.tab("b", session) as watcher:
        await sender.send(**send(cluster, model="quick"))
        first = await sender.receive_until(lambda e: e["type"] == "message.done")
        conversation = first["message"]["conversation"]
        await watcher.send(type="subscribe", conversation=conversation)
        await asyncio.sleep(0.3)

        await sender.send(**send(cluster, conversation=conversation))
        created = await watcher.receive_until(
            lambda e: e["type"] == "message.created" and e["message"]["role"] == "assistant"
        )
        done = await watcher.until_done(created["message"]["id"])

    assert watcher.text[created["message"]["id"]] == done["message"]["content"] == SLOW_TEXT
    assert any(
        e["type"] == "conversation.created" and e["conversation"]["id"] == conversation
        for e in watcher.events
    ), "the sidebar of the other tab learnt of the new conversation"


async def test_stop_through_the_other_worker_stops_the_runner(cluster, upstream, session):
    async with cluster.tab("a", session) as sender, cluster.tab("b", session) as other:
        conversation, reply_id = await start_reply(sender, cluster)
        await sender.receive_until(lambda e: e["type"] == "message.delta")
        await other.send(type="subscribe", conversation=conversation)

        await other.send(type="stop", message=reply_id)
        stopped = await other.until_done(reply_id, timeout=5)
        await sender.until_done(reply_id, timeout=5)

    assert stopped["message"]["status"] == "cancelled"
    assert 0 < len(stopped["message"]["content"]) < len(SLOW_TEXT)
    assert stored(cluster, reply_id)[:2] == ("cancelled", stopped["message"]["content"])
    assert await asyncio.to_thread(upstream.wait_hung_up, "slow")


@pytest.mark.parametrize("seed", range(6))
async def test_a_tab_that_drops_and_comes_back_anywhere_gets_the_exact_text(
    cluster, upstream, session, seed
):
    rng = random.Random(seed)
    async with cluster.tab("a", session) as first:
        conversation, reply_id = await start_reply(first, cluster)
        for _ in range(rng.randrange(0, 25)):
            await first.receive()
    await asyncio.sleep(rng.uniform(0, 0.4))

    async with cluster.tab(rng.choice("ab"), session) as again:
        await again.send(type="subscribe", conversation=conversation)
        done = await again.until_done(reply_id)

    assert again.text[reply_id] == done["message"]["content"] == SLOW_TEXT


async def test_a_killed_worker_leaves_its_reply_interrupted_with_the_checkpointed_text(
    cluster, upstream, session
):
    async with cluster.tab("a", session) as tab:
        conversation, reply_id = await start_reply(tab, cluster)
        await asyncio.sleep(1.2)  # some checkpoints (every 300 ms here) have been written
        cluster.kill("a", signal.SIGKILL)
    checkpointed = stored(cluster, reply_id)[1]

    try:
        async with cluster.tab("b", session) as survivor:
            await asyncio.sleep(3.5)  # the reply's checkpoint goes stale
            # As the page does: subscribe, naming the reply it last saw streaming.
            await survivor.send(type="subscribe", conversation=conversation, streaming=[reply_id])
            done = await survivor.until_done(reply_id, timeout=10)
    finally:
        cluster.start("a")

    assert checkpointed and SLOW_TEXT.startswith(checkpointed)
    message = done["message"]
    assert message["status"] == "interrupted"
    assert message["content"] == checkpointed
    assert message["usage"]["estimated"] and message["usage"]["completion_tokens"] > 0
    [(count,)] = cluster.query(
        "SELECT count(*) FROM conversations_usagerecord WHERE message_id = %s",
        uuid.UUID(reply_id),
    )
    assert count == 1


async def test_the_reaper_needs_nobody_to_open_the_page(cluster, upstream, session):
    async with cluster.tab("a", session) as tab:
        conversation_id, reply_id = await start_reply(tab, cluster)
        await asyncio.sleep(0.6)  # some checkpoints written
        cluster.kill("a", signal.SIGKILL)
    try:
        async with cluster.tab("b", session) as watcher:
            # Subscribed before the reply is stale: its end comes from b's periodic reaper.
            await watcher.send(type="subscribe", conversation=conversation_id)
            done = await watcher.until_done(reply_id, timeout=15)
    finally:
        cluster.start("a")

    assert done["message"]["status"] == "interrupted"
    assert stored(cluster, reply_id)[0] == "interrupted"


async def test_sigterm_lets_a_short_reply_finish_and_interrupts_a_long_one(
    cluster, upstream, session
):
    upstream.script("short", reply(["almost ", "done"], delay=0.5, usage=(2, 2)))
    upstream.script("long", reply(SLOW * 3, delay=0.1, usage=(2, 2)))
    cluster.manage("connect_provider", "Default", upstream.url)
    async with cluster.tab("a", session) as tab:
        _, short_id = await start_reply(tab, cluster, model="short")
        _, long_id = await start_reply(tab, cluster, model="long")
        await asyncio.sleep(0.3)
        worker = cluster.kill("a", signal.SIGTERM, wait=False)
        worker.wait(30)
    cluster.start("a")

    assert stored(cluster, short_id)[:2] == ("complete", "almost done")
    status, content, estimated, _ = stored(cluster, long_id)
    assert status == "interrupted" and content and estimated
    assert (SLOW_TEXT * 3).startswith(content)


async def test_per_user_limits_hold_across_workers(cluster, upstream, session):
    # Sends are counted per clock minute: start with enough of this one left that it cannot
    # turn (and reset the count) in the middle of the test.
    if (left := 60 - time.time() % 60) < 20:
        await asyncio.sleep(left + 0.1)
    async with cluster.tab("a", session) as a, cluster.tab("b", session) as b:
        _, first = await start_reply(a, cluster)
        _, second = await start_reply(b, cluster)
        await a.send(**send(cluster))
        too_many = await a.receive_until(lambda e: e["type"] == "error")
        for tab, reply_id in ((a, first), (b, second)):
            await tab.send(type="stop", message=reply_id)
            await tab.until_done(reply_id)

        answered = 0
        while answered < 10:  # three sends so far; the limit is six a minute
            await b.send(**send(cluster, model="quick"))
            event = await b.receive_until(lambda e: e["type"] in ("message.done", "error"))
            if event["type"] == "error":
                break
            answered += 1

    assert too_many["code"] == "too_many" and too_many["retry_after"] > 0
    assert "2 replies generating" in too_many["message"]
    assert answered == 3
    assert event["code"] == "rate_limited" and event["retry_after"] > 0
    assert "6 messages this minute" in event["message"]


def children(pid):
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


async def test_several_workers_share_one_port_and_one_that_dies_is_replaced(
    cluster, upstream, session
):
    port = cluster.start("pair", "--workers", "2")
    serve, _ = cluster.workers["pair"]
    first = children(serve.pid)
    assert len(first) == 2, "serve --workers 2 runs two daphne processes"
    page = await asyncio.to_thread(urlopen, f"http://127.0.0.1:{port}/accounts/login/")
    with page:
        assert page.headers["Server"].startswith("daphne")

    os.kill(first[0], signal.SIGKILL)
    for _ in range(3):  # every connection is served, by the worker left or its replacement
        async with cluster.tab("pair", session) as tab:
            _, reply_id = await start_reply(tab, cluster, model="quick")
            done = await tab.until_done(reply_id)
            assert done["message"]["status"] == "complete"
    # Another process has no event to wait on: its replacement is looked for, for a while.
    deadline = time.monotonic() + 10
    while first[0] in (now := children(serve.pid)) or len(now) < 2:
        assert time.monotonic() < deadline, f"no replacement for {first[0]}: {now}"
        await asyncio.sleep(0.1)
    cluster.kill("pair", signal.SIGTERM)


@pytest.fixture
def agents(cluster, upstream, mcp_server):
    """Two registrations of the test MCP server, one that asks before each call, and
    models that call them."""
    upstream.script("agent-asks", agent(calls(("atlas__lookup_capital", {"country": "Kenya"})),
                                        reply(["Nairobi."])))  # fmt: skip
    upstream.script("agent-waits", agent(calls(("quick__slow", {"seconds": 10})),
                                         reply(["never"])))  # fmt: skip
    cluster.manage("connect_provider", "Default", upstream.url)
    cluster.manage("add_tool_server", "atlas", mcp_server, "--approval", "ask")
    cluster.manage("add_tool_server", "quick", mcp_server)
    return upstream


def role_event(kind, role):
    return lambda e: e["type"] == kind and e["message"]["role"] == role


async def test_a_call_planned_on_one_worker_is_approved_and_run_on_the_other(
    cluster, agents, session
):
    async with cluster.tab("a", session) as asker, cluster.tab("b", session) as other:
        await asker.send(**send(cluster, model="agent-asks"))
        waiting = (await asker.receive_until(role_event("message.created", "tool")))["message"]
        assert waiting["approval"] == "pending"
        await other.send(type="subscribe", conversation=waiting["conversation"])
        shown = await other.receive_until(lambda e: e["type"] == "message.snapshot")
        assert shown["message"]["id"] == waiting["id"]

        await other.send(type="approve", message=waiting["id"], allow=True, always=False)
        updated = await asker.receive_until(lambda e: e["type"] == "message.updated")
        result = await asker.until_done(waiting["id"])
        answer = await asker.receive_until(role_event("message.done", "assistant"))
        await other.receive_until(role_event("message.done", "assistant"))

    assert updated["message"]["approval"] == "approved"
    assert result["message"]["content"] == "Nairobi"
    assert answer["message"]["content"] == "Nairobi."


async def test_a_call_running_on_one_worker_is_stopped_from_the_other(cluster, agents, session):
    async with cluster.tab("a", session) as runner, cluster.tab("b", session) as other:
        await runner.send(**send(cluster, model="agent-waits"))
        running = (await runner.receive_until(role_event("message.created", "tool")))["message"]
        await other.send(type="subscribe", conversation=running["conversation"])
        await other.receive_until(lambda e: e["type"] == "message.snapshot")

        await other.send(type="stop", message=running["id"])
        stopped = await runner.until_done(running["id"], timeout=5)

    assert stopped["message"]["status"] == "cancelled"
    assert stored(cluster, running["id"])[0] == "cancelled"


def test_a_keys_limits_hold_across_workers(cluster, upstream):
    name = f"script-{uuid.uuid4().hex[:8]}"
    cluster.session_for(name)  # makes the user
    key = cluster.manage("create_api_key", name, "--name", "nightly").strip().splitlines()[-1]
    cluster.manage("shell", "-c", (
        "from conversations.models import ApiKey\n"
        f"ApiKey.objects.filter(user__username={name!r}).update(requests_per_minute=2)\n"
    ))  # fmt: skip
    # Requests are counted per clock minute: all three within one.
    if (left := 60 - time.time() % 60) < 20:
        time.sleep(left + 0.1)

    def ask(worker):
        _, port = cluster.workers[worker]
        return httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "quick", "messages": [{"role": "user", "content": "Hi"}]},
            timeout=20,
        )

    answers = [ask(worker) for worker in ("a", "b", "a")]

    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert answers[0].json()["choices"][0]["message"]["content"] == "ok"
    assert answers[2].json()["error"]["code"] == "rate_limit_exceeded"

"""The agent loop: a model calls the server's tools (a built-in one and those of a real MCP
server on loopback), their results go back to it, and it answers; every stage is a
message in the tree, shown to every tab as it happens."""

import asyncio
import json
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import Group
from django.utils import timezone

from conversations.models import (
    BuiltinTool,
    Conversation,
    LanguageModel,
    Message,
    SiteSettings,
    ToolServer,
    UsageRecord,
)
from conversations.tools import loop, mcp
from tests.fake_upstream import agent, calls, reply
from tests.helpers import send_event
from tests.mcp_server import TOKEN

pytestmark = pytest.mark.django_db(transaction=True)

STAGES = ("message.created", "message.updated", "message.done")
QUESTION = "What is 6 × 7, and what is the capital of Kenya?"
ANSWER = ["6 × 7 = 42; ", "the capital of Kenya is Nairobi."]
CALCULATE = ("calculator", {"expression": "6 * 7"})
LOOK_UP = ("atlas__lookup_capital", {"country": "Kenya"})


@pytest.fixture
def atlas(db, mcp_server):
    """The MCP server, registered with the team's token and its tools listed."""
    server = ToolServer(name="atlas", url=mcp_server)
    server.headers = {"Authorization": f"Bearer {TOKEN}"}
    server.save()
    assert mcp.refresh(server), server.error
    return server


@pytest.fixture
def calculator(db):
    BuiltinTool.load()
    BuiltinTool.objects.filter(name=BuiltinTool.Name.CALCULATOR).update(enabled=True)


@pytest.fixture
def agent_model(provider, fake_upstream):
    """A model whose replies follow a script of turns (see fake_upstream.agent)."""
    model = LanguageModel.objects.create(provider=provider, upstream_id="agent")

    def script(*turns):
        fake_upstream.script("agent", agent(*turns))
        return model

    return script


@pytest.fixture
async def tab(alice, sockets):
    return await sockets(alice)


async def ask(socket, model, text=QUESTION, conversation=None):
    await socket.send(**send_event(text, conversation=conversation, model=str(model.public_id)))


async def until_answer(socket, timeout=20):
    """Every event up to the end of the turn's answer: an assistant message that calls
    no tool."""
    events = []
    async with asyncio.timeout(timeout):
        while True:
            events.append(event := await socket.receive(timeout=timeout))
            if event["type"] == "message.done" and event["message"]["role"] == "assistant":
                if not event["message"]["tool_calls"]:
                    return events


async def until_done(socket, role, timeout=20):
    """Events up to the first `message.done` of a message of `role`; that message."""
    events = []
    async with asyncio.timeout(timeout):
        while True:
            events.append(event := await socket.receive(timeout=timeout))
            if event["type"] == "message.done" and event["message"]["role"] == role:
                return events, event["message"]


async def until_created(socket, role, timeout=20):
    async with asyncio.timeout(timeout):
        while True:
            event = await socket.receive(timeout=timeout)
            if event["type"] == "message.created" and event["message"]["role"] == role:
                return event["message"]


async def snapshot_of(socket, message_id, timeout=10):
    """The `message.snapshot` a subscribe sends of a message (others may come first)."""
    async with asyncio.timeout(timeout):
        while True:
            event = await socket.receive(timeout=timeout)
            if event["type"] == "message.snapshot" and event["message"]["id"] == message_id:
                return event


@database_sync_to_async
def the_turn(events):
    """The branch that ends at the last message the events tell of, from the question."""
    last = [e["message"]["id"] for e in events if isinstance(e.get("message"), dict)][-1]
    conversation = Message.objects.get(id=last).conversation
    return [m for m in conversation.branch() if m.role != Message.Role.SYSTEM]


def sent_messages(fake_upstream, index):
    return fake_upstream.requests[index]["body"]["messages"]


@database_sync_to_async
def site(**fields):
    SiteSettings.objects.update_or_create(pk=1, defaults=fields)


async def test_a_question_that_needs_the_calculator_and_an_mcp_tool(
    tab, agent_model, calculator, atlas, fake_upstream
):
    model = agent_model(calls(CALCULATE, LOOK_UP), reply(ANSWER))
    await ask(tab, model)
    events = await until_answer(tab)

    question, asked, calculated, looked_up, answer = await the_turn(events)
    assert [m.role for m in (question, asked, calculated, looked_up, answer)] == [
        "user", "assistant", "tool", "tool", "assistant",
    ]  # fmt: skip
    assert [c["function"]["name"] for c in asked.tool_calls] == [
        "calculator", "atlas__lookup_capital",
    ]  # fmt: skip
    assert (calculated.tool_name, calculated.content, calculated.tool_error) == (
        "calculator", "42", False,
    )  # fmt: skip
    assert calculated.tool_call_id == "call_0_calculator"
    assert (looked_up.tool_name, looked_up.content) == ("atlas__lookup_capital", "Nairobi")
    assert all(
        m.duration_ms is not None and m.status == "complete" for m in (calculated, looked_up)
    )
    assert answer.content == "".join(ANSWER)

    # The model's second call carries its calls and their results, as the API expects.
    assert sent_messages(fake_upstream, 1)[-3:] == [
        {"role": "assistant", "content": None, "tool_calls": asked.tool_calls},
        {"role": "tool", "tool_call_id": "call_0_calculator", "content": "42"},
        {"role": "tool", "tool_call_id": "call_1_atlas__lookup_capital", "content": "Nairobi"},
    ]
    # Both calls offered the server's tools, by the names the model calls them.
    offered = [t["function"]["name"] for t in fake_upstream.requests[0]["body"]["tools"]]
    assert offered == [
        "calculator", "atlas__lookup_capital", "atlas__slow", "atlas__rendezvous",
        "atlas__explode", "atlas__whoami",
    ]  # fmt: skip

    # Every stage reached the tab as it happened: the calls streaming, each tool message
    # created running, then done, then the answer.
    kinds = [(e["type"], e["message"]["role"]) for e in events if e["type"] in STAGES]
    assert kinds.count(("message.created", "tool")) == 2
    assert kinds.count(("message.done", "tool")) == 2
    created = [e["message"] for e in events if e["type"] == "message.created"]
    assert {m["status"] for m in created if m["role"] == "tool"} == {"streaming"}
    assert any(e["type"] == "message.delta" and e.get("tool_calls") for e in events)

    # One ledger row per model call; the turn's usage is their sum, under the answer.
    rows = await database_sync_to_async(list)(UsageRecord.objects.order_by("created"))
    assert [r.message_id for r in rows] == [asked.id, answer.id]
    done = events[-1]["message"]
    assert "This turn: 2 model calls, 36 tokens" in done["html"]


async def test_an_mcp_server_gets_its_headers(tab, agent_model, atlas, fake_upstream):
    model = agent_model(calls(("atlas__whoami", {})), reply(["done"]))
    await ask(tab, model)
    _, _, whoami, _ = await the_turn(await until_answer(tab))
    assert whoami.content == "the team"


async def test_calls_of_one_step_run_side_by_side(tab, agent_model, atlas):
    meet = ("atlas__rendezvous", {"key": "step-1"})
    model = agent_model(calls(meet, meet), reply(["both met"]))
    await ask(tab, model)
    _, _, first, second, _ = await the_turn(await until_answer(tab))
    assert (first.content, second.content) == ("met", "met")


@pytest.mark.parametrize(
    ("call", "told"),
    [
        (
            ("weather", {"city": "Paris"}),
            "There is no tool named 'weather'. The tools are: calculator, atlas__lookup_capital",
        ),
        (("calculator", '{"expression": "6 *'), "The arguments are not valid JSON"),
        (("calculator", "[1, 2]"), "The arguments must be a JSON object."),
        (("calculator", {"expression": "__import__('os')"}), "Cannot evaluate"),
        (("atlas__explode", {}), "Error executing tool explode: the atlas caught fire"),
    ],
    ids=["unknown tool", "bad JSON", "not an object", "unsafe expression", "tool raises"],
)
async def test_a_failed_call_is_told_to_the_model_in_words(
    tab, agent_model, calculator, atlas, fake_upstream, call, told
):
    model = agent_model(calls(call), reply(["Sorry."]))
    await ask(tab, model)
    _, _, result, answer = await the_turn(await until_answer(tab))
    assert result.tool_error
    assert told in result.content
    assert sent_messages(fake_upstream, 1)[-1]["content"] == result.content
    assert answer.content == "Sorry."


async def test_a_call_that_takes_too_long_is_ended(tab, agent_model, atlas):
    await site(tool_timeout_s=1)
    model = agent_model(calls(("atlas__slow", {"seconds": 10})), reply(["Too slow."]))
    await ask(tab, model)
    _, _, result, _ = await the_turn(await until_answer(tab))
    assert (result.tool_error, result.content) == (True, "The tool did not answer within 1 s.")


async def test_a_server_that_is_down_is_told_without_its_headers(
    tab, agent_model, atlas, fake_upstream
):
    await database_sync_to_async(
        ToolServer.objects.filter(id=atlas.id).update
    )(url="http://127.0.0.1:9/mcp")  # fmt: skip
    model = agent_model(calls(LOOK_UP), reply(["It is down."]))
    await ask(tab, model)
    _, _, result, _ = await the_turn(await until_answer(tab))
    assert result.tool_error
    assert result.content.startswith("The tool server atlas is unavailable:")
    assert TOKEN not in json.dumps(fake_upstream.requests[1]["body"])


async def test_a_long_result_is_cut_with_a_note(tab, agent_model, calculator):
    await site(tool_output_chars=50)
    model = agent_model(calls(("calculator", {"expression": "7 ** 200"})), reply(["Big."]))
    await ask(tab, model)
    _, _, result, _ = await the_turn(await until_answer(tab))
    assert result.content == f"{str(7**200)[:50]}\n\n[Cut at 50 of {len(str(7**200))} characters.]"


async def test_the_step_limit_makes_the_model_answer_without_tools(
    tab, agent_model, calculator, fake_upstream
):
    await site(tool_steps=3)

    def answer_or_call(body):
        if "tools" in body:
            return calls(CALCULATE)
        return reply(["Enough: 42."])

    model = agent_model(answer_or_call)
    await ask(tab, model)
    turn = await the_turn(await until_answer(tab, timeout=30))
    assert [m.role for m in turn] == ["user", *["assistant", "tool"] * 3, "assistant"]
    assert ["tools" in r["body"] for r in fake_upstream.requests] == [True, True, True, False]
    assert turn[-1].content == "Enough: 42."


async def test_calls_past_the_step_limit_are_not_run(tab, agent_model, calculator, fake_upstream):
    await site(tool_steps=1)
    model = agent_model(calls(CALCULATE))  # it calls, offered tools or not
    await ask(tab, model)
    await until_done(tab, "assistant")
    _, second = await until_done(tab, "assistant")
    await asyncio.sleep(0.3)
    assert second["tool_calls"]  # shown, but not run: nothing follows
    assert ["tools" in r["body"] for r in fake_upstream.requests] == [True, False]
    turn = await the_turn([{"message": second}])
    assert [m.role for m in turn] == ["user", "assistant", "tool", "assistant"]


async def test_several_choices_are_offered_no_tools_of_the_server(
    tab, agent_model, calculator, fake_upstream
):
    model = agent_model(reply(["One or the other."]))
    await tab.send(**send_event("Two, please.", model=str(model.public_id), params={"n": 2}))
    await until_answer(tab)
    assert "tools" not in fake_upstream.requests[0]["body"]


async def test_later_turns_send_the_calls_and_results_to_the_model(
    tab, agent_model, calculator, fake_upstream
):
    model = agent_model(calls(CALCULATE), reply(["42."]))
    await ask(tab, model)
    first = await the_turn(await until_answer(tab))
    conversation = str(first[0].conversation_id)
    await ask(tab, model, "And doubled?", conversation=conversation)
    await until_answer(tab)
    assert [m["role"] for m in sent_messages(fake_upstream, 2)] == [
        "user", "assistant", "tool", "assistant", "user",
    ]  # fmt: skip


async def test_tools_switched_off_in_a_conversation_are_not_offered(
    tab, agent_model, calculator, atlas, fake_upstream
):
    model = agent_model(reply(["Hello."]))
    await ask(tab, model)
    first = await the_turn(await until_answer(tab))
    conversation = first[0].conversation_id
    await database_sync_to_async(Conversation.objects.filter(id=conversation).update)(
        tools_switched_off=["atlas__slow", "atlas__explode"]
    )
    await ask(tab, model, "Again.", conversation=str(conversation))
    await until_answer(tab)
    offered = [t["function"]["name"] for t in fake_upstream.requests[1]["body"]["tools"]]
    assert "atlas__slow" not in offered and "atlas__explode" not in offered
    assert "calculator" in offered

    await database_sync_to_async(Conversation.objects.filter(id=conversation).update)(
        tools_off=True
    )
    await ask(tab, model, "Once more.", conversation=str(conversation))
    await until_answer(tab)
    assert "tools" not in fake_upstream.requests[2]["body"]


async def test_a_server_limited_to_a_group_serves_only_its_members(
    alice, bob, sockets, agent_model, atlas, fake_upstream
):
    @database_sync_to_async
    def limit_to_alice():
        team = Group.objects.create(name="research")
        alice.groups.add(team)
        atlas.groups.add(team)

    await limit_to_alice()
    model = agent_model(reply(["Hello."]))
    for user in (alice, bob):
        socket = await sockets(user)
        await ask(socket, model)
        await until_answer(socket)
    alices, bobs = (r["body"] for r in fake_upstream.requests)
    assert "atlas__lookup_capital" in [t["function"]["name"] for t in alices["tools"]]
    assert "tools" not in bobs


async def test_a_model_that_takes_no_tools_is_offered_none(
    tab, agent_model, calculator, fake_upstream
):
    model = agent_model(reply(["Hello."]))
    await database_sync_to_async(LanguageModel.objects.filter(id=model.id).update)(
        supports_tools=False
    )
    await ask(tab, model)
    await until_answer(tab)
    assert "tools" not in fake_upstream.requests[0]["body"]


def test_a_fresh_site_allows_10_steps_30_s_a_call_and_20000_characters_a_result(db):
    site = SiteSettings.load()
    assert (site.tool_steps, site.tool_timeout_s, site.tool_output_chars) == (10, 30, 20_000)


# Approvals


async def test_a_tool_whose_approval_is_off_is_not_offered_and_never_runs(
    tab, agent_model, atlas, fake_upstream
):
    @database_sync_to_async
    def switch_some_off():
        BuiltinTool.load()
        BuiltinTool.objects.filter(name=BuiltinTool.Name.CALCULATOR).update(
            enabled=True, approval="off"
        )
        BuiltinTool.objects.filter(name=BuiltinTool.Name.CLOCK).update(
            enabled=True, approval="auto"
        )
        ToolServer.objects.filter(id=atlas.id).update(tool_approvals={"explode": "off"})

    await switch_some_off()
    model = agent_model(calls(CALCULATE), reply(["I cannot calculate here."]))
    await ask(tab, model)
    _, _, result, _ = await the_turn(await until_answer(tab))
    offered = [t["function"]["name"] for t in fake_upstream.requests[0]["body"]["tools"]]
    assert offered == [
        "current_time", "atlas__lookup_capital", "atlas__slow", "atlas__rendezvous",
        "atlas__whoami",
    ]  # fmt: skip
    # Called all the same, it does not run: the model hears it is not there.
    assert result.tool_error
    assert result.content.startswith("There is no tool named 'calculator'.")


@pytest.fixture
def ask_first(db):
    """The calculator, enabled, asks before it runs."""
    BuiltinTool.load()
    BuiltinTool.objects.filter(name=BuiltinTool.Name.CALCULATOR).update(
        enabled=True, approval="ask"
    )


async def test_a_call_waits_for_approval_in_every_tab_then_runs(
    alice, sockets, agent_model, ask_first, fake_upstream
):
    first_tab, second_tab = await sockets(alice), await sockets(alice)
    model = agent_model(calls(CALCULATE), reply(["42."]))
    await ask(first_tab, model)
    waiting = await until_created(first_tab, "tool")
    assert (waiting["approval"], waiting["status"]) == ("pending", "streaming")
    await second_tab.send(type="subscribe", conversation=waiting["conversation"], streaming=[])
    snapshot = await snapshot_of(second_tab, waiting["id"])
    assert snapshot["message"]["approval"] == "pending"
    assert len(fake_upstream.requests) == 1  # nothing runs while it waits

    await second_tab.send(type="approve", message=waiting["id"], allow=True, always=False)
    for socket in (first_tab, second_tab):
        updated = await socket.receive_until("message.updated")
        assert updated[-1]["message"]["approval"] == "approved"
    await until_answer(first_tab)
    _, _, result, _ = await the_turn([{"message": waiting}])
    assert (result.content, result.approval) == ("42", "approved")


async def test_a_denied_call_does_not_run_and_the_model_hears_why(
    tab, agent_model, ask_first, fake_upstream
):
    model = agent_model(calls(CALCULATE), reply(["As you wish."]))
    await ask(tab, model)
    waiting = await until_created(tab, "tool")
    await tab.send(type="approve", message=waiting["id"], allow=False, always=False)
    events = await until_answer(tab)
    _, _, result, answer = await the_turn(events)
    assert (result.approval, result.tool_error) == ("denied", True)
    assert result.content == "The user denied this call: it did not run."
    assert sent_messages(fake_upstream, 1)[-1]["content"] == result.content
    assert answer.content == "As you wish."


async def test_always_allow_in_a_conversation_stops_asking_there(
    tab, agent_model, ask_first, fake_upstream
):
    model = agent_model(calls(CALCULATE), reply(["42."]))
    await ask(tab, model)
    waiting = await until_created(tab, "tool")
    await tab.send(type="approve", message=waiting["id"], allow=True, always=True)
    await until_answer(tab)
    await ask(tab, model, "Again?", conversation=waiting["conversation"])
    again = await until_created(tab, "tool")
    assert again["approval"] == "auto"
    await until_answer(tab)


async def test_an_unanswered_call_expires_as_denied(tab, agent_model, ask_first, fake_upstream):
    model = agent_model(calls(CALCULATE), reply(["Nobody answered."]))
    await ask(tab, model)
    waiting = await until_created(tab, "tool")
    await database_sync_to_async(Message.objects.filter(id=waiting["id"]).update)(
        created=timezone.now() - loop.APPROVAL_EXPIRES - timedelta(seconds=1)
    )
    await loop.expire()  # what the reaper does every while
    events = await until_answer(tab)
    _, _, result, answer = await the_turn(events)
    assert (result.approval, result.tool_error) == ("expired", True)
    assert answer.content == "Nobody answered."


async def test_a_call_waiting_for_approval_survives_a_restart(
    alice, sockets, agent_model, ask_first, fake_upstream
):
    """What waits is stored, not held: a tab opened after the worker that planned the
    call is gone approves it, and the turn carries on."""
    first = await sockets(alice)
    model = agent_model(calls(CALCULATE), reply(["42."]))
    await ask(first, model)
    waiting = await until_created(first, "tool")
    await first.close()
    loop.running.clear()
    after_restart = await sockets(alice)
    await after_restart.send(type="subscribe", conversation=waiting["conversation"], streaming=[])
    await snapshot_of(after_restart, waiting["id"])
    await after_restart.send(type="approve", message=waiting["id"], allow=True, always=False)
    events = await until_answer(after_restart)
    assert (await the_turn(events))[-1].content == "42."


async def test_an_answer_to_a_call_that_waits_no_more_is_refused(
    tab, agent_model, ask_first, bob, sockets
):
    model = agent_model(calls(CALCULATE), reply(["Nobody answered."]))
    await ask(tab, model)
    waiting = await until_created(tab, "tool")
    bobs = await sockets(bob)
    await bobs.send(type="approve", message=waiting["id"], allow=True, always=False)
    assert (await bobs.receive())["code"] == "not_found"
    await tab.send(type="approve", message=waiting["id"], allow=False, always=False)
    await until_answer(tab)
    await tab.send(type="approve", message=waiting["id"], allow=True, always=False)
    refused = await tab.receive()
    assert (refused["type"], refused["code"]) == ("error", "not_found")


# Stop


async def test_stop_ends_a_running_call_and_the_turn(tab, agent_model, atlas, fake_upstream):
    model = agent_model(calls(("atlas__slow", {"seconds": 10})), reply(["never"]))
    await ask(tab, model)
    running = await until_created(tab, "tool")
    await tab.send(type="stop", message=running["id"])
    _, stopped = await until_done(tab, "tool")
    assert (stopped["status"], stopped["content"]) == ("cancelled", "Stopped before it finished.")
    await asyncio.sleep(0.3)
    assert len(fake_upstream.requests) == 1  # the model is not called again
    assert not loop.running


async def test_stop_ends_a_call_waiting_for_approval(tab, agent_model, ask_first, fake_upstream):
    model = agent_model(calls(CALCULATE), reply(["never"]))
    await ask(tab, model)
    waiting = await until_created(tab, "tool")
    await tab.send(type="stop", message=waiting["id"])
    _, stopped = await until_done(tab, "tool")
    assert stopped["status"] == "cancelled"
    assert stopped["content"] == "Stopped before it was approved: it did not run."
    await asyncio.sleep(0.3)
    assert len(fake_upstream.requests) == 1


async def test_stop_during_the_next_model_call(tab, agent_model, calculator, fake_upstream):
    model = agent_model(calls(CALCULATE), reply([f"w{i} " for i in range(100)], delay=0.05))
    await ask(tab, model)
    await until_done(tab, "tool")
    answer = await until_created(tab, "assistant")
    await tab.receive_until("message.delta")
    await tab.send(type="stop", message=answer["id"])
    _, stopped = await until_done(tab, "assistant")
    assert stopped["status"] == "cancelled"


# Reload mid-loop


async def test_a_tab_opened_mid_loop_sees_each_finished_stage_and_joins_the_running_one(
    alice, sockets, agent_model, calculator, atlas, client
):
    model = agent_model(calls(CALCULATE), calls(("atlas__slow", {"seconds": 1})), reply(["Done."]))
    first = await sockets(alice)
    await ask(first, model)
    await until_done(first, "tool")  # the calculator's step is over
    running = await until_created(first, "tool")  # the slow call runs

    await database_sync_to_async(client.force_login)(alice)
    page = await database_sync_to_async(client.get)(f"/c/{running['conversation']}/")
    html = page.content.decode()
    assert 'data-role="tool"' in html and "calculator" in html and "42" in html
    assert "atlas__slow" in html

    reloaded = await sockets(alice)
    await reloaded.send(type="subscribe", conversation=running["conversation"], streaming=[])
    snapshot = await snapshot_of(reloaded, running["id"])
    assert snapshot["message"]["status"] == "streaming"
    _, result = await until_done(reloaded, "tool")
    assert result["content"] == "Waited 1.0 s."
    events = await until_answer(reloaded)
    assert events[-1]["message"]["content"] == "Done."


async def test_a_call_whose_worker_died_is_interrupted_and_the_turn_ends(
    tab, agent_model, atlas, settings
):
    from conversations.generation.reaper import reap

    model = agent_model(calls(("atlas__slow", {"seconds": 3})), reply(["never"]))
    await ask(tab, model)
    running = await until_created(tab, "tool")
    loop.running.pop(running["id"]).cancel()  # as if its process were gone
    await database_sync_to_async(Message.objects.filter(id=running["id"]).update)(
        checkpointed=timezone.now() - timedelta(minutes=5)
    )
    await reap(running["conversation"])
    _, ended = await until_done(tab, "tool")
    assert ended["status"] in ("interrupted", "cancelled")


class ToolResults(HTMLParser):
    """The tool messages of a page: each one's id → whether its result's <details> is
    open."""

    def __init__(self, html):
        super().__init__()
        self.open, self.tool = {}, None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "article":
            self.tool = attrs.get("data-id") if attrs.get("data-role") == "tool" else None
        elif tag == "details" and "tool-result" in attrs.get("class", "").split():
            self.open[self.tool] = "open" in attrs


async def test_a_long_result_is_shown_folded_and_a_short_one_open(
    tab, agent_model, calculator, alice, client
):
    long = ("calculator", {"expression": "7 ** 1000"})  # 846 digits
    model = agent_model(calls(CALCULATE, long), reply(["42, and a big one."]))
    await ask(tab, model)
    _, _, short_result, long_result, _ = await the_turn(await until_answer(tab))
    assert (len(short_result.content), len(long_result.content)) == (2, 846)

    await database_sync_to_async(client.force_login)(alice)
    page = await database_sync_to_async(client.get)(f"/c/{short_result.conversation_id}/")
    html = page.content.decode()
    assert ToolResults(html).open == {str(short_result.id): True, str(long_result.id): False}
    assert "Result (846 characters)" in html


# Quotas, the ledger and the inspector


async def test_a_quota_spent_mid_loop_ends_the_turn_with_a_clear_reply(
    tab, agent_model, calculator, fake_upstream, alice
):
    from conversations.models import Quota

    await database_sync_to_async(Quota.objects.create)(
        user=alice, period=Quota.Period.DAY, max_tokens=50_000
    )
    # The first call fits in the quota, but spends all of it.
    model = agent_model(calls(CALCULATE, usage=(11, 60_000)), reply(["never"]))
    await ask(tab, model)
    await until_done(tab, "tool")
    _, refused = await until_done(tab, "assistant")
    assert refused["status"] == "failed"
    assert "quota" in refused["error"].lower()
    assert len(fake_upstream.requests) == 1


async def test_the_inspector_shows_each_steps_request(tab, agent_model, calculator, alice, client):
    model = agent_model(calls(CALCULATE), reply(["42."]))
    await ask(tab, model)
    _, asked, _, answer = await the_turn(await until_answer(tab))
    await database_sync_to_async(client.force_login)(alice)
    for message, last_role in ((asked, "user"), (answer, "tool")):
        shown = await database_sync_to_async(client.get)(f"/m/{message.id}/request.json")
        assert shown.status_code == 200
        assert shown.json()["request"]["messages"][-1]["role"] == last_role


async def test_exports_list_every_stage(tab, agent_model, calculator, alice, client):
    model = agent_model(calls(CALCULATE), reply(["42."]))
    await ask(tab, model)
    turn = await the_turn(await until_answer(tab))
    conversation = turn[0].conversation_id
    await database_sync_to_async(client.force_login)(alice)
    exported = (await database_sync_to_async(client.get)(f"/c/{conversation}/export.json")).json()
    tool = next(m for m in exported["messages"] if m["role"] == "tool")
    assert (tool["name"], tool["tool_call_id"], tool["content"]) == (
        "calculator", "call_0_calculator", "42",
    )  # fmt: skip
    markdown = (await database_sync_to_async(client.get)(f"/c/{conversation}/export.md")).content
    text = markdown.decode()
    assert "## Tool: calculator" in text and '"expression": "6 * 7"' in text


# A user's choice of tools in a conversation


def test_a_user_chooses_the_tools_of_a_conversation(client, alice, calculator, atlas):
    conversation = Conversation.objects.create(owner=alice, title="Tools")
    conversation.tools_always_allowed = ["calculator"]
    conversation.save()
    client.force_login(alice)
    page = client.get(f"/c/{conversation.id}/settings/").content.decode()
    assert 'value="calculator" id="id_tools_0" checked' in page and "lookup_capital (atlas)" in page
    assert "Ask again before running calculator" in page

    tools = f"/c/{conversation.id}/settings/tools/"
    client.post(tools, {"use_tools": "on", "tools": ["calculator", "atlas__lookup_capital"],
                        "ask_again": "on"})  # fmt: skip
    conversation.refresh_from_db()
    assert not conversation.tools_off
    assert conversation.tools_switched_off == [
        "atlas__slow", "atlas__rendezvous", "atlas__explode", "atlas__whoami",
    ]  # fmt: skip
    assert conversation.tools_always_allowed == []

    client.post(tools, {"tools": ["calculator"]})
    conversation.refresh_from_db()
    assert conversation.tools_off

    refused = client.post(tools, {"use_tools": "on", "tools": ["rm_rf"]})
    assert refused.status_code == 400
    assert "Select a valid choice. rm_rf is not one of the available choices." in (
        refused.content.decode()
    )


def test_the_tools_of_someone_elses_conversation_are_not_found(client, alice, bob, calculator):
    conversation = Conversation.objects.create(owner=alice, title="Mine")
    client.force_login(bob)
    response = client.post(f"/c/{conversation.id}/settings/tools/", {"tools": []})
    assert response.status_code == 404
    conversation.refresh_from_db()
    assert not conversation.tools_off


async def test_a_first_turn_of_tool_steps_names_the_conversation(
    tab, agent_model, calculator, fake_upstream, settings
):
    settings.CONFAB_AUTO_TITLE = True

    def call_or_name(body):
        return calls(CALCULATE) if "tools" in body else reply(["Six times seven"])

    model = agent_model(call_or_name, reply(["42."]))
    await ask(tab, model, "What is 6 × 7?")
    await until_answer(tab)
    async with asyncio.timeout(10):
        while True:
            event = await tab.receive()
            if event["type"] == "conversation.updated":
                if event["conversation"]["title"] == "Six times seven":
                    break
    title_request = fake_upstream.requests[-1]["body"]["messages"][0]["content"]
    assert "What is 6 × 7?" in title_request and "42." in title_request


async def test_a_stage_speaks_the_language_of_the_page(
    alice, sockets, agent_model, ask_first, fake_upstream
):
    chinese = await sockets(alice, headers=[(b"accept-language", b"zh-CN,zh;q=0.9")])
    model = agent_model(calls(CALCULATE), reply(["42."]))
    await ask(chinese, model)
    waiting = await until_created(chinese, "tool")
    assert "等待你的批准" in waiting["html"] and "在此对话中始终允许" in waiting["html"]
    await chinese.send(type="approve", message=waiting["id"], allow=False, always=False)
    await until_answer(chinese)


async def test_a_step_whose_process_ended_before_the_next_call_is_carried_on(
    tab, agent_model, calculator, fake_upstream, monkeypatch, settings
):
    carried_on = loop.carry_on
    ended = asyncio.Event()

    async def process_gone(*args):
        ended.set()

    monkeypatch.setattr(loop, "carry_on", process_gone)
    model = agent_model(calls(CALCULATE), reply(["42."]))
    await ask(tab, model)
    _, result = await until_done(tab, "tool")
    await asyncio.wait_for(ended.wait(), 5)
    monkeypatch.setattr(loop, "carry_on", carried_on)

    settings.CONFAB_STALE_AFTER_S = 0  # the results came in long enough ago
    await loop.expire()  # what the reaper does every while
    events = await until_answer(tab)
    answer = events[-1]["message"]
    assert answer["content"] == "42." and answer["parent"] == result["id"]

    # An answer the user deleted is not made again.
    await database_sync_to_async(Message.objects.filter(id=answer["id"]).delete)()
    await loop.expire()
    assert len(fake_upstream.requests) == 2


async def test_a_tool_switched_off_while_its_call_waited_is_not_run(
    tab, agent_model, ask_first, fake_upstream
):
    model = agent_model(calls(CALCULATE), reply(["Fine."]))
    await ask(tab, model)
    waiting = await until_created(tab, "tool")
    await database_sync_to_async(BuiltinTool.objects.filter(name="calculator").update)(
        enabled=False
    )
    await tab.send(type="approve", message=waiting["id"], allow=True, always=False)
    _, result = await until_done(tab, "tool")
    assert (result["content"], result["tool_error"]) == ("The tool is no longer available.", True)
    await until_answer(tab)


async def test_a_model_removed_mid_turn_ends_it_with_a_reply_that_says_so(
    tab, agent_model, ask_first, fake_upstream
):
    model = agent_model(calls(CALCULATE), reply(["never"]))
    await ask(tab, model)
    waiting = await until_created(tab, "tool")
    await database_sync_to_async(LanguageModel.objects.filter(id=model.id).update)(enabled=False)
    await tab.send(type="approve", message=waiting["id"], allow=True, always=False)
    await until_done(tab, "tool")
    _, refused = await until_done(tab, "assistant")
    assert (refused["status"], refused["error"]) == (
        "failed", "The model of this turn is no longer available.",
    )  # fmt: skip
    assert len(fake_upstream.requests) == 1


async def test_a_tools_result_is_shown_as_text_never_as_html(tab, agent_model, atlas):
    hostile = "<img src=x onerror=alert(1)><script>alert(2)</script>"
    model = agent_model(calls(("atlas__lookup_capital", {"country": hostile})), reply(["Hm."]))
    await ask(tab, model)
    _, result = await until_done(tab, "tool")
    assert result["content"] == f"No capital known for {hostile}."
    assert "<script>" not in result["html"] and "<img" not in result["html"]
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in result["html"]
    await until_answer(tab)

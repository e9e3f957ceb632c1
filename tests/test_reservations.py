"""Money: a request reserves what it may cost at most (its prompt and its maximum output)
before the provider is called, so no quota is ever exceeded, however many sends at once;
the reservation settles to what the request really cost, at every ending."""

import json
import threading
import uuid
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.test import Client

from conversations.generation.admission import EventError
from conversations.generation.sending import prepare_send
from conversations.models import Conversation, Message, Quota, UsageRecord
from tests.fake_upstream import reply
from tests.helpers import SLOW_PARTS, add_model, send_event

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def roomy(settings):
    """Limits of their own out of the way: only quotas decide."""
    settings.CONFAB_USER_MAX_CONCURRENT = 50
    settings.CONFAB_USER_SENDS_PER_MINUTE = 500


def send_at_once(user, model, count):
    """`count` sends by `user` at the same moment, each in a thread (and database
    connection) of its own, as sends from several tabs and processes arrive; each one's
    outcome: its replies, or the code it was refused with."""
    start, outcomes = threading.Barrier(count), [None] * count

    def one(i):
        data = {"client_id": uuid.uuid4(), "conversation": None, "content": "hello there",
                "parent": None, "model": model, "params": {}}  # fmt: skip
        start.wait()
        try:
            outcomes[i] = prepare_send(user, data).replies
        except EventError as refusal:
            outcomes[i] = refusal.code
        finally:
            connection.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


def reservation_tokens(model):
    """What one send of "hello there" reserves: its prompt estimate and its output bound."""
    return 4 + 3 + model.max_output_tokens


def test_concurrent_sends_start_exactly_what_a_token_quota_fits(alice, model, roomy):
    model.max_output_tokens = 100
    model.save()
    Quota.objects.create(user=alice, max_tokens=3 * reservation_tokens(model) + 50)

    outcomes = send_at_once(alice, model, 10)

    started = [o for o in outcomes if isinstance(o, list)]
    assert len(started) == 3
    assert sorted(o for o in outcomes if isinstance(o, str)) == ["quota_exceeded"] * 7
    reserved = UsageRecord.objects.filter(user=alice, status="streaming")
    assert sum(row.total_tokens for row in reserved) == 3 * reservation_tokens(model)


def test_concurrent_sends_never_spend_past_a_money_quota(alice, model, roomy):
    model.max_output_tokens = 1000
    model.save()
    # Each send may cost (7 × 2 + 1000 × 8) / 1,000,000 = USD 0.008014: two fit in 0.02.
    Quota.objects.create(user=alice, period="day", max_cost=Decimal("0.02"))

    outcomes = send_at_once(alice, model, 10)

    assert len([o for o in outcomes if isinstance(o, list)]) == 2
    reserved = UsageRecord.objects.filter(user=alice)
    assert sum(row.cost for row in reserved) == 2 * Decimal("0.008014")


async def test_a_reservation_settles_to_what_the_reply_cost(alice, model, sockets, fake_upstream):
    fake_upstream.script("fake-model", reply(SLOW_PARTS, delay=0.02, usage=(11, 40)))
    socket = await sockets(alice)
    await socket.send(**send_event("hello there"))
    await socket.receive_until("message.delta")
    [reservation] = await database_sync_to_async(list)(UsageRecord.objects.all())
    done = (await socket.receive_until("message.done"))[-1]["message"]

    [row] = await database_sync_to_async(list)(UsageRecord.objects.all())
    assert (reservation.status, reservation.estimated) == ("streaming", True)
    assert reservation.completion_tokens == 4096  # the site's bound: nobody set one
    assert reservation.cost == Decimal(7 * 2 + 4096 * 8) / 1_000_000
    assert row.request_id == reservation.request_id
    assert (row.status, row.estimated, row.prompt_tokens, row.completion_tokens) == (
        "complete", False, 11, 40,
    )  # fmt: skip
    assert row.created == reservation.created  # it counts in the period it was asked in
    assert row.cost == Decimal(11 * 2 + 40 * 8) / 1_000_000 == Decimal(done["cost"])


async def test_a_stopped_reply_settles_its_reservation_to_an_estimate(
    alice, model, sockets, fake_upstream
):
    fake_upstream.script("fake-model", reply(SLOW_PARTS, delay=0.05))
    socket = await sockets(alice)
    await socket.send(**send_event())
    started = await socket.receive_until("message.delta")
    placeholder = [e for e in started if e["type"] == "message.created"][-1]["message"]

    await socket.send(type="stop", message=placeholder["id"])
    await socket.receive_until("message.done")

    [row] = await database_sync_to_async(list)(UsageRecord.objects.all())
    assert (row.status, row.estimated) == ("cancelled", True)
    assert 0 < row.completion_tokens < 4096


def test_every_request_is_sent_with_a_bound_and_the_inspector_shows_it(
    client, alice, model, fake_upstream, settings
):
    settings.CONFAB_DEFAULT_MAX_OUTPUT_TOKENS = 2000
    data = {"client_id": None, "conversation": None, "content": "hello", "parent": None,
            "model": model, "params": {}}  # fmt: skip
    [placeholder] = prepare_send(alice, data).replies
    client.force_login(alice)

    shown = client.get(f"/m/{placeholder.id}/request.json").json()["request"]

    assert shown["max_tokens"] == 2000
    assert UsageRecord.objects.get().completion_tokens == 2000


def test_a_model_that_takes_max_completion_tokens_is_bounded_by_it(alice, model):
    model.extra_body = {"max_completion_tokens": 900}
    model.max_output_tokens = 500
    model.save()
    data = {"client_id": None, "conversation": None, "content": "hello", "parent": None,
            "model": model, "params": {}}  # fmt: skip

    prepared = prepare_send(alice, data)

    assert prepared.body["max_completion_tokens"] == 500 and "max_tokens" not in prepared.body


async def test_a_title_is_reserved_like_any_request_and_skipped_without_room(
    alice, model, sockets, fake_upstream, settings
):
    """Titles are written on the user's behalf: they count against the user's quota, are
    reserved like any request, and are not written when the quota has no room for one."""
    settings.CONFAB_AUTO_TITLE = True
    model.max_output_tokens = 30
    await database_sync_to_async(model.save)()
    # Room for the reply's reservation (7 + 30) and its real cost (11 + 7), not for a title.
    await database_sync_to_async(Quota.objects.create)(user=alice, max_tokens=50)
    socket = await sockets(alice)

    await socket.send(**send_event("hello there"))
    done = (await socket.receive_until("message.done"))[-1]["message"]
    await socket.nothing_more()  # the runner has had its chance to ask for a title

    assert [r["body"]["messages"][-1]["content"] for r in fake_upstream.requests] == ["hello there"]
    rows = await database_sync_to_async(list)(UsageRecord.objects.values_list("status", flat=True))
    assert rows == ["complete"]
    conversation = await database_sync_to_async(Conversation.objects.get)(id=done["conversation"])
    assert conversation.title == "hello there"


async def test_a_long_history_drops_its_oldest_messages_to_fit_the_context_window(
    alice, model, sockets, fake_upstream
):
    model.context_window, model.max_output_tokens = 300, 100
    await database_sync_to_async(model.save)()
    conversation = await database_sync_to_async(_long_conversation)(alice, model, turns=30)
    socket = await sockets(alice)

    await socket.send(**send_event("and now?", conversation=str(conversation.id)))
    done = (await socket.receive_until("message.done"))[-1]["message"]

    sent = fake_upstream.requests[-1]["body"]["messages"]
    assert sent[0] == {"role": "system", "content": "Be brief."}
    assert sent[1]["role"] == "user" and sent[-1] == {"role": "user", "content": "and now?"}
    assert 3 < len(sent) < 61  # the oldest turns dropped, the latest kept
    assert sent[-3]["content"] == "question 29" and sent[-2]["content"] == "answer 29"
    shown = await database_sync_to_async(_request_shown)(alice, done["id"])
    assert shown["messages"] == sent


async def test_a_message_too_long_for_the_context_window_is_refused_before_any_request(
    alice, model, sockets, fake_upstream
):
    model.context_window, model.max_output_tokens = 300, 100
    await database_sync_to_async(model.save)()
    socket = await sockets(alice)

    await socket.send(**send_event("word " * 1000))
    refusal = await socket.receive()

    assert refusal["code"] == "too_long"
    assert "context window" in refusal["message"] and "300" in refusal["message"]
    assert fake_upstream.requests == []
    assert await database_sync_to_async(UsageRecord.objects.count)() == 0


def _long_conversation(user, model, turns):
    conversation = Conversation.objects.create(owner=user, model=model, system_prompt="Be brief.")
    parent = None
    for turn in range(turns):
        question = Message.objects.create(
            conversation=conversation, parent=parent, role="user", content=f"question {turn}"
        )
        parent = Message.objects.create(
            conversation=conversation, parent=question, role="assistant",
            content=f"answer {turn}",
        )  # fmt: skip
    return conversation


def _request_shown(user, message_id):
    client = Client()
    client.force_login(user)
    return json.loads(client.get(f"/m/{message_id}/request.json").content)["request"]


def test_a_reaped_request_settles_its_reservation(alice, model, settings):
    from conversations.generation.reaper import reap_stale

    data = {"client_id": None, "conversation": None, "content": "hello", "parent": None,
            "model": add_model(model.provider, "other"), "params": {}}  # fmt: skip
    [placeholder] = prepare_send(alice, data).replies
    settings.CONFAB_STALE_AFTER_S = 0

    reap_stale()

    [row] = UsageRecord.objects.all()
    assert (row.request_id, row.status) == (placeholder.request_id, "interrupted")
    assert row.completion_tokens == 0  # the reservation settled to what was said: nothing

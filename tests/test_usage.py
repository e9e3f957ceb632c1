"""Prices, quotas and the usage ledger, as an administrator and a user see them."""

import csv
import io
import logging
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import Group
from django.db.models import Sum
from django.urls import reverse
from django.utils import timezone

from conversations import quotas
from conversations.generation.reaper import reap_stale
from conversations.models import LanguageModel, Message, Quota, UsageRecord
from tests.fake_upstream import CLOSE, chunk, http_error, reply, sse, stream_headers
from tests.helpers import API_KEY, send_event

SLOW = [f"tick{i} " for i in range(40)]


def record(user, model_name="fake-model", tokens=(10, 5), cost="0.01", days_ago=0, **fields):
    prompt, completion = tokens
    return UsageRecord.objects.create(
        request_id=uuid.uuid4(),
        user=user,
        model_name=model_name,
        status=fields.pop("status", "complete"),
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        cost=Decimal(cost),
        created=timezone.now() - timedelta(days=days_ago),
        **fields,
    )


async def reply_of(socket, **event):
    await socket.send(**send_event(**event))
    return (await socket.receive_until("message.done"))[-1]["message"]


@pytest.mark.django_db(transaction=True)
async def test_a_reply_costs_what_the_price_in_effect_said(alice, model, sockets, fake_upstream):
    socket = await sockets(alice)
    first = await reply_of(socket)  # 11 prompt + 7 completion tokens at 2 / 8 per million

    await database_sync_to_async(model.prices.create)(
        effective_from=timezone.now(), input="20.00", output="80.00"
    )
    await database_sync_to_async(model.prices.create)(
        effective_from=timezone.now() + timedelta(days=1), input="999", output="999"
    )
    second = await reply_of(socket)

    assert Decimal(first["cost"]) == Decimal(11 * 2 + 7 * 8) / 1_000_000
    assert Decimal(second["cost"]) == Decimal(11 * 20 + 7 * 80) / 1_000_000
    saved = await database_sync_to_async(Message.objects.get)(id=first["id"])
    assert saved.cost == Decimal(first["cost"])  # a later price never rewrites the past


@pytest.mark.django_db(transaction=True)
async def test_a_provider_reported_cost_is_kept_and_preferred(alice, model, sockets, fake_upstream):
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5, "cost": 0.0042}
    fake_upstream.script(
        "fake-model",
        [stream_headers(), sse(chunk({"content": "Hi"}, finish_reason="stop")),
         sse(chunk(choices=False, usage=usage)), sse("[DONE]")],
    )  # fmt: skip
    socket = await sockets(alice)

    done = await reply_of(socket)

    [ledger] = await database_sync_to_async(list)(UsageRecord.objects.all())
    assert ledger.provider_cost == ledger.cost == Decimal("0.0042")
    assert Decimal(done["cost"]) == Decimal("0.0042")


@pytest.mark.django_db(transaction=True)
async def test_over_quota_nothing_is_sent_upstream(alice, model, sockets, fake_upstream):
    await database_sync_to_async(Quota.objects.create)(
        user=alice, period=Quota.Period.MONTH, max_tokens=300
    )
    await database_sync_to_async(record)(alice, tokens=(200, 90))
    socket = await sockets(alice)

    await socket.send(**send_event("one more?"))
    refusal = await socket.receive()

    assert refusal["type"] == "error" and refusal["code"] == "quota_exceeded"
    assert "You have used 290 of your 300 tokens this month" in refusal["message"]
    assert (refusal["used"], refusal["limit"]) == ("290", "300")
    reset = timezone.localtime(timezone.now()).replace(day=1) + timedelta(days=32)
    assert refusal["resets_at"].startswith(reset.replace(day=1).strftime("%Y-%m-01"))
    assert fake_upstream.requests == []
    assert await database_sync_to_async(Message.objects.count)() == 0


@pytest.mark.django_db(transaction=True)
async def test_a_money_quota_counts_in_its_currency(alice, model, sockets, fake_upstream):
    await database_sync_to_async(Quota.objects.create)(
        user=alice, period=Quota.Period.DAY, max_cost=Decimal("0.05")
    )
    await database_sync_to_async(record)(alice, cost="0.05")
    socket = await sockets(alice)

    await socket.send(**send_event())
    refusal = await socket.receive()

    assert refusal["code"] == "quota_exceeded"
    assert "USD 0.05 of your USD 0.05 this day" in refusal["message"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("steps", "status"),
    [
        (reply(["All of it."], usage=(6, 3)), "complete"),
        (http_error(500, "boom"), "failed"),
        ([stream_headers(), sse(chunk({"content": "Half"})), CLOSE], "interrupted"),
        (reply(SLOW, delay=0.05, usage=None), "cancelled"),
    ],
)
async def test_every_ending_settles_in_the_ledger_and_counts_against_the_quota(
    alice, model, sockets, fake_upstream, steps, status
):
    quota = await database_sync_to_async(Quota.objects.create)(user=alice, max_tokens=100_000)
    fake_upstream.script("fake-model", steps)
    socket = await sockets(alice)
    await socket.send(**send_event())
    events = await socket.receive_until("message.created")
    events += await socket.receive_until("message.created")
    if status == "cancelled":
        await socket.receive_until("message.delta")
        await socket.send(type="stop", message=events[-1]["message"]["id"])
    done = (await socket.receive_until("message.done"))[-1]["message"]

    [row] = await database_sync_to_async(list)(UsageRecord.objects.filter(user=alice))
    assert done["status"] == row.status == status
    assert row.total_tokens == done["usage"]["total_tokens"] > 0
    [standing] = await database_sync_to_async(quotas.standings)(alice)
    assert standing.quota == quota and standing.used_tokens == row.total_tokens


@pytest.mark.django_db(transaction=True)
async def test_a_quota_limits_replies_at_once(alice, model, sockets, fake_upstream):
    await database_sync_to_async(Quota.objects.create)(user=alice, max_concurrent=1)
    fake_upstream.script("fake-model", reply(SLOW, delay=0.05))
    socket = await sockets(alice)
    await socket.send(**send_event())
    first = await socket.receive_until("message.delta")

    await socket.send(**send_event("and another"))
    refusal = await socket.receive_until("error")

    assert refusal[-1]["code"] == "too_many"
    await socket.send(type="stop", message=first[2]["message"]["id"])
    await socket.receive_until("message.done")


@pytest.mark.django_db
def test_the_ledger_counts_a_reaped_reply_once(alice, model, settings):
    from conversations.models import Conversation

    settings.CONFAB_STALE_AFTER_S = 0
    conversation = Conversation.objects.create(owner=alice)
    message = Message.objects.create(
        conversation=conversation, role="assistant", status="streaming", content="partial",
        checkpointed=timezone.now() - timedelta(minutes=5), prompt_tokens=12,
    )  # fmt: skip

    [reaped] = reap_stale()
    assert [done["id"] for done in reaped.done] == [str(message.id)]
    assert reap_stale() == []
    [row] = UsageRecord.objects.all()
    assert (row.status, row.prompt_tokens, row.estimated) == ("interrupted", 12, True)


@pytest.mark.django_db
def test_group_restricted_models_are_hidden_from_outsiders(client, alice, bob, model):
    staff = Group.objects.create(name="staff")
    secret = LanguageModel.objects.create(provider=model.provider, upstream_id="secret-model")
    secret.groups.add(staff)
    alice.groups.add(staff)

    assert list(LanguageModel.objects.available_to(bob)) == [model]
    assert set(LanguageModel.objects.available_to(alice)) == {model, secret}
    client.force_login(bob)
    assert "secret-model" not in client.get(reverse("chat")).content.decode()


@pytest.mark.django_db(transaction=True)
async def test_group_restricted_models_are_refused_to_outsiders(bob, model, sockets, fake_upstream):
    secret = await database_sync_to_async(LanguageModel.objects.create)(
        provider=model.provider, upstream_id="secret-model"
    )
    staff = await database_sync_to_async(Group.objects.create)(name="staff")
    await database_sync_to_async(secret.groups.add)(staff)
    socket = await sockets(bob)

    await socket.send(**send_event(model=str(secret.public_id)))
    refusal = await socket.receive()

    assert (
        refusal["code"] == "invalid" and "model: This model is not available." in refusal["message"]
    )
    assert fake_upstream.requests == []


@pytest.mark.django_db
def test_dashboard_totals_add_up_to_the_ledger(alice_admin, alice, bob):
    for user, tokens, cost, status in [
        (alice, (10, 5), "0.10", "complete"),
        (alice, (20, 0), "0.20", "failed"),
        (bob, (1, 2), "0.03", "complete"),
    ]:
        record(user, tokens=tokens, cost=cost, status=status, ttft_ms=100)
    record(bob, tokens=(1000, 1000), cost="9", days_ago=90)  # outside the range

    page = alice_admin.get(reverse("admin:conversations_usagerecord_dashboard"))

    totals = page.context["totals"]
    recent = UsageRecord.objects.filter(created__gte=timezone.now() - timedelta(days=29))
    assert totals["total_tokens"] == recent.aggregate(s=Sum("total_tokens"))["s"] == 38
    assert totals["cost"] == [{"currency": "USD", "amount": Decimal("0.33")}]
    assert totals["requests"] == 3 and totals["error_rate"] == pytest.approx(1 / 3)
    assert totals["median_ttft_ms"] == 100
    assert [row["label"] for row in page.context["top_users"]] == ["alice", "bob"]
    html = page.content.decode()
    assert html.count("<rect") >= 4 and "Tokens per day by model" in html


@pytest.mark.django_db
def test_costs_in_two_currencies_are_never_added_up(alice_admin, alice, bob, client):
    record(alice, model_name="gpt", cost="0.50", currency="USD")
    record(alice, model_name="gpt", cost="2.00", currency="CNY")
    record(bob, model_name="qwen", cost="3.00", currency="CNY")

    page = alice_admin.get(reverse("admin:conversations_usagerecord_dashboard"))

    charts = dict(page.context["charts"])
    assert "Cost per day by model" not in charts  # one chart of all currencies: gone
    by_model = {"CNY": charts["Cost per day by model (CNY)"],
                "USD": charts["Cost per day by model (USD)"]}  # fmt: skip
    assert by_model["CNY"]["peak"] == "CNY 5.0000" and by_model["USD"]["peak"] == "USD 0.5000"
    assert {item["label"] for item in by_model["USD"]["legend"]} == {"gpt"}
    assert "Cost per day by user (CNY)" in charts and "Cost per day by user (USD)" in charts
    gpt = next(row for row in page.context["top_models"] if row["label"] == "gpt")
    assert gpt["costs"] == [
        {"currency": "CNY", "amount": Decimal("2.00")},
        {"currency": "USD", "amount": Decimal("0.50")},
    ]
    assert "CNY 2.0000, USD 0.5000" in page.content.decode()
    client.force_login(alice)
    mine = client.get(reverse("my_usage")).content.decode()
    assert "CNY 2.0000, USD 0.5000" in mine and "2.5000" not in mine


@pytest.mark.django_db
def test_the_ledger_changelist_totals_and_csv_follow_the_filters(alice_admin, alice, bob):
    record(alice, tokens=(10, 5), cost="0.10")
    record(bob, tokens=(1, 2), cost="0.03")
    changelist = reverse("admin:conversations_usagerecord_changelist")

    page = alice_admin.get(changelist, {"user__id__exact": bob.pk})
    export = alice_admin.get(
        reverse("admin:conversations_usagerecord_export"), {"user__id__exact": bob.pk}
    )

    assert "Totals for these rows: 1 requests, 3 tokens, USD 0.0300." in page.content.decode()
    rows = list(csv.DictReader(io.StringIO(export.content.decode())))
    assert [(r["user"], r["total_tokens"], r["cost"]) for r in rows] == [("bob", "3", "0.03000000")]
    assert API_KEY not in export.content.decode()


@pytest.mark.django_db
def test_the_ledger_cannot_be_edited_in_admin(alice_admin, alice):
    row = record(alice)

    change = alice_admin.post(
        reverse("admin:conversations_usagerecord_change", args=[row.pk]), {"total_tokens": 1}
    )
    delete = alice_admin.post(
        reverse("admin:conversations_usagerecord_delete", args=[row.pk]), {"post": "yes"}
    )

    assert change.status_code == 403 and delete.status_code == 403
    row.refresh_from_db()
    assert row.total_tokens == 15


@pytest.mark.django_db
def test_admin_resets_a_period_grants_more_and_disables_a_user(alice_admin, bob):
    quota = Quota.objects.create(user=bob, max_tokens=100)
    record(bob, tokens=(80, 20))
    quotas_url = reverse("admin:conversations_quota_changelist")

    alice_admin.post(quotas_url, {"action": "reset_period", "_selected_action": [quota.pk]})
    [standing] = quotas.standings(bob)
    assert standing.used_tokens == 0

    alice_admin.post(quotas_url, {"action": "grant_another_period", "_selected_action": [quota.pk]})
    [standing] = quotas.standings(bob)
    assert standing.token_limit == 200

    alice_admin.post(
        reverse("admin:auth_user_changelist"),
        {"action": "disable_access", "_selected_action": [bob.pk]},
    )
    bob.refresh_from_db()
    assert not bob.is_active


@pytest.mark.django_db
def test_my_usage_shows_my_period_against_my_quota(client, alice, bob):
    Quota.objects.create(user=alice, max_tokens=1000)
    record(alice, model_name="model-a", tokens=(100, 50))
    record(bob, model_name="model-b", tokens=(5, 5))
    client.force_login(alice)

    page = client.get(reverse("my_usage")).content.decode()

    assert "150 of 1,000 tokens" in page
    assert "model-a" in page and "model-b" not in page


@pytest.mark.django_db(transaction=True)
async def test_a_failed_request_logs_no_key(alice, model, sockets, fake_upstream, caplog):
    fake_upstream.script("fake-model", http_error(401, f"Incorrect API key provided: {API_KEY}"))
    socket = await sockets(alice)

    with caplog.at_level(logging.DEBUG):
        done = await reply_of(socket)

    assert done["status"] == "failed"
    assert API_KEY not in caplog.text
    assert API_KEY not in str(done)


@pytest.mark.django_db(transaction=True)
async def test_a_user_over_a_money_quota_is_refused_even_by_an_unpriced_model(
    alice, provider, sockets, fake_upstream
):
    await database_sync_to_async(LanguageModel.objects.create)(
        provider=provider, upstream_id="fake-model"
    )
    await database_sync_to_async(Quota.objects.create)(user=alice, max_cost=Decimal("0.01"))
    await database_sync_to_async(record)(alice, cost="5")
    socket = await sockets(alice)

    await socket.send(**send_event())
    refusal = await socket.receive()

    assert refusal["code"] == "quota_exceeded" and fake_upstream.requests == []


@pytest.mark.django_db(transaction=True)
async def test_a_disabled_user_cannot_send_from_a_tab_left_open(alice, model, sockets,
                                                                fake_upstream):  # fmt: skip
    socket = await sockets(alice)
    alice.is_active = False
    await database_sync_to_async(alice.save)()

    await socket.send(**send_event())
    closed = await socket.communicator.receive_output()

    # The account's sockets close (4401, signed out) and nothing is sent upstream.
    assert (closed["type"], closed["code"]) == ("websocket.close", 4401)
    assert fake_upstream.requests == []


@pytest.mark.django_db
def test_a_reaped_reply_is_priced_like_any_other(alice, model, settings):
    from conversations.models import Conversation

    settings.CONFAB_STALE_AFTER_S = 0
    message = Message.objects.create(
        conversation=Conversation.objects.create(owner=alice), role="assistant",
        status="streaming", content="x" * 40, model=model, prompt_tokens=100,
        created=timezone.now() - timedelta(minutes=5),
        checkpointed=timezone.now() - timedelta(minutes=5),
    )  # fmt: skip

    reap_stale()

    [row] = UsageRecord.objects.all()
    assert row.cost == Decimal(100 * 2 + 10 * 8) / 1_000_000
    assert row.provider == model.provider
    message.refresh_from_db()
    assert message.cost == row.cost


@pytest.mark.django_db
def test_site_settings_open_on_their_one_row(alice_admin):
    response = alice_admin.get(reverse("admin:conversations_sitesettings_changelist"))

    assert response.status_code == 302 and response.url.endswith("/1/change/")


@pytest.mark.django_db
def test_a_quota_is_for_a_user_or_a_group(alice_admin, alice):
    both = alice_admin.post(
        reverse("admin:conversations_quota_add"),
        {"user": alice.pk, "group": Group.objects.create(name="g").pk, "period": "month",
         "currency": "USD", "extra_tokens": 0, "extra_cost": 0},
    )  # fmt: skip

    assert "Choose a user or a group: one of them, not both." in both.content.decode()


@pytest.mark.django_db(transaction=True)
async def test_money_always_shows_its_currency(alice, model, sockets, fake_upstream):
    from django.test import Client

    await database_sync_to_async(model.prices.update)(currency="CNY")
    socket = await sockets(alice)
    await socket.send(**send_event())
    done = (await socket.receive_until("message.done"))[-1]["message"]

    assert done["currency"] == "CNY"
    assert '<span class="cost" title="cost">CNY 0.000078</span>' in done["html"]
    client = Client()
    await database_sync_to_async(client.force_login)(alice)
    inspected = await database_sync_to_async(client.get)(
        reverse("message_request", args=[done["id"]])
    )
    assert inspected.json()["cost"] == "CNY 0.000078"
    usage = (await database_sync_to_async(client.get)(reverse("my_usage"))).content.decode()
    assert "<td>CNY 0.0001</td>" in usage  # the table of models, each cost with its currency


@pytest.mark.django_db
def test_the_dashboard_charts_money_one_currency_at_a_time(alice_admin, alice):
    record(alice, cost="0.50", currency="USD")
    record(alice, cost="3.00", currency="CNY")

    page = alice_admin.get(reverse("admin:conversations_usagerecord_dashboard")).content.decode()

    for currency in ("CNY", "USD"):
        assert f'aria-label="Cost per day by model ({currency})"' in page
    assert "<td>alice</td><td>2</td><td>30</td><td>CNY 3.0000, USD 0.5000</td>" in page
    assert "highest day: CNY 3.0000" in page and "highest day: USD 0.5000" in page


@pytest.mark.django_db
def test_charts_have_axes_and_labels(client, alice):
    record(alice, tokens=(6000, 2301))
    client.force_login(alice)

    page = client.get(reverse("my_usage")).content.decode()
    chart = page.split('<svg viewBox="0 0 720 240"')[1].split("</svg>")[0]

    assert chart.count('class="chart-axis"') == 2  # the amounts' axis and the days'
    ticks = [label.split("<")[0] for label in chart.split('class="chart-tick"')[1:]]
    ticks = [tick.split(">")[1] for tick in ticks]
    assert ticks[:3] == ["0", "4,150", "8,301"]  # amounts, then the days below
    today = timezone.localdate()
    assert ticks[-1] == f"{today:%m-%d}" and len(ticks) == 6
    assert ">tokens</text>" in chart and ">day</text>" in chart
    assert "highest day: 8,301 tokens" in page

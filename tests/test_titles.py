"""Titles: written by a model after the first reply, never over one the user gave."""

import pytest
from channels.db import database_sync_to_async

from conversations.models import Conversation, UsageRecord
from tests.fake_upstream import reply
from tests.helpers import (
    send_event,
)

pytestmark = pytest.mark.django_db(transaction=True)


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


@pytest.mark.parametrize(
    ("answer", "title"),
    [
        ("“Everything, Answered”\n", "Everything, Answered"),
        ("**Cats and Dogs**", "Cats and Dogs"),
        ("Title: The `sort` Function", "The sort Function"),
        ("```\nPython Sorting Tips\n```", "Python Sorting Tips"),
        ("# Moving to Berlin.", "Moving to Berlin"),
        ("标题：「猫的习性」", "猫的习性"),
        ("[Trip planning](https://example.com) for June", "Trip planning for June"),
        ("'Gardening'\n\nI chose this because you asked about plants.", "Gardening"),
    ],
)
def test_a_title_is_cleaned_to_one_line_of_plain_text(answer, title):
    from conversations.generation.titles import clean_title

    assert clean_title(answer) == title


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "```",
        "Sure! Here is a title for your conversation about the meaning of life and everything",
        "1. Cats\n2. Dogs\n3. Birds",
        "A" * 61,
    ],
)
def test_a_bad_or_over_long_answer_is_no_title(answer):
    from conversations.generation.titles import clean_title

    assert clean_title(answer) == ""


async def first_reply_and_title_requests(alice, sockets, fake_upstream, title_answer):
    """Send a first message; the requests the upstream got once things settle."""
    import asyncio

    def answer_or_title(body):
        if body["messages"][-1]["content"].startswith("Write a title"):
            return reply([title_answer])
        return reply(["The ", "answer."])

    fake_upstream.script("fake-model", answer_or_title)
    socket = await sockets(alice)
    await socket.send(**send_event("How do I sort a list in Python?"))
    done = (await socket.receive_until("message.done"))[-1]["message"]
    await asyncio.sleep(0.3)  # time for a title, were one written
    conversation = await database_sync_to_async(Conversation.objects.get)(id=done["conversation"])
    titles = [r for r in fake_upstream.requests if "Write a title" in str(r["body"]["messages"])]
    return conversation.title, titles


async def test_a_bad_answer_leaves_the_first_message_as_the_title(
    alice, model, sockets, fake_upstream, settings
):
    settings.CONFAB_AUTO_TITLE = True

    title, asked = await first_reply_and_title_requests(
        alice, sockets, fake_upstream, "Here are some ideas:\n- Sorting\n- Lists\n- Python"
    )

    assert len(asked) == 1
    assert title == "How do I sort a list in Python?"


async def test_an_administrator_turns_titles_off(alice, model, sockets, fake_upstream, settings):
    from conversations.models import SiteSettings

    settings.CONFAB_AUTO_TITLE = True
    await database_sync_to_async(SiteSettings.objects.update_or_create)(
        pk=1, defaults={"titles": False}
    )

    title, asked = await first_reply_and_title_requests(alice, sockets, fake_upstream, "Sorting")

    assert asked == []
    assert title == "How do I sort a list in Python?"


async def test_the_bundled_demo_model_writes_no_titles(
    alice, model, sockets, fake_upstream, settings
):
    from conversations.models import Provider

    settings.CONFAB_AUTO_TITLE = True
    await database_sync_to_async(Provider.objects.filter(pk=model.provider_id).update)(bundled=True)

    title, asked = await first_reply_and_title_requests(alice, sockets, fake_upstream, "Sorting")

    assert asked == []
    assert title == "How do I sort a list in Python?"


async def test_the_model_chosen_for_titles_writes_them(
    alice, model, sockets, fake_upstream, settings
):
    from conversations.models import LanguageModel, SiteSettings

    settings.CONFAB_AUTO_TITLE = True
    writer = await database_sync_to_async(LanguageModel.objects.create)(
        provider=model.provider, upstream_id="title-writer"
    )
    fake_upstream.script("title-writer", reply(["Sorting in Python"]))
    await database_sync_to_async(SiteSettings.objects.update_or_create)(
        pk=1, defaults={"title_model": writer}
    )

    await first_reply_and_title_requests(alice, sockets, fake_upstream, "unused")

    assert fake_upstream.requests[-1]["body"]["model"] == "title-writer"

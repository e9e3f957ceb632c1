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

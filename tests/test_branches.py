"""Branches: regenerate and edit make siblings; a send continues the branch on show."""

import uuid

import pytest
from channels.db import database_sync_to_async

from conversations.models import Conversation, Message
from tests.fake_upstream import http_error
from tests.helpers import (
    send_event,
)

pytestmark = pytest.mark.django_db(transaction=True)


async def test_regenerate_makes_a_sibling_reply(alice, model, sockets, fake_upstream):
    fake_upstream.script("fake-model", http_error(500, "overloaded"))
    socket = await sockets(alice)
    await socket.send(**send_event("try me"))
    failed = (await socket.receive_until("message.done"))[-1]["message"]
    fake_upstream.reset()

    await socket.send(type="regenerate", message=failed["id"])
    events = await socket.receive_until("message.done")

    created, done = events[0]["message"], events[-1]["message"]
    assert (created["parent"], created["status"]) == (failed["parent"], "streaming")
    assert (done["id"], done["status"], done["content"]) == (created["id"], "complete",
                                                             "You said: try me")  # fmt: skip
    conversation = await database_sync_to_async(Conversation.objects.get)(id=done["conversation"])
    branch = await database_sync_to_async(conversation.branch)()
    assert [m.id for m in branch][-1] == uuid.UUID(done["id"])  # the new one is shown
    assert await database_sync_to_async(Message.objects.filter(id=failed["id"]).exists)()


async def test_regenerate_rejects_outsider_and_user_messages(alice, charlie, model, sockets,
                                                             fake_upstream):  # fmt: skip
    owner = await sockets(alice)
    await owner.send(**send_event())
    events = await owner.receive_until("message.done")
    outsider = await sockets(charlie)

    await outsider.send(type="regenerate", message=events[-1]["message"]["id"])
    stolen = await outsider.receive()
    await owner.send(type="regenerate", message=events[1]["message"]["id"])
    not_a_reply = (await owner.receive_until("error"))[-1]

    assert stolen["code"] == not_a_reply["code"] == "not_found"
    assert len(fake_upstream.requests) == 1


async def test_edit_starts_a_new_branch_from_the_same_point(alice, model, sockets, fake_upstream):
    socket = await sockets(alice)
    await socket.send(**send_event("first question"))
    first = await socket.receive_until("message.done")
    conversation = first[0]["conversation"]["id"]
    await socket.send(**send_event("second question", conversation=conversation))
    second = await socket.receive_until("message.done")
    original = second[0]["message"]

    await socket.send(type="edit", message=original["id"], content="second, better",
                      client_id=str(uuid.uuid4()))  # fmt: skip
    edited = await socket.receive_until("message.done")

    new_question = edited[0]["message"]
    assert (new_question["role"], new_question["content"]) == ("user", "second, better")
    assert new_question["parent"] == original["parent"] and new_question["id"] != original["id"]
    assert edited[-1]["message"]["content"] == "You said: second, better"
    assert fake_upstream.requests[-1]["body"]["messages"] == [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "You said: first question"},
        {"role": "user", "content": "second, better"},
    ]


async def test_edit_rejects_outsider_and_replies(alice, charlie, model, sockets, fake_upstream):
    owner = await sockets(alice)
    await owner.send(**send_event())
    events = await owner.receive_until("message.done")
    outsider = await sockets(charlie)

    await outsider.send(type="edit", message=events[1]["message"]["id"], content="mine now")
    stolen = await outsider.receive()
    await owner.send(type="edit", message=events[-1]["message"]["id"], content="a reply?")
    not_a_question = (await owner.receive_until("error"))[-1]

    assert stolen["code"] == not_a_question["code"] == "not_found"
    assert len(fake_upstream.requests) == 1


async def test_a_send_continues_the_branch_on_show(alice, model, sockets, fake_upstream):
    socket = await sockets(alice)
    await socket.send(**send_event("question"))
    first = (await socket.receive_until("message.done"))[-1]["message"]
    await socket.send(type="regenerate", message=first["id"])
    await socket.receive_until("message.done")
    conversation = await database_sync_to_async(Conversation.objects.get)(id=first["conversation"])
    conversation.shown_id = uuid.UUID(first["id"])  # the user switched back to the first
    await database_sync_to_async(conversation.save)()

    await socket.send(**send_event("and then?", conversation=first["conversation"]))
    created = await socket.receive_until("message.created")

    assert created[-1]["message"]["parent"] == first["id"]
    await socket.receive_until("message.done")

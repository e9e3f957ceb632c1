"""Authorisation, kept: every URL of the app and every websocket event, aimed at alice's
conversation and messages by charlie (signed in, an outsider) and by an anonymous visitor,
returns none of alice's data and changes nothing of hers. The URLs are read from the URL
configuration, so a view added later is walked too."""

import re

import pytest
from django.core import serializers
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from conversations.forms import EVENT_FORMS
from conversations.models import (
    ApiKey,
    BuiltinTool,
    Conversation,
    File,
    Message,
    Preferences,
    Project,
    Share,
    ToolServer,
    UsageRecord,
)
from tests.helpers import open_socket, refused_code

SECRET = "alice-private-7391"
# URL parameters that name alice's things, by their name in the URL configuration.
OWN = {
    "conversation_id": "conversation",
    "message_id": "question",
    "key_id": "api_key",
    "token": "share",
    "file_id": "file",
    "project_id": "project",
}


def app_urls(patterns=None, prefix="", parameters=()):
    """(route, parameter names) of every URL pattern, admin's included; an included
    pattern's parameters are those of its prefixes too (/c/<id>/ and what is under it)."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        named = [*parameters, *getattr(pattern.pattern, "converters", {})]
        if isinstance(pattern, URLResolver):
            yield from app_urls(pattern.url_patterns, prefix + str(pattern.pattern), named)
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), named


def concrete(route, parameters, ids):
    """The route with alice's ids in it, or None for a route that takes other parameters."""
    path = route
    for name in parameters:
        if name not in OWN:
            return None
        path = re.sub(rf"<\w+:{name}>", str(ids[OWN[name]]), path)
    if "<" in path or path.startswith("^"):
        return None  # a pattern of the admin's own, not one of our ids
    return "/" + path


@pytest.fixture
def alices(alice, model):
    conversation = Conversation.objects.create(
        owner=alice, title=f"Plans {SECRET}", model=model, system_prompt=SECRET
    )
    question = Message.objects.create(
        conversation=conversation, role="user", content=f"question {SECRET}"
    )
    answer = Message.objects.create(
        conversation=conversation, parent=question, role="assistant",
        content=f"answer {SECRET}", model=model, request={"model": "fake-model"},
    )  # fmt: skip
    Preferences.objects.create(user=alice, system_prompt=SECRET)
    api_key, _ = ApiKey.create(alice, SECRET)
    # A live link is for its readers, whoever they are (tests/test_shares.py); a revoked one
    # is alice's alone: nobody may read, continue or revive it.
    share = Share.take(Conversation.objects.get(id=conversation.id), show_system_prompt=True)
    share.revoked = timezone.now()
    share.save()
    # A call of alice's waiting for her approval, and a tool server whose header is a secret.
    waiting = Message.objects.create(
        conversation=conversation, parent=answer, role="tool", status="streaming",
        approval="pending", tool_name="calculator", tool_call_id="call_1",
        tool_calls=[{"id": "call_1", "type": "function",
                     "function": {"name": "calculator", "arguments": "{}"}}],
    )  # fmt: skip
    server = ToolServer(name="atlas", url="http://127.0.0.1:9/mcp")
    server.headers = {"Authorization": SECRET}
    server.save()
    project = Project.objects.create(owner=alice, name=f"Project {SECRET}", instructions=SECRET)
    conversation.project = project
    conversation.save()
    file = File.objects.create(
        owner=alice, conversation=conversation, name=f"{SECRET}.txt", kind="text", size=5,
        blob="files/alice.txt", status="ready",
    )  # fmt: skip
    file.passages.create(ordinal=0, text=f"passage {SECRET}")
    return {
        "waiting": waiting.id,
        "file": file.id,
        "project": project.id,
        "conversation": conversation.id,
        "question": question.id,
        "answer": answer.id,
        "api_key": api_key.id,
        "share": share.token,
    }


def body(response):
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return content.decode(errors="replace")


def snapshot():
    """Everything of alice's that a request could change."""
    return [
        serializers.serialize("json", rows.order_by("pk"))
        for rows in (
            Conversation.objects.filter(owner__username="alice"),
            Message.objects.filter(conversation__owner__username="alice"),
            Preferences.objects.filter(user__username="alice"),
            UsageRecord.objects.filter(user__username="alice"),
            ApiKey.objects.filter(user__username="alice"),
            Share.objects.filter(owner__username="alice"),
            ToolServer.objects.all(),
            BuiltinTool.objects.all(),
            File.objects.filter(owner__username="alice"),
            Project.objects.filter(owner__username="alice"),
        )
    ]


# Committed as it goes: the gateway's views reach the database from a thread of their own.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("visitor", ["charlie", "anonymous"])
def test_no_url_gives_another_user_anything_of_alices(alices, charlie, visitor):
    client = Client()
    if visitor == "charlie":
        client.force_login(charlie)
    before = snapshot()
    walked = 0

    for route, parameters in app_urls():
        path = concrete(route, parameters, alices)
        if path is None or path.startswith("/accounts/") or path.startswith("/i18n/"):
            continue  # sign-in pages and the language switch hold nobody's data
        for method in (client.get, client.post):
            # `q` would find alice's conversation were search to leak it: SECRET would show.
            response = method(path, {"title": "stolen", "q": "Plans"}, follow=True)
            walked += 1
            assert SECRET not in body(response), (method, path)
            # 410: an invitation link that is not one (the walk gives it a share's token);
            # 400: an upload with no file in it.
            assert response.status_code in (200, 400, 401, 403, 404, 405, 410), (method, path)

    assert walked > 40
    # Every route of the app is walked: one no id of alice's fits would be left out unseen.
    unwalked = [
        route
        for route, parameters in app_urls()
        if not route.startswith(("admin/", "accounts/"))
        and concrete(route, parameters, alices) is None
    ]
    assert unwalked == []
    assert snapshot() == before


@pytest.mark.django_db(transaction=True)
async def test_no_websocket_event_reaches_alices_conversation(alices, charlie, sockets):
    from channels.db import database_sync_to_async

    before = await database_sync_to_async(snapshot)()
    socket = await sockets(charlie)
    conversation = str(alices["conversation"])
    events = [
        {"type": "subscribe", "conversation": conversation, "streaming": [str(alices["answer"])]},
        {"type": "send", "conversation": conversation, "content": "hi", "parent": None,
         "params": {}},
        {"type": "send", "conversation": None, "content": "hi",
         "parent": str(alices["question"]), "params": {}},
        {"type": "regenerate", "message": str(alices["answer"])},
        {"type": "edit", "message": str(alices["question"]), "content": "mine now"},
        {"type": "stop", "message": str(alices["answer"])},
        {"type": "stop", "message": str(alices["waiting"])},
        {"type": "approve", "message": str(alices["waiting"]), "allow": True, "always": True},
        {"type": "approve", "message": str(alices["waiting"]), "allow": False},
        {"type": "send", "conversation": None, "content": "hi", "params": {},
         "project": str(alices["project"])},
        {"type": "send", "conversation": None, "content": "hi", "params": {},
         "files": [str(alices["file"])]},
    ]  # fmt: skip
    # Every event a socket takes is tried: one added later cannot be left out unseen.
    assert {event["type"] for event in events} == set(EVENT_FORMS)

    for event in events:
        await socket.send(**event)
        answer = await socket.receive()
        assert answer["type"] == "error" and answer["code"] == "not_found", event
        assert SECRET not in str(answer)
    assert await socket.nothing_more()
    anonymous = await open_socket(None)
    assert anonymous.__class__.__name__ == "Socket"
    assert await refused_code(anonymous.communicator) == 4401
    assert await database_sync_to_async(snapshot)() == before

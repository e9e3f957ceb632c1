"""A websocket lives no longer than its session: signing out, a password change, a disabled
account or an expired session close it with 4401, and it starts nothing more."""

import uuid
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from conversations.models import Message
from tests.helpers import PASSWORD, open_socket, refused_code, send_event

pytestmark = pytest.mark.django_db(transaction=True)


async def signed_in_client(user):
    client = Client()
    await database_sync_to_async(client.force_login)(user)
    return client


async def assert_starts_nothing(socket):
    await socket.send(**send_event("after the end"))
    assert await socket.nothing_more()
    assert await database_sync_to_async(Message.objects.count)() == 0


async def test_signing_out_closes_that_sessions_sockets(alice, model, sockets):
    browser = await signed_in_client(alice)
    socket = await open_socket(client=browser)
    other_browser = await sockets(alice)

    await database_sync_to_async(browser.post)(reverse("logout"))

    assert await refused_code(socket.communicator) == 4401
    await assert_starts_nothing(socket)
    await other_browser.send(type="subscribe", conversation=str(uuid.uuid4()))
    assert (await other_browser.receive())["code"] == "not_found"  # another session: open
    await socket.close()


async def test_a_password_change_closes_the_users_sockets(alice, model, sockets):
    browser = await signed_in_client(alice)
    socket = await sockets(alice)

    new = "a new one 43"
    changed = await database_sync_to_async(browser.post)(
        reverse("password_change"),
        {"old_password": PASSWORD, "new_password1": new, "new_password2": new},
    )

    assert changed.status_code == 302
    assert await refused_code(socket.communicator) == 4401
    await assert_starts_nothing(socket)


async def test_disabling_an_account_in_admin_closes_its_sockets(alice_admin, bob, model, sockets):
    socket = await sockets(bob)

    await database_sync_to_async(alice_admin.post)(
        reverse("admin:auth_user_changelist"),
        {"action": "disable_access", "_selected_action": [bob.pk]},
    )

    assert await refused_code(socket.communicator) == 4401
    await assert_starts_nothing(socket)


@pytest.mark.parametrize(
    "event",
    [
        send_event("after expiry"),
        {"type": "edit", "message": str(uuid.uuid4()), "content": "again"},
        {"type": "regenerate", "message": str(uuid.uuid4())},
        {"type": "subscribe", "conversation": str(uuid.uuid4())},
        {"type": "stop", "message": str(uuid.uuid4())},
    ],
    ids=lambda event: event["type"],
)
async def test_an_expired_session_closes_the_socket_at_its_next_event(alice, model, event):
    browser = await signed_in_client(alice)
    socket = await open_socket(client=browser)
    await database_sync_to_async(Session.objects.update)(
        expire_date=timezone.now() - timedelta(seconds=1)
    )

    await socket.send(**event)

    assert await refused_code(socket.communicator) == 4401
    await assert_starts_nothing(socket)
    await socket.close()


async def test_a_live_session_keeps_its_socket(alice, model, sockets):
    socket = await sockets(alice)

    await socket.send(**send_event("still signed in"))

    assert (await socket.receive_until("message.done"))[-1]["message"]["status"] == "complete"

"""What the tests share: users, models, a signed-in socket, events to send, bytes to split,
and ways to wait for a reply's end. Test modules import from here (and from the fake
upstream), never from one another; conftest.py holds the fixtures."""

import asyncio
import json
import uuid
from itertools import pairwise

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client
from playwright.sync_api import expect

from conversations.generation import runner
from conversations.models import LanguageModel, Message, UsageRecord
from tests.fake_upstream import reply

API_KEY = "sk-test-0123456789-secret-4f2a"
PASSWORD = "correct horse 42"
SLOW_PARTS = [f"word{i} " for i in range(40)]
SLOW_TEXT = "".join(SLOW_PARTS)
# What the browser journeys' "slow-model" streams, a word every 100 ms.
JOURNEY_PARTS = [f"word{i} " for i in range(50)]


def make_user(name):
    return get_user_model().objects.create_user(name, f"{name}@example.com", PASSWORD)


def add_model(provider, upstream_id, **fields):
    return LanguageModel.objects.create(provider=provider, upstream_id=upstream_id, **fields)


async def slow_model(fake_upstream, model, delay):
    """A model of `model`'s provider that streams SLOW_PARTS, `delay` seconds apart."""
    fake_upstream.script("slow", reply(SLOW_PARTS, delay=delay))
    return await database_sync_to_async(add_model)(model.provider, "slow")


def send_event(content="hello world", conversation=None, **extra):
    """A `send` event, as the page sends one."""
    return {
        "type": "send",
        "conversation": conversation,
        "content": content,
        "parent": None,
        "params": {},
        "client_id": str(uuid.uuid4()),
        **extra,
    }


def streamed_text(events):
    return "".join(e.get("content", "") for e in events if e["type"] == "message.delta")


def split_bytes(data, *cuts):
    """`data` as several network writes, cut at the given byte offsets."""
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in pairwise(edges)]


@database_sync_to_async
def get_message(message_id):
    return Message.objects.get(id=message_id)


@database_sync_to_async
def ledger():
    return list(UsageRecord.objects.order_by("created"))


async def reply_ended(message_id, timeout=10):
    """The stored reply, once its runner has settled it: its task awaited, not polled."""
    generation = runner.generations.get(str(message_id))
    if generation is not None:
        async with asyncio.timeout(timeout):
            await asyncio.shield(generation.task)
    return await get_message(message_id)


class Socket:
    """A signed-in browser tab's websocket, for consumer tests."""

    def __init__(self, communicator):
        self.communicator = communicator

    async def send(self, **event):
        await self.communicator.send_to(text_data=json.dumps(event))

    async def send_raw(self, **frame):
        await self.communicator.send_to(**frame)

    async def receive(self, timeout=5):
        return json.loads(await self.communicator.receive_from(timeout=timeout))

    async def receive_until(self, event_type, timeout=10):
        """Every event up to and including the first of `event_type`."""
        events = []
        async with asyncio.timeout(timeout):
            while not events or events[-1]["type"] != event_type:
                events.append(await self.receive(timeout=timeout))
        return events

    async def nothing_more(self):
        return await self.communicator.receive_nothing(timeout=0.2)

    async def close(self):
        await self.communicator.disconnect()


def _session_cookie(user):
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


async def open_socket(user=None, headers=(), client=None):
    """A socket through the whole ASGI stack, with a new session of `user`, or the session
    of a signed-in test `client`; the close code when the server refuses it."""
    from chatsite.asgi import application

    headers = [(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000"), *headers]
    if client is not None:
        cookie = client.cookies["sessionid"].value
    elif user is not None:
        cookie = await database_sync_to_async(_session_cookie)(user)
    if client is not None or user is not None:
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, code = await communicator.connect()
    return Socket(communicator) if connected else code


async def refused_code(communicator):
    """The close code of a socket the server accepted only to close it."""
    closed = await communicator.receive_output()
    return closed["code"] if closed["type"] == "websocket.close" else None


def sign_up(page, server):
    """A browser journey's first step: alice signs up (the first account: an admin)."""
    page.goto(server + "/accounts/signup/")
    page.get_by_label("Username").fill("alice")
    page.locator("#id_password1").fill(PASSWORD)
    page.locator("#id_password2").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    # The chat page, as an administrator (the link is in a phone's drawer, out of sight).
    expect(page.locator('.account a[href="/admin/"]')).to_have_count(1)


def ask(page, text, model="slow-model"):
    """Send `text` to `model` from the composer of a live chat page."""
    expect(page.locator('body[data-connection="open"]')).to_have_count(1)  # the page is live
    page.locator("#model-picker").select_option(label=model)  # the composer's own
    page.get_by_label("Message").fill(text)
    page.get_by_label("Message").press("Enter")


def add_user(admin, server, name):
    """The administrator (alice, signed in on `admin`) adds an account in admin."""
    admin.goto(server + "/admin/auth/user/add/")
    admin.get_by_label("Username:").fill(name)
    admin.locator("#id_password1").fill(PASSWORD)
    admin.locator("#id_password2").fill(PASSWORD)
    admin.get_by_role("button", name="Save", exact=True).click()
    expect(admin.locator(".messagelist")).to_contain_text("was added successfully")


def sign_in(context, server, name):
    """A new page of `context` (a browser profile of its own), signed in as `name`."""
    page = context.new_page()
    page.goto(server + "/accounts/login/")
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator('body[data-connection="open"]')).to_have_count(1)
    return page


async def upload_file(user, name, data, **fields):
    """`name` uploaded by `user` through POST /files/, and read: the stored File."""
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.test import AsyncClient

    from conversations.files import processing

    client = AsyncClient()
    await client.aforce_login(user)
    response = await client.post("/files/", {"file": SimpleUploadedFile(name, data), **fields})
    assert response.status_code == 201, response.content
    return await processing.ready(response.json()["id"])

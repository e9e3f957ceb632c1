import asyncio
import json
import logging
import re
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.layers import DEFAULT_CHANNEL_LAYER, InMemoryChannelLayer, channel_layers
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from conversations import upstream
from conversations.generation import runner
from conversations.models import LanguageModel, Provider
from tests.fake_upstream import DEFAULT_MODEL, FakeUpstream

# The browser journeys' fixtures: server, context, page.
pytest_plugins = ["tests.browsing"]

API_KEY = "sk-test-0123456789-secret-4f2a"


@pytest.fixture(scope="session")
def django_db_modify_db_settings():
    """Close connections after each use, as pytest-django's own threads never close the
    ones database_sync_to_async keeps: PostgreSQL would refuse to drop the test database."""
    from django.conf import settings

    settings.DATABASES["default"]["CONN_MAX_AGE"] = 0


@pytest.fixture(autouse=True)
def fresh_redis_channel_layer():
    """With Redis, a channel layer per test, as channels makes anew when CHANNEL_LAYERS
    changes: each test runs its own event loop, and channels_redis keeps asyncio locks
    across loops; one held by a receive that a finished test's loop never ended breaks
    every later test ("bound to a different event loop"). Its connections close with their
    loop. (The in-memory layer is kept: the browser journeys' server outlives a test.)"""
    yield
    if not isinstance(channel_layers.backends.get(DEFAULT_CHANNEL_LAYER), InMemoryChannelLayer):
        channel_layers.backends.clear()


class _Errors(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture(autouse=True)
def no_errors_logged(request):
    """A test fails when Confab logs an error during it: a traceback in the server's log is
    a bug even when the user saw something sensible. A test that provokes one on purpose
    says so with `@pytest.mark.logs_errors("a pattern of the message", ...)`, and each
    error logged must then match one of its patterns."""
    errors = _Errors()
    loggers = [logging.getLogger(name) for name in ("conversations", "chatsite")]
    for logger in loggers:
        logger.addHandler(errors)
    yield
    for logger in loggers:
        logger.removeHandler(errors)
    marker = request.node.get_closest_marker("logs_errors")
    expected = [re.compile(pattern) for pattern in (marker.args if marker else ())]
    unexpected = [
        record
        for record in errors.records
        if not any(pattern.search(record.getMessage()) for pattern in expected)
    ]
    if unexpected:
        logged = "\n".join(_described(record) for record in unexpected)
        pytest.fail(f"Errors were logged:\n{logged}", pytrace=False)


def _described(record):
    text = f"{record.name}: {record.getMessage()}"
    if record.exc_info:
        text += "\n" + logging.Formatter().formatException(record.exc_info)
    return text


@pytest.fixture(autouse=True)
def no_titles_unless_asked(settings):
    """A generated title is one more upstream request; tests that count requests, tokens
    or quotas would have to allow for it. The title's own test turns it back on."""
    settings.CONFAB_AUTO_TITLE = False


@pytest.fixture(scope="session")
def fake_upstream_server():
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def fake_upstream(fake_upstream_server):
    fake_upstream_server.reset()
    return fake_upstream_server


def make_user(name):
    return get_user_model().objects.create_user(name, f"{name}@example.com", "correct horse 42")


@pytest.fixture
def alice(db):
    return make_user("alice")


@pytest.fixture
def bob(db):
    return make_user("bob")


@pytest.fixture
def charlie(db):
    return make_user("charlie")


@pytest.fixture
def alice_admin(client, alice):
    """A test client signed in as alice, who administers this Confab."""
    alice.is_staff = alice.is_superuser = True
    alice.save()
    client.force_login(alice)
    return client


@pytest.fixture
def provider(db, fake_upstream):
    return Provider.objects.create(name="Fake", base_url=fake_upstream.url, api_key=API_KEY)


@pytest.fixture
def model(provider):
    model = LanguageModel.objects.create(
        provider=provider, upstream_id=DEFAULT_MODEL, display_name="Fake model"
    )
    model.prices.create(
        effective_from=timezone.now() - timedelta(days=30), input="2.00", output="8.00"
    )
    return model


def add_model(provider, upstream_id, **fields):
    return LanguageModel.objects.create(provider=provider, upstream_id=upstream_id, **fields)


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


async def open_socket(user=None, headers=()):
    from chatsite.asgi import application

    headers = [(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000"), *headers]
    if user is not None:
        cookie = await database_sync_to_async(_session_cookie)(user)
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, code = await communicator.connect()
    return Socket(communicator) if connected else code


async def refused_code(communicator):
    """The close code of a socket the server accepted only to close it."""
    closed = await communicator.receive_output()
    return closed["code"] if closed["type"] == "websocket.close" else None


@pytest.fixture
async def sockets():
    """Open sockets for users; every socket and upstream client is closed afterwards."""
    opened = []

    async def open_for(user, headers=()):
        socket = await open_socket(user, headers)
        opened.append(socket)
        return socket

    yield open_for
    for socket in opened:
        await socket.close()
    await runner.shutdown(grace_s=5)
    runner.accepting = True
    await upstream.close_clients()

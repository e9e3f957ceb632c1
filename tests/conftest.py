import logging
import re
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import urlopen

import pytest
from channels.db import database_sync_to_async
from channels.layers import DEFAULT_CHANNEL_LAYER, InMemoryChannelLayer, channel_layers
from django.core.cache import cache
from django.utils import timezone

from conversations import upstream
from conversations.generation import runner
from conversations.management.commands.serve import free_port
from conversations.models import LanguageModel, Message, Provider
from tests.fake_upstream import DEFAULT_MODEL, FakeUpstream
from tests.helpers import API_KEY, make_user, open_socket
from tests.identity_provider import IdentityProvider
from tests.mailbox import Mailbox

# The browser journeys' fixtures: server, context, page.
pytest_plugins = ["tests.browsing"]


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """A user's password hashed with MD5, not 1,000,000 rounds of PBKDF2 (0.3 s each):
    what is tested is who may do what, not the hasher."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session")
def django_db_modify_db_settings(tmp_path_factory):
    """Close connections after each use, as pytest-django's own threads never close the
    ones database_sync_to_async keeps: PostgreSQL would refuse to drop the test database.
    SQLite in a file, as it runs (WAL, transactions that wait for the write lock), not
    Django's shared in-memory test database, whose table locks fail at once."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    database["CONN_MAX_AGE"] = 0
    if database["ENGINE"] == "django.db.backends.sqlite3":
        database["TEST"]["NAME"] = str(tmp_path_factory.mktemp("db") / "confab.sqlite3")


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


@pytest.fixture(autouse=True)
def fresh_cache():
    """Counts kept in the cache (sends a minute, sign-ups an hour per address) start at
    zero in each test: every test client comes from 127.0.0.1, and Redis outlives a run."""
    cache.clear()
    yield


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


@pytest.fixture
def alice(db):
    return make_user("alice")


@pytest.fixture
def bob(db):
    return make_user("bob")


@pytest.fixture
def charlie(db):
    """Neither alice's nor bob's: the outsider."""
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


@pytest.fixture
def stream(alice, provider, sockets, fake_upstream):
    """Serve `steps` for one send from a model of their own; the stored replies, once each
    is done (`stream.events`: every event the sending socket got)."""

    async def run(steps, params=None, **model_fields):
        name = f"m-{uuid.uuid4().hex[:8]}"
        fake_upstream.script(name, steps)
        model = await database_sync_to_async(LanguageModel.objects.create)(
            provider=provider, upstream_id=name, **model_fields
        )
        socket = await sockets(alice)
        await socket.send(
            type="send",
            conversation=None,
            content="Tell me.",
            model=str(model.public_id),
            params=params or {},
            client_id=str(uuid.uuid4()),
        )
        created = await socket.receive_until("message.created")
        created += await socket.receive_until("message.created")
        replies = (params or {}).get("n", 1)
        for _ in range(replies - 1):
            created += await socket.receive_until("message.created")
        events = []
        for _ in range(replies):
            events += await socket.receive_until("message.done", timeout=30)
        run.events = events
        ids = [e["message"]["id"] for e in events if e["type"] == "message.done"]
        return await database_sync_to_async(
            lambda: sorted(Message.objects.filter(id__in=ids), key=lambda m: m.created)
        )()

    return run


@pytest.fixture(scope="session")
def mcp_server():
    """A real MCP tool server (tests/mcp_server.py: FastMCP, streamable HTTP) on loopback;
    its endpoint's URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.mcp_server", str(port)],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            urlopen(f"http://127.0.0.1:{port}/", timeout=1).close()
            break
        except HTTPError:
            break  # it answers: 404 at /
        except (URLError, OSError):
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("the MCP server did not start")
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}/mcp"
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="session")
def mailbox_server():
    server = Mailbox().start()
    yield server
    server.stop()


@pytest.fixture
def mailbox(mailbox_server, settings):
    """Django sends its e-mail to the loopback SMTP server, which keeps it."""
    mailbox_server.clear()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = mailbox_server.port
    return mailbox_server


@pytest.fixture(scope="session")
def identity_provider(tmp_path_factory):
    """A real OpenID Connect provider on loopback, with its own people."""
    provider = IdentityProvider(tmp_path_factory.mktemp("idp")).start()
    yield provider
    provider.stop()

"""Real Confab server processes on PostgreSQL and Redis, for the several-workers tests.

Each worker is `manage.py serve` as a team would run it: same DATABASE_URL, REDIS_URL and
DJANGO_SECRET_KEY, its own port, no sticky sessions.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

import psycopg
import websockets

from conversations.management.commands.serve import free_port

ROOT = Path(__file__).resolve().parent.parent
POSTGRES = "postgres://postgres@127.0.0.1:5432"
REDIS_URL = "redis://127.0.0.1:6379/3"

CREATE_SESSION = """
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
user = get_user_model().objects.create_user({name!r}, password="correct horse 42")
session = SessionStore()
session[SESSION_KEY] = str(user.pk)
session[BACKEND_SESSION_KEY] = "conversations.membership.backends.PasswordBackend"
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.create()
print(session.session_key)
"""


class Cluster:
    def __init__(self, upstream_url, tmp_path, **settings):
        self.database = f"confab_workers_{uuid.uuid4().hex[:8]}"
        self.tmp_path = tmp_path
        self.env = {
            **os.environ,
            "DATABASE_URL": f"{POSTGRES}/{self.database}",
            "REDIS_URL": REDIS_URL,
            "DJANGO_SECRET_KEY": "several-workers-test-" + uuid.uuid4().hex,
            "OPENAI_BASE_URL": upstream_url,
            "OPENAI_API_KEY": "sk-cluster-test",
            "CONFAB_AUTO_TITLE": "false",
            **{name: str(value) for name, value in settings.items()},
        }
        self.workers = {}

    def __enter__(self):
        with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{self.database}"')
        subprocess.run(["redis-cli", "-n", REDIS_URL.rsplit("/", 1)[1], "flushdb"], check=True,
                       capture_output=True)  # fmt: skip
        self.manage("migrate", "--noinput", "-v0")
        return self

    def __exit__(self, *exc):
        for name in list(self.workers):
            self.kill(name)
        with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def manage(self, *args):
        return subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            env={**self.env, "CONFAB_VAR_DIR": str(self.tmp_path / "manage")},
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def start(self, name, *serve_options):
        port = free_port()
        serve = [sys.executable, str(ROOT / "manage.py"), "serve", "--port", str(port)]
        with (self.tmp_path / f"{name}.log").open("a") as log:
            process = subprocess.Popen(
                [*serve, *serve_options],
                env={**self.env, "CONFAB_VAR_DIR": str(self.tmp_path / name)},
                cwd=ROOT,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=1).close()
                break
            except (URLError, OSError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((self.tmp_path / f"{name}.log").read_text()) from None
                time.sleep(0.1)
        self.workers[name] = (process, port)
        return port

    def kill(self, name, sig=signal.SIGKILL, wait=True):
        process, _ = self.workers.pop(name)
        process.send_signal(sig)
        if wait:
            process.wait(30)
        return process

    def session_for(self, username):
        output = self.manage("shell", "-c", CREATE_SESSION.format(name=username))
        return output.strip().splitlines()[-1]

    def query(self, sql, *params):
        with psycopg.connect(self.env["DATABASE_URL"]) as db:
            return db.execute(sql, params).fetchall()

    def model_id(self, upstream_id):
        [(public_id,)] = self.query(
            "SELECT public_id FROM conversations_languagemodel WHERE upstream_id = %s",
            upstream_id,
        )
        return str(public_id)

    @asynccontextmanager
    async def tab(self, worker, session):
        _, port = self.workers[worker]
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/ws/chat/",
            additional_headers={"Cookie": f"sessionid={session}"},
            origin=f"http://127.0.0.1:{port}",
            max_queue=None,  # read everything, as a browser does; a full queue stalls close()
        ) as connection:
            yield Tab(connection)


class Tab:
    """A browser tab's socket that rebuilds replies the way static/confab/messages.js does."""

    def __init__(self, connection):
        self.connection = connection
        self.text = {}  # message id -> text shown
        self.seq = {}  # message id -> last frame shown; absent: waiting for a live snapshot
        self.events = []

    async def send(self, **event):
        await self.connection.send(json.dumps(event))

    async def receive(self, timeout=10):
        event = json.loads(await asyncio.wait_for(self.connection.recv(), timeout))
        self.events.append(event)
        self._apply(event)
        return event

    async def receive_until(self, predicate, timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            event = await self.receive(max(0.1, deadline - time.monotonic()))
            if predicate(event):
                return event

    async def until_done(self, message_id, timeout=20):
        return await self.receive_until(
            lambda e: e["type"] == "message.done" and e["message"]["id"] == message_id, timeout
        )

    def _apply(self, event):
        kind = event["type"]
        if kind == "message.created" and event["message"]["status"] == "streaming":
            self.text.setdefault(event["message"]["id"], "")
            self.seq.setdefault(event["message"]["id"], 0)
        elif kind == "message.snapshot":
            message_id = event["message"]["id"]
            if event.get("checkpoint"):
                if self.seq.get(message_id, 0) == 0:
                    self.text[message_id] = event["message"]["content"]
                    self.seq.pop(message_id, None)
            elif event["seq"] >= self.seq.get(message_id, -1):
                self.text[message_id] = event["message"]["content"]
                self.seq[message_id] = event["seq"]
        elif kind == "message.delta":
            shown = self.seq.get(event["message"])
            if shown is None or event["seq"] <= shown:
                return
            assert event["seq"] == shown + 1, f"a frame went missing: {shown} → {event['seq']}"
            self.seq[event["message"]] = event["seq"]
            self.text[event["message"]] += event.get("content", "")

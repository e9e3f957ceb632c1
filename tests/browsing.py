"""The browser journeys' fixtures: Confab as `make run` starts it, and Debian's chromium
driven by Playwright (the steps every journey takes are in tests.helpers)."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

import pytest
from playwright.sync_api import sync_playwright

from conversations.management.commands.serve import free_port
from tests.fake_upstream import reply
from tests.helpers import API_KEY, JOURNEY_PARTS

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


XSS = [
    "<script>alert('script')</script>",
    '<img src="http://127.0.0.1:9/x.png" onerror="alert(\'img\')">',
    "[click me](javascript:alert('link'))",
    "<iframe src=\"javascript:alert('iframe')\"></iframe>",
    '<svg onload="alert(\'svg\')"><circle r="5"/></svg>',
    "![pic](http://127.0.0.1:9/tracker.png)",
    "```html\n<script>alert('fenced')</script>\n```",
    '<a href="http://127.0.0.1:9/" onclick="alert(\'a\')">a link</a>',
]


@pytest.fixture
def server_env():
    """More environment for the journeys' server: a test module overrides this fixture
    (its mail server, its identity provider)."""
    return {}


@pytest.fixture
def start_server(tmp_path):
    """Start Confab as `make run` does, on a fresh SQLite database, with `env` over the
    tests' environment (a value None: unset); its URL once the sign-up page answers. Each
    server is stopped afterwards, and its log must hold no traceback and no API key."""
    started = []

    def start(env, *, wait_s=30):
        port = free_port()
        full = {**os.environ, "CONFAB_VAR_DIR": str(tmp_path), **env}
        for name in ("DATABASE_URL", "REDIS_URL", *(k for k, v in env.items() if v is None)):
            full.pop(name, None)
        manage = [sys.executable, str(ROOT / "manage.py")]
        subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=full, check=True, cwd=ROOT)
        log_path = tmp_path / f"server-{len(started)}.log"
        log = log_path.open("w")
        process = subprocess.Popen(
            [*manage, "serve", "--port", str(port)], env=full, cwd=ROOT, stdout=log, stderr=log
        )
        started.append((process, log, log_path))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + wait_s
        while True:
            try:
                urlopen(url + "/accounts/signup/", timeout=1).close()
                break
            except (URLError, OSError):
                if time.monotonic() > deadline or process.poll() is not None:
                    process.kill()
                    pytest.fail("the server did not start: " + log_path.read_text())
                time.sleep(0.2)
        start.log = log_path
        return url

    yield start
    for process, log, log_path in started:
        process.terminate()
        process.wait(15)
        log.close()
        logged = log_path.read_text()
        assert API_KEY not in logged
        assert "Traceback" not in logged, logged


@pytest.fixture
def server(start_server, fake_upstream, server_env):
    """Confab as `make run` starts it, on a fresh SQLite database, using the fake upstream."""
    fake_upstream.script("slow-model", reply(JOURNEY_PARTS, delay=0.1, usage=(20, 50)))
    fake_upstream.script("hostile-model", reply([f"{line}\n\n" for line in XSS], delay=0.05))
    return start_server(
        {
            "OPENAI_BASE_URL": fake_upstream.url,
            "OPENAI_API_KEY": API_KEY,
            "CONFAB_AUTO_TITLE": "false",  # the journeys count tokens and name conversations
            **server_env,
        }
    )


class ConsoleErrors(list):
    """What the pages of watched browser contexts logged as errors, or threw, but for what
    a journey expects (`allow`: a pattern of the message)."""

    def __init__(self):
        super().__init__()
        self.allowed = []

    def allow(self, pattern):
        self.allowed.append(re.compile(pattern))

    def watch(self, context):
        context.on("console", self._console)
        context.on("weberror", lambda error: self.append(f"uncaught: {error.error}"))
        return context

    def _console(self, message):
        if message.type == "error" and not any(p.search(message.text) for p in self.allowed):
            self.append(f"{message.location.get('url')}: {message.text}")


@pytest.fixture
def console_errors():
    return ConsoleErrors()


@pytest.fixture
def context(console_errors):
    """One browser profile: its tabs share the signed-in session. The journey fails on any
    console error or uncaught exception, in this profile or another it opens."""
    errors = console_errors
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        new_context = browser.new_context
        browser.new_context = lambda **options: errors.watch(new_context(**options))
        context = browser.new_context()
        yield context
        context.close()
        browser.close()
    assert errors == [], "the browser console shows errors"


@pytest.fixture
def page(context):
    return context.new_page()

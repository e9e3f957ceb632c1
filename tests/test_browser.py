"""A whole journey in Debian's chromium, driven by Playwright, against `manage.py serve`."""

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

import pytest
from playwright.sync_api import expect, sync_playwright

from conversations.management.commands.serve import free_port
from tests.conftest import API_KEY
from tests.fake_upstream import reply

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SLOW_PARTS = [f"word{i} " for i in range(50)]


@pytest.fixture
def server(tmp_path, fake_upstream):
    """Confab as `make run` starts it, on a fresh SQLite database, using the fake upstream."""
    fake_upstream.script("slow-model", reply(SLOW_PARTS, delay=0.1, usage=(20, 50)))
    port = free_port()
    env = {
        **os.environ,
        "CONFAB_VAR_DIR": str(tmp_path),
        "OPENAI_BASE_URL": fake_upstream.url,
        "OPENAI_API_KEY": API_KEY,
    }
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, check=True, cwd=ROOT)
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [*manage, "serve", "--port", str(port)], env=env, cwd=ROOT, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urlopen(url + "/accounts/login/", timeout=1).close()
            break
        except (URLError, OSError):
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("the server did not start: " + (tmp_path / "server.log").read_text())
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(15)
    log.close()
    assert API_KEY not in (tmp_path / "server.log").read_text()


@pytest.fixture
def page():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context()
        yield context.new_page()
        context.close()
        browser.close()


def test_a_first_user_signs_up_chats_reloads_mid_reply_and_finds_the_reply_saved(server, page):
    page.goto(server + "/accounts/signup/")
    expect(page.get_by_text("this account will be the administrator")).to_be_visible()
    page.get_by_label("Username").fill("alice")
    page.locator("#id_password1").fill("correct horse 42")
    page.locator("#id_password2").fill("correct horse 42")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("link", name="Admin")).to_be_visible()

    page.get_by_label("Model").select_option(label="slow-model")
    composer = page.get_by_label("Message")
    composer.fill("Count for me")
    composer.press("Enter")

    streaming = page.locator('article.role-assistant[data-status="streaming"]')
    expect(streaming.locator(".message-body")).to_contain_text("word2")
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    assert "word49" not in streaming.inner_text()  # text arrived before the reply finished
    expect(page).to_have_url(f"{server}/c/" + page.url.split("/c/")[1])
    expect(page.get_by_role("navigation", name="Conversations")).to_contain_text("Count for me")

    page.reload()

    expect(page.locator('article.role-assistant[data-status="streaming"]')).to_have_count(1)
    done = page.locator('article.role-assistant[data-status="complete"]')
    expect(done).to_have_count(1, timeout=15_000)
    expect(done.locator(".message-body")).to_have_text("".join(SLOW_PARTS).strip())
    expect(done.locator(".usage")).to_have_text("20 + 50 = 70 tokens")
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()

    page.reload()
    expect(page.locator("article.role-assistant .message-body")).to_have_text(
        "".join(SLOW_PARTS).strip()
    )
    expect(page.locator("article.role-user .message-body")).to_have_text("Count for me")

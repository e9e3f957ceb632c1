"""Regenerate the screenshots of docs/administration.md (docs/screenshots/admin-*.png).

Run from the project root, after `make test` has installed everything:

    .venv/bin/python docs/screenshots/make_admin_screenshots.py

It starts Confab on a fresh SQLite database in a temporary directory, with a fake
OpenAI-compatible upstream on loopback (tests/fake_upstream.py), then drives Debian's
chromium with Playwright through what an administrator does: sign up first, open sign-up,
test and sync the provider, set up and price models, chat, add a group and quotas, and
read the ledger. Every process it starts is stopped at the end, even on failure.
"""

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # tests.fake_upstream and tests.mcp_server, for every script
OUT = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1280, "height": 800}
DUMMY_KEY = "sk-dummy-for-screenshots-7f3a"
PASSWORD = "correct horse 42"
MAX_BYTES = 250_000

# Canned answers, chosen by a word of the user's last message.
ANSWERS = {
    "handbook": "Here is the short version:\n\n- **Page the primary first**, then the "
    "secondary after 15 minutes.\n- **Write down every action** in the incident channel "
    "as you take it.\n- **Hand over in writing** at the end of each shift.",
    "shorter": "- **Log every action** in the incident channel.",
    "freeze": "Hi all! A friendly reminder that the **release freeze starts on Friday at "
    "12:00**. Please merge anything you need for this release before then. Thanks!",
    "429": "HTTP **429 Too Many Requests** means you sent more requests than the server "
    "allows in a period. The `Retry-After` header, when present, says when to try again.",
    "back off": "Wait before each retry, doubling the wait each time (exponential "
    "backoff), add a little random jitter, and honour `Retry-After` when the server sends it.",
}
ESSAY = [f"Paragraph {i} of a very long essay about release trains. " for i in range(200)]


def answer_for(usage):
    """A fake model's script: a canned answer by keyword; an essay streams slowly."""
    from tests.fake_upstream import reply

    def script(body):
        last = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
        if "essay" in last:
            return reply(ESSAY, delay=0.05, usage=usage)
        text = next((a for k, a in ANSWERS.items() if k in last.lower()), "Sure, happy to help.")
        words = text.split(" ")
        return reply([w if i == 0 else " " + w for i, w in enumerate(words)], delay=0.01,
                     usage=usage)  # fmt: skip

    return script


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url, process, log_path, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        try:
            urlopen(url, timeout=1).close()
            return
        except (URLError, OSError):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("Confab did not start:\n" + log_path.read_text()) from None
            time.sleep(0.2)


def stop(process):
    """Terminate a process we started, killed if it will not end; None passes."""
    if process is None:
        return
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class Site:
    base: str  # Confab's address
    browser: object  # Debian's chromium, through Playwright
    var: Path  # the site's CONFAB_VAR_DIR, a temporary directory
    fake: object  # the fake upstream (tests.fake_upstream.FakeUpstream)


@contextlib.contextmanager
def fresh_site(scripts, **settings):
    """A fresh Confab for a script's screenshots: SQLite in a temporary var/, a fake upstream
    on loopback whose models answer with `scripts` (model → script), `manage.py serve` on a
    free port with `settings` in its environment, and chromium. All of it stopped after."""
    from playwright.sync_api import sync_playwright

    from tests.fake_upstream import FakeUpstream

    with tempfile.TemporaryDirectory(prefix="confab-screenshots-") as tmp:
        env = {**os.environ, "CONFAB_VAR_DIR": tmp, "OPENAI_API_KEY": DUMMY_KEY, **settings}
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        manage = [sys.executable, str(ROOT / "manage.py")]
        subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, check=True, cwd=ROOT)
        fake = FakeUpstream().start()
        server = None
        try:
            for model, script in scripts.items():
                fake.script(model, script)
            env["OPENAI_BASE_URL"] = fake.url
            port = free_port()
            log_path = Path(tmp) / "server.log"
            with log_path.open("w") as log:
                server = subprocess.Popen([*manage, "serve", "--port", str(port)], env=env,
                                          cwd=ROOT, stdout=log, stderr=log)  # fmt: skip
            base = f"http://127.0.0.1:{port}"
            wait_for(base + "/accounts/login/", server, log_path)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    yield Site(base, browser, Path(tmp), fake)
                finally:
                    browser.close()
        finally:
            stop(server)
            fake.stop()


def shot(page, name, *, full_page=False, clip=None, element=None):
    path = OUT / f"admin-{name}.png"
    if element is not None:
        element.screenshot(path=path)
    else:
        page.screenshot(path=path, full_page=full_page, clip=clip)
    size = path.stat().st_size
    print(f"{path.relative_to(ROOT)}: {size // 1000} KB")
    if size > MAX_BYTES:
        print(f"  warning: {path.name} is larger than {MAX_BYTES // 1000} KB")


def wide_shot(page, name, width, height):
    """A shot of a page whose table is wider than the usual viewport."""
    page.set_viewport_size({"width": width, "height": height})
    try:
        shot(page, name)
    finally:
        page.set_viewport_size(VIEWPORT)


def submit(page, button):
    """Click a button that posts a form, and wait for the page it leads to."""
    with page.expect_navigation():
        button.click()


def save(page, name="Save and continue editing"):
    submit(page, page.get_by_role("button", name=name, exact=True))


def run_action(page, row_text, action):
    """Tick one changelist row and run an admin action on it."""
    row = page.locator("#result_list tbody tr", has_text=row_text).first
    row.locator("input[name=_selected_action]").check()
    page.locator("select[name=action]").select_option(action)
    submit(page, page.get_by_role("button", name="Go"))


def fill_price(page, row, day, prices):
    """Fill row `row` of a model's Prices table: from `day` at midnight, per million tokens."""
    page.locator(f"#id_prices-{row}-effective_from_0").fill(day)
    page.locator(f"#id_prices-{row}-effective_from_1").fill("00:00:00")
    for field, value in zip(["input", "cached_input", "output"], prices, strict=True):
        page.locator(f"#id_prices-{row}-{field}").fill(value)


def send(page, text, model):
    """Send a message from the chat page and wait for its reply to finish."""
    done = page.locator('article.role-assistant[data-status="complete"]')
    before = done.count()
    page.locator("#model-picker").select_option(label=model)
    page.get_by_label("Message").fill(text)
    page.get_by_label("Message").press("Enter")
    done.nth(before).wait_for(timeout=20_000)


def sign_up(page, base, username):
    page.goto(base + "/accounts/signup/")
    page.locator("#id_username").fill(username)
    page.locator("#id_password1").fill(PASSWORD)
    page.locator("#id_password2").fill(PASSWORD)
    submit(page, page.get_by_role("button", name="Sign up"))


def journey(browser, base, fake):
    admin_context = browser.new_context(viewport=VIEWPORT, locale="en-US", color_scheme="light")
    page = admin_context.new_page()
    sign_up(page, base, "maria")  # the first account: the administrator

    # Site settings: open sign-up (the list goes straight to its one row).
    page.goto(base + "/admin/conversations/sitesettings/")
    page.get_by_label("anyone may sign up").check()
    save(page)
    shot(page, "site-settings", clip={"x": 0, "y": 0, "width": 1280, "height": 420})

    # The provider `manage.py serve` made from OPENAI_BASE_URL: headers and a timeout.
    page.goto(base + "/admin/conversations/provider/")
    submit(page, page.get_by_role("link", name="Default"))
    page.locator("#id_extra_headers").fill('{"X-Title": "Confab"}')
    page.locator("#id_first_byte_timeout_s").fill("300")
    save(page)
    shot(page, "provider", clip={"x": 0, "y": 0, "width": 1280, "height": 800})

    # The provider now lists one more model: test, then sync.
    fake.script("gpt-4.1", answer_for((900, 300)))
    page.goto(base + "/admin/conversations/provider/")
    run_action(page, "Default", "test_connection")
    shot(page, "providers", clip={"x": 0, "y": 0, "width": 1280, "height": 420})
    run_action(page, "Default", "sync_models")

    # Models: hide the fake's echo model, then name, limit and price the two we use.
    page.goto(base + "/admin/conversations/languagemodel/")
    # From here on, the admin's navigation sidebar is folded away: wide tables fit.
    page.locator("#toggle-nav-sidebar").click()
    page.locator("#result_list tbody tr", has_text="fake-model").locator(
        "input[name$='-enabled']"
    ).uncheck()
    submit(page, page.locator("input[name=_save]"))
    a_month_ago = (date.today() - timedelta(days=30)).isoformat()
    for upstream_id, name, max_output, defaults, price in [
        ("gpt-4o-mini", "GPT-4o mini", "1024", '{"temperature": 0.7}', ("0.15", "0.075", "0.6")),
        ("gpt-4o", "GPT-4o", "4096", "{}", ("2.5", "1.25", "10")),
    ]:
        page.goto(base + "/admin/conversations/languagemodel/")
        submit(page, page.get_by_role("link", name=upstream_id, exact=True))
        page.locator("#id_display_name").fill(name)
        page.locator("#id_max_output_tokens").fill(max_output)
        page.locator("#id_default_params").fill(defaults)
        fill_price(page, 0, a_month_ago, price)
        save(page)

    # The administrator chats on two models; one long reply is stopped half-way.
    page.goto(base + "/")
    send(page, "Summarise our on-call handbook in three bullet points.", "GPT-4o mini")
    send(page, "Make the second point shorter.", "GPT-4o mini")
    submit(page, page.get_by_role("link", name="New chat"))
    send(page, "Draft a friendly reminder about Friday's release freeze.", "GPT-4o")
    submit(page, page.get_by_role("link", name="New chat"))
    page.locator("#model-picker").select_option(label="GPT-4o")
    page.get_by_label("Message").fill("Write a long essay on the history of release trains.")
    page.get_by_label("Message").press("Enter")
    streaming = page.locator('article.role-assistant[data-status="streaming"] .message-body')
    streaming.filter(has_text="Paragraph 5").wait_for(timeout=20_000)
    page.get_by_role("button", name="Stop").click()
    page.locator('article.role-assistant[data-status="cancelled"]').wait_for()

    # A second person signs up (sign-up is open) and chats.
    bob_context = browser.new_context(viewport=VIEWPORT, locale="en-US", color_scheme="light")
    bob = bob_context.new_page()
    sign_up(bob, base, "bob")
    send(bob, "What does HTTP 429 mean?", "GPT-4o mini")
    send(bob, "How should a client back off?", "GPT-4o mini")

    # A group with a monthly quota for each member; bob joins it and gets his own quota.
    page.goto(base + "/admin/auth/group/add/")
    page.locator("#id_name").fill("Interns")
    save(page, "Save")
    page.goto(base + "/admin/conversations/quota/add/")
    page.locator("#id_group").select_option(label="Interns")
    page.locator("#id_period").select_option("month")
    page.locator("#id_max_tokens").fill("200000")
    page.locator("#id_max_cost").fill("5")
    save(page, "Save")

    page.goto(base + "/admin/auth/user/")
    submit(page, page.get_by_role("link", name="bob", exact=True))
    page.locator("#id_groups_from").select_option(label="Interns")
    page.locator("#id_groups_add").click()
    page.locator("#quotas-group .add-row a").click()
    page.locator("#id_quotas-0-period").select_option("week")
    page.locator("#id_quotas-0-max_tokens").fill("4000")
    page.locator("#id_quotas-0-max_cost").fill("0.5")
    page.locator("#id_quotas-0-max_concurrent").fill("2")
    save(page)
    page.locator("#quotas-group").scroll_into_view_if_needed()
    shot(page, "user-quota", element=page.locator("#quotas-group"))

    # Bob's next message would take him past his quota: refused, with the reason.
    bob.locator("#model-picker").select_option(label="GPT-4o mini")
    bob.get_by_label("Message").fill("And what does 503 mean?")
    bob.get_by_label("Message").press("Enter")
    bob.locator("#composer-error").wait_for()
    shot(bob, "quota-refused")
    bob.goto(base + "/usage/")
    shot(bob, "my-usage", clip={"x": 0, "y": 0, "width": 1280, "height": 800})

    # A price change from the first of next month: replies made before it keep their cost.
    next_month = (date.today().replace(day=1) + timedelta(days=32)).replace(day=1)
    page.goto(base + "/admin/conversations/languagemodel/")
    submit(page, page.get_by_role("link", name="GPT-4o mini", exact=True))
    fill_price(page, 1, next_month.isoformat(), ("0.2", "0.1", "0.8"))
    save(page)
    shot(page, "model", full_page=True)

    page.goto(base + "/admin/conversations/languagemodel/")
    shot(page, "models", clip={"x": 0, "y": 0, "width": 1280, "height": 460})

    # Bob was refused: grant him one more period's allowance.
    page.goto(base + "/admin/conversations/quota/")
    run_action(page, "bob per week", "grant_another_period")
    wide_shot(page, "quotas", 1440, 460)

    page.goto(base + "/admin/conversations/usagerecord/")
    wide_shot(page, "usage-records", 1600, 560)

    page.goto(base + "/admin/conversations/usagerecord/dashboard/")
    shot(page, "dashboard", full_page=True)

    bob_context.close()
    admin_context.close()


def main():
    scripts = {"gpt-4o-mini": answer_for((1180, 470)), "gpt-4o": answer_for((2400, 900))}
    with fresh_site(scripts) as site:
        journey(site.browser, site.base, site.fake)


if __name__ == "__main__":
    main()

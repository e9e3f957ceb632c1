"""The chat page for the README: desktop light, desktop dark and a phone; and the page of
a shared conversation.

Run from the repository root: `.venv/bin/python docs/screenshots/make_chat_screenshots.py`
(or `make screenshots`). It starts its own fake upstream and server on a fresh database,
like make_admin_screenshots.py, whose helpers it uses.
"""

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("admin_shots", HERE / "make_admin_screenshots.py")
shots = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(shots)

ANSWER = [
    "Here is a function that adds up a list, skipping missing values:\n\n",
    "```python\ndef total(values):\n    return sum(v for v in values if v is not None)\n```\n\n",
    "| input | total |\n| --- | ---: |\n| `[1, 2, None]` | 3 |\n| `[]` | 0 |\n\n",
    "It returns **0** for an empty list, as `sum` does.",
]


def signed_in(browser, viewport, scheme):
    context = browser.new_context(viewport=viewport, color_scheme=scheme)
    page = context.new_page()
    page.goto(BASE + "/accounts/login/")
    page.get_by_label("Username").fill("maria")
    page.get_by_label("Password").fill(shots.PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    return page


def screenshot(page, name):
    path = shots.OUT / f"{name}.png"
    page.screenshot(path=str(path))
    print("wrote", path)


def journey(browser):
    from tests.fake_upstream import reply  # noqa: F401  (scripts are set up in main)

    for name, scheme, viewport in [
        ("chat-light", "light", shots.VIEWPORT),
        ("chat-dark", "dark", shots.VIEWPORT),
        ("chat-mobile", "light", {"width": 390, "height": 844}),
    ]:
        page = signed_in(browser, viewport, scheme)
        page.goto(CONVERSATION)
        page.locator('article.role-assistant[data-status="complete"]').first.wait_for()
        screenshot(page, name)
        page.context.close()

    # The conversation shared with anyone, as a visitor who is not signed in reads it.
    page = signed_in(browser, shots.VIEWPORT, "light")
    page.goto(CONVERSATION + "share/")
    page.get_by_label("Anyone with the link").check()
    page.get_by_role("button", name="Create the link").click()
    link = page.get_by_label("Your link").input_value()
    page.context.close()
    visitor = browser.new_context(viewport=shots.VIEWPORT, color_scheme="light").new_page()
    visitor.goto(link)
    visitor.locator("#share-messages article").first.wait_for()
    screenshot(visitor, "chat-shared")
    visitor.context.close()


def main():
    global BASE, CONVERSATION
    sys.path.insert(0, str(shots.ROOT))
    from playwright.sync_api import sync_playwright

    from tests.fake_upstream import FakeUpstream, reply

    with tempfile.TemporaryDirectory(prefix="confab-screenshots-") as tmp:
        env = {**os.environ, "CONFAB_VAR_DIR": tmp, "OPENAI_API_KEY": shots.DUMMY_KEY,
               "CONFAB_AUTO_TITLE": "false"}  # fmt: skip
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        manage = [sys.executable, str(shots.ROOT / "manage.py")]
        subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, check=True,
                       cwd=shots.ROOT)  # fmt: skip
        fake = FakeUpstream().start()
        server = None
        log_path = Path(tmp) / "server.log"
        try:
            fake.script("gpt-4o-mini", reply(ANSWER, delay=0.01, usage=(64, 96)))
            env["OPENAI_BASE_URL"] = fake.url
            port = shots.free_port()
            BASE = f"http://127.0.0.1:{port}"
            with log_path.open("w") as log:
                server = subprocess.Popen([*manage, "serve", "--port", str(port)], env=env,
                                          cwd=shots.ROOT, stdout=log, stderr=log)  # fmt: skip
            shots.wait_for(BASE + "/accounts/login/", server, log_path)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=shots.CHROMIUM, args=shots.CHROMIUM_ARGS
                )
                try:
                    page = browser.new_page(viewport=shots.VIEWPORT)
                    shots.sign_up(page, BASE, "maria")
                    for question in ["How do I add up a list in Python, skipping None?",
                                     "用中文解释一下这个函数。"]:  # fmt: skip
                        shots.send(page, question, "gpt-4o-mini")
                    CONVERSATION = page.url
                    page.close()
                    journey(browser)
                finally:
                    browser.close()
        finally:
            if server is not None:
                server.terminate()
                server.wait(20)
            fake.stop()


BASE = CONVERSATION = ""

if __name__ == "__main__":
    main()

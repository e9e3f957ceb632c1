"""The chat page for the README: desktop light, desktop dark and a phone; and the page of
a shared conversation.

Run from the repository root: `.venv/bin/python docs/screenshots/make_chat_screenshots.py`
(or `make screenshots`). It starts its own fake upstream and server on a fresh database,
like make_admin_screenshots.py, whose helpers it uses.
"""

import importlib.util
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
    from tests.fake_upstream import reply

    scripts = {"gpt-4o-mini": reply(ANSWER, delay=0.01, usage=(64, 96))}
    with shots.fresh_site(scripts, CONFAB_AUTO_TITLE="false") as site:
        BASE = site.base
        page = site.browser.new_page(viewport=shots.VIEWPORT)
        shots.sign_up(page, BASE, "maria")
        for question in ["How do I add up a list in Python, skipping None?",
                         "用中文解释一下这个函数。"]:  # fmt: skip
            shots.send(page, question, "gpt-4o-mini")
        CONVERSATION = page.url
        page.close()
        journey(site.browser)


BASE = CONVERSATION = ""

if __name__ == "__main__":
    main()

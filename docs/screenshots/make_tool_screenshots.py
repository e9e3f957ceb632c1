"""Regenerate the screenshots of the Tools sections of docs/administration.md and
docs/using.md (docs/screenshots/tools-*.png).

Run from the project root, after `make test` has installed everything:

    .venv/bin/python docs/screenshots/make_tool_screenshots.py

It starts Confab on a fresh SQLite database in a temporary directory, with a fake
OpenAI-compatible upstream (tests/fake_upstream.py) and the tests' MCP tool server
(tests/mcp_server.py, "atlas") on loopback, like make_admin_screenshots.py, whose helpers
it uses. It then drives Debian's chromium with Playwright: the administrator registers
the tool server and turns the calculator on (asking first), asks a question the model
answers with both tools, approves the calculator's call, and opens the conversation's
Tools settings. Every process it starts is stopped at the end, even on failure.
"""

import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import urlopen

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("admin_shots", HERE / "make_admin_screenshots.py")
shots = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(shots)

MODEL = "gpt-4o"
QUESTION = "How long is 17.5 km at 4.2 km/h, and what is the capital of Mongolia?"
ANSWER = [
    "At 4.2 km/h, **17.5 km takes about 4.17 hours**, that is 4 hours and 10 minutes.\n\n",
    "The capital of Mongolia is **Ulaanbaatar**.",
]


def model_script():
    """The fake model's turn: it calls the calculator and the atlas's lookup, then answers
    with their results."""
    from tests.fake_upstream import agent, calls, reply

    return agent(
        calls(
            ("calculator", {"expression": "round(17.5 / 4.2, 2)"}),
            ("atlas__lookup_capital", {"country": "Mongolia"}),
            usage=(412, 46),
        ),
        reply(ANSWER, delay=0.2, usage=(538, 41)),
    )


def shot(page, name, *, clip=None, element=None, margin=12):
    path = shots.OUT / f"tools-{name}.png"
    if element is not None:  # with a margin of the page around it
        box = element.bounding_box()
        x, y = max(box["x"] - margin, 0), max(box["y"] - margin, 0)
        clip = {"x": x, "y": y, "width": box["width"] + 2 * margin,
                "height": box["height"] + 2 * margin}  # fmt: skip
    page.screenshot(path=path, clip=clip)
    size = path.stat().st_size
    print(f"{path.relative_to(shots.ROOT)}: {size // 1000} KB")
    if size > shots.MAX_BYTES:
        print(f"  warning: {path.name} is larger than {shots.MAX_BYTES // 1000} KB")


def start_mcp_server(tmp):
    """tests/mcp_server.py on a free port; the process and its endpoint's URL."""
    port = shots.free_port()
    log_path = Path(tmp) / "mcp.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "tests.mcp_server", str(port)],
                                   cwd=shots.ROOT, stdout=log, stderr=log)  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            urlopen(f"http://127.0.0.1:{port}/", timeout=1).close()
            break
        except HTTPError:
            break  # it answers: 404 at /
        except (URLError, OSError):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                log = log_path.read_text()
                raise RuntimeError("The MCP server did not start:\n" + log) from None
            time.sleep(0.2)
    return process, f"http://127.0.0.1:{port}/mcp"


def journey(browser, base, mcp_url):
    from tests.mcp_server import TOKEN

    context = browser.new_context(viewport=shots.VIEWPORT, locale="en-US", color_scheme="light")
    page = context.new_page()
    shots.sign_up(page, base, "maria")  # the first account: the administrator

    # The MCP server, with its token as a header; one tool never runs, one asks first.
    page.goto(base + "/admin/conversations/toolserver/add/")
    page.locator("#id_name").fill("atlas")
    page.locator("#id_url").fill(mcp_url)
    page.locator("#id_header_lines").fill(f"Authorization: Bearer {TOKEN}")
    page.locator("#id_tool_approvals").fill('{"explode": "off", "slow": "ask"}')
    shots.save(page)
    page.locator("#toggle-nav-sidebar").click()  # folded away: the form gets the width
    # The whole page, its tools at the bottom, in a viewport as tall as it is.
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": 1280, "height": height})
    try:
        shot(page, "admin-server")
    finally:
        page.set_viewport_size(shots.VIEWPORT)

    # The built-in tools: the calculator asks first, the clock runs at once.
    page.goto(base + "/admin/conversations/builtintool/")
    for label, approval in [("calculator", "ask"), ("current date and time", "auto")]:
        row = page.locator("#result_list tbody tr", has_text=label)
        row.locator("input[name$='-enabled']").check()
        row.locator("select[name$='-approval']").select_option(approval)
    shots.submit(page, page.locator("input[name=_save]"))
    shot(page, "admin-builtins", clip={"x": 0, "y": 0, "width": 1280, "height": 420})

    # A question for both tools: the lookup runs at once, the calculator waits.
    page.goto(base + "/")
    page.locator("#model-picker").select_option(label=MODEL)
    page.get_by_label("Message").fill(QUESTION)
    page.get_by_label("Message").press("Enter")
    tool = 'article.role-tool[aria-label="Tool {}"]'
    page.locator(tool.format("atlas__lookup_capital") + '[data-status="complete"]').wait_for(
        timeout=20_000
    )
    waiting = page.locator(tool.format("calculator") + '[data-approval="pending"]')
    waiting.wait_for(timeout=20_000)
    shot(page, "approval")

    # "Always allow in this conversation": it runs, then the model answers.
    waiting.get_by_role("button", name="Always allow in this conversation").click()
    answer = page.locator('article.role-assistant[data-status="complete"] .turn-usage')
    answer.wait_for(timeout=20_000)
    page.set_viewport_size({"width": 1280, "height": 960})
    try:
        page.locator("#messages article").last.scroll_into_view_if_needed()
        shot(page, "turn")
    finally:
        page.set_viewport_size(shots.VIEWPORT)

    # The conversation's Tools settings: two of atlas's tools switched off here.
    conversation = page.url.rstrip("/")
    page.goto(conversation + "/settings/")
    form = page.locator("form.tools-form")
    for name in ("rendezvous (atlas)", "whoami (atlas)"):
        form.get_by_label(name, exact=False).uncheck()
    shots.submit(page, form.get_by_role("button", name="Save tools"))
    page.goto(conversation + "/settings/")
    form.scroll_into_view_if_needed()
    shot(page, "settings", element=form)
    context.close()


def main():
    with shots.fresh_site({MODEL: model_script()}, CONFAB_AUTO_TITLE="false") as site:
        mcp, mcp_url = start_mcp_server(site.var)
        try:
            journey(site.browser, site.base, mcp_url)
        finally:
            shots.stop(mcp)


if __name__ == "__main__":
    main()

"""Regenerate the screenshots of the Projects and files sections of docs/using.md and
docs/administration.md (docs/screenshots/files-*.png).

Run from the project root, after `make test` has installed everything:

    .venv/bin/python docs/screenshots/make_file_screenshots.py

It starts Confab on a fresh SQLite database in a temporary directory, with a fake
OpenAI-compatible upstream (tests/fake_upstream.py) on loopback, like
make_admin_screenshots.py, whose helpers it uses. It then drives Debian's chromium with
Playwright: a project with instructions, a 100-page PDF added to it (made by
tests/documents.py), a question the model answers by searching the PDF, and the cited
passage opened. Every process it starts is stopped at the end, even on failure.
"""

import importlib.util
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("admin_shots", HERE / "make_admin_screenshots.py")
shots = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(shots)

MODEL = "gpt-4o"
QUESTION = "How many storms does the keeper's ledger record, and over which years?"
INSTRUCTIONS = "You are the harbour's archivist. Answer from the archive's files and cite the page."


def model_script():
    from tests.fake_upstream import agent, calls, reply

    return agent(
        calls(("search_files", {"query": "lighthouse keeper ledger storms"}), usage=(612, 24)),
        reply(
            ["The keeper's ledger records **4,212 storms** ", "between 1890 and 1935 [1]."],
            delay=0.2,
            usage=(1830, 22),
        ),
    )


def shot(page, name, *, element=None, margin=12):
    path = shots.OUT / f"files-{name}.png"
    clip = None
    if element is not None:
        box = element.bounding_box()
        x, y = max(box["x"] - margin, 0), max(box["y"] - margin, 0)
        clip = {"x": x, "y": y, "width": box["width"] + 2 * margin,
                "height": box["height"] + 2 * margin}  # fmt: skip
    page.screenshot(path=path, clip=clip)
    size = path.stat().st_size
    print(f"{path.relative_to(shots.ROOT)}: {size // 1000} KB")
    if size > shots.MAX_BYTES:
        print(f"  warning: {path.name} is larger than {shots.MAX_BYTES // 1000} KB")


def journey(browser, base, tmp):
    from tests.documents import long_report

    context = browser.new_context(viewport=shots.VIEWPORT, locale="en-US", color_scheme="light")
    page = context.new_page()
    shots.sign_up(page, base, "maria")

    page.goto(base + "/p/new/")
    page.get_by_label("Name").fill("Harbour archive")
    page.get_by_label("Instructions").fill(INSTRUCTIONS)
    page.get_by_role("button", name="Create project").click()
    report = Path(tmp) / "harbour-report-1935.pdf"
    report.write_bytes(long_report(100))
    page.locator("#attach-input").set_input_files(report)
    page.locator('#composer-files [data-status="ready"]').wait_for(timeout=30_000)
    page.reload()
    shot(page, "project")

    page.get_by_role("link", name="New chat in this project").click()
    page.locator('body[data-connection="open"]').wait_for()
    page.locator("#model-picker").select_option(label=MODEL)
    page.get_by_label("Message").fill(QUESTION)
    page.get_by_label("Message").press("Enter")
    answer = page.locator('article.role-assistant[data-status="complete"]').last
    answer.locator(".citations").wait_for(timeout=20_000)
    answer.locator(".citations > summary").click()
    answer.locator(".citation summary").first.click()
    page.set_viewport_size({"width": 1280, "height": 960})
    try:
        answer.scroll_into_view_if_needed()
        shot(page, "answer")
    finally:
        page.set_viewport_size(shots.VIEWPORT)

    page.goto(base + "/admin/conversations/sitesettings/")
    fieldset = page.locator("#id_file_max_mb").locator("xpath=ancestor::fieldset")
    fieldset.scroll_into_view_if_needed()
    shot(page, "admin-settings", element=fieldset)
    context.close()


def main():
    with shots.fresh_site({MODEL: model_script()}, CONFAB_AUTO_TITLE="false") as site:
        journey(site.browser, site.base, site.var)


if __name__ == "__main__":
    main()

"""Projects and files in Debian's chromium: a project with instructions, a 100-page PDF
added to it and read while the page shows its progress, a question whose answer is on page
80, the cited passage shown with a click, and again after a reload."""

import pytest
from playwright.sync_api import expect

from tests import documents
from tests.fake_upstream import agent, calls, reply
from tests.helpers import ask, sign_up

pytestmark = pytest.mark.browser

INSTRUCTIONS = "You are the harbour's archivist. Cite the page."


@pytest.fixture
def reader_model(fake_upstream):
    """A model that searches the files, then answers citing what it found; listed by the
    fake upstream before Confab starts."""
    fake_upstream.script(
        "reader-model",
        agent(
            calls(("search_files", {"query": "lighthouse keeper ledger storms"})),
            reply(["The keeper's ledger records ", "**4,212 storms** [1]."], delay=0.05),
        ),
    )


def test_a_project_answers_from_page_80_of_its_pdf_and_cites_it(
    reader_model, server, page, fake_upstream, tmp_path
):
    sign_up(page, server)
    page.get_by_role("link", name="New project").click()
    page.get_by_label("Name").fill("Harbour archive")
    page.get_by_label("Instructions").fill(INSTRUCTIONS)
    page.get_by_role("button", name="Create project").click()
    expect(page.get_by_role("heading", name="Harbour archive")).to_be_visible()

    report = tmp_path / "report.pdf"
    report.write_bytes(documents.long_report(100))
    page.locator("#attach-input").set_input_files(report)
    added = page.locator('#composer-files [data-file][data-status="ready"]')
    expect(added).to_have_count(1, timeout=30_000)
    expect(added).to_contain_text("report.pdf")
    page.reload()
    expect(page.locator('#project-files [data-status="ready"]')).to_have_text("report.pdf")

    page.get_by_role("link", name="New chat in this project").click()
    expect(page.locator(".in-project")).to_have_text("Harbour archive")
    ask(page, "How many storms does the keeper's ledger record?", model="reader-model")

    search = page.locator('article.role-tool[aria-label="Tool search_files"]')
    expect(search.locator(".tool-output")).to_contain_text("page 80")
    answer = page.locator("article.role-assistant").last
    expect(answer.locator(".message-body")).to_have_text(
        "The keeper's ledger records 4,212 storms [1]."
    )
    assert fake_upstream.requests[0]["body"]["messages"][0]["content"] == INSTRUCTIONS

    def cited_passage():
        answer = page.locator("article.role-assistant").last
        answer.locator(".citations > summary").click()
        source = answer.get_by_text("[1] report.pdf, page 80")
        expect(source).to_be_visible()
        source.click()
        expect(answer.locator(".citation .passage").first).to_contain_text(documents.PAGE_80_FACT)

    cited_passage()
    page.reload()
    cited_passage()
    expect(page.locator("article.role-user .attachment")).to_have_count(0)  # a project file
    expect(page.get_by_role("link", name="Harbour archive").first).to_be_visible()

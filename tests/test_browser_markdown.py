"""Replies as markdown and LaTeX math in Debian's chromium: the browser renders a reply while it
streams exactly as the server renders it when it ends, so nothing moves at the end."""

import random

import pytest
from playwright.sync_api import expect

from conversations.rendering import render_markdown
from tests.fake_upstream import chunk, reply, sse
from tests.helpers import ask, sign_up

pytestmark = pytest.mark.browser

EVERYTHING = [
    "## Circles\n\n",
    "Two facts:\n\n",
    "- the area is $\\pi r^2$\n",
    "- the circumference is \\(2 \\pi r\\)\n\n",
    "| r | area |\n| ---: | :--- |\n| 1 | 3.14 |\n| 2 | 12.57 |\n\n",
    "```python\ndef area(r):\n    return math.pi * r**2\n```\n\n",
    "$$\n\\int_0^r 2 \\pi t \\, dt = \\pi r^2\n$$\n\n",
    "\\[\n\\frac{C}{d} = \\pi\n\\]\n\n",
    "A [source](https://example.com/circles) costs $5 and a book $10.\n\n",
    "Not a link: $\\href{javascript:alert('tex')}{click}$ nor $<script>alert('tex')</script>$.\n\n",
    "Nor drawn over this text: $\\kern{-9em}\\text{Sign in again}$.\n\n",
    "That is all.",
]

# The body as a tree of tags, attributes and text, leaving out what only a finished reply has:
# pygments' colour spans (the colours arrive at the end) and the copy buttons.
SHAPE = """(body) => {
  const copy = body.cloneNode(true);
  for (const button of copy.querySelectorAll(".copy-code")) button.remove();
  for (const span of copy.querySelectorAll('[class^="hl-"]')) span.replaceWith(span.textContent);
  copy.normalize();
  const shape = (node) =>
    node.nodeType === Node.TEXT_NODE
      ? node.data
      : [
          node.localName,
          Object.fromEntries([...node.attributes].map((a) => [a.name, a.value]).sort()),
          ...[...node.childNodes].map(shape),
        ];
  return {
    shape: [...copy.childNodes].map(shape),
    height: body.getBoundingClientRect().height,
    status: body.closest("article")?.dataset.status,
  };
}"""


@pytest.fixture
def maths(fake_upstream):
    """`maths` replies with markdown and math of every kind at once; `slow-maths` writes the
    same a part at a time, then holds the whole text on show a while before it ends."""
    fake_upstream.script("maths", reply(EVERYTHING))
    steps = reply(EVERYTHING, delay=0.1)
    end = steps.index(sse(chunk(finish_reason="stop")))
    fake_upstream.script("slow-maths", [*steps[:end], 2.5, *steps[end:]])


def test_a_reply_streams_as_markdown_and_math_and_ends_without_a_jump(maths, server, page):
    page.set_viewport_size({"width": 1000, "height": 2400})  # no scrollbar comes and goes
    sign_up(page, server)
    ask(page, "Tell me about circles", model="slow-maths")

    streaming = page.locator('article.role-assistant[data-status="streaming"] .message-body')
    expect(streaming.locator("h2")).to_have_text("Circles")
    expect(streaming.locator("li .math > math")).to_have_count(2)
    expect(streaming.locator("table td")).to_have_count(4)
    expect(streaming.locator("pre code")).to_contain_text("def area(r):")
    expect(streaming.locator('.math[data-display="block"] > math')).to_have_count(2)
    expect(streaming).to_contain_text("That is all.")  # the whole reply, still streaming
    during = streaming.evaluate(SHAPE)

    done = page.locator('article.role-assistant[data-status="complete"] .message-body')
    expect(done).to_have_count(1)
    expect(done.locator("pre .copy-code")).to_have_count(1)
    after = done.evaluate(SHAPE)
    assert during["status"] == "streaming"
    assert after["shape"] == during["shape"]
    assert after["height"] == during["height"]
    assert done.locator('pre code span[class^="hl-"]').count() > 0  # pygments' colours


def test_math_is_mathml_after_a_reload_and_hostile_tex_stays_inert(maths, server, page):
    dialogs, requests = [], []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("request", lambda request: requests.append(request.url))
    page.set_viewport_size({"width": 1000, "height": 2400})  # the whole reply in view
    sign_up(page, server)
    ask(page, "Tell me about circles", model="maths")
    expect(page.locator('article.role-assistant[data-status="complete"]')).to_have_count(1)

    page.reload()

    body = page.locator("article.role-assistant .message-body")
    expect(body.locator('.math[data-display="inline"] > math')).to_have_count(5)
    expect(body.locator('.math[data-display="block"] > math[display="block"]')).to_have_count(2)
    expect(body.locator("math mfrac")).to_have_count(1)
    expect(body.locator("math msubsup")).to_have_count(1)  # \int_0^r
    expect(body).to_contain_text("costs $5 and a book $10.")  # prose, not math
    expect(body.locator("a")).to_have_attribute("href", "https://example.com/circles")
    page.wait_for_timeout(300)  # time for any stray script or request to show itself
    assert dialogs == []
    assert [url for url in requests if not url.startswith(server)] == []
    assert body.locator("[href]:not(a), script, img, iframe, svg").count() == 0
    assert body.locator("[onerror], [onload], [onclick]").count() == 0
    # A formula draws nothing outside its box, though \kern takes text out of it.
    formula = body.locator(".math", has_text="Sign in again")
    moved = formula.locator("mtext").bounding_box()
    assert moved["x"] + moved["width"] < formula.bounding_box()["x"]
    centre = [moved["x"] + moved["width"] / 2, moved["y"] + moved["height"] / 2]
    assert page.evaluate("([x, y]) => document.elementFromPoint(x, y).localName", centre) != "mtext"


# Each of these renders in the browser exactly as on the server.
SAMPLES = [
    "# One\n\n## Two\n\nSome *emphasis*, **strong**, ~~struck~~ and `code`.",
    "1. first\n2. second\n\n3) third\n\n- a\n  - nested\n\n> quoted\n> > twice",
    "| a | b | c |\n|:--|:-:|--:|\n| `x` | **y** | $z$ |\n| 1 | 2 |",
    "[link](https://example.com 'title') <https://example.com> [rel](/c/x) [ftp](ftp://x.org)",
    "[js](javascript:alert(1)) ![img](http://127.0.0.1:9/x.png) <b onclick=alert(1)>b</b>",
    '```python\n\n\nblank = "lines first"\n```\n\n```\nlet a = 1;\n```\n\n    indented code',
    "$a$ and $$b$$ and \\(c\\) and \\[d\\] inline",
    "$$\na\n+ b\n$$\n\n\\[\n\\begin{aligned} x &= 1 \\\\ y &= 2 \\end{aligned}\n\\]",
    "Formula:\n$$\nx^2\n$$\nafter, and $$y$$ alone:\n\n$$z$$",
    "costs $5 and $10, $5-$10, $ 5 $, \\$x\\$, $x$5, $\\$5$ and $n$ is 2",
    "`$x$` and\n\n```\n$$\ny\n$$\n```\n\n- $a$\n\n  $$\n  b\n  $$\n\n> $$\n> c\n> $$",
    "$\\href{javascript:alert(1)}{x}$ $<img src=x onerror=alert(1)>$ $\\frac{$ \\(\\url{x}\\)",
    "unclosed $x and \\(y and\n\n$$\nz",
    "Temml throws on $x^$ and \\(y_\\): their TeX stays as written",
]


# Pieces of math and markdown, strung together at random for more samples. No backticks in a
# line nor link brackets: there markdown-it-py and markdown-it differ on a few odd strings.
PIECES = [
    "$", "$$", "\\(", "\\)", "\\[", "\\]", "\\$", "\\", "\\\\", "x", "5", "a+b", "^", "{", "}",
    "\\frac{1}{2}", " ", "  ", "\t", "\u00a0", "\n", "\n\n", "    ", "- ", "1. ", "# ", "> ",
    "```\n", "|", "| --- |", "*", "_", "<b>",
]  # fmt: skip


def test_the_browser_renders_markdown_exactly_as_the_server_does(server, page):
    rng = random.Random(1)
    strung = ["".join(rng.choices(PIECES, k=rng.randint(1, 25))) for _ in range(1000)]
    sign_up(page, server)  # the chat page, which loads the libraries
    # Defined by Playwright, not eval()'d by the page: its Content-Security-Policy refuses eval.
    page.evaluate(f"() => {{ window.measure = {SHAPE}; }}")
    pairs = page.evaluate(
        """async (samples) => {
          const { renderMarkdown, renderMath } = await import("/static/confab/markdown.js");
          return samples.map(([text, html]) => {
            const browser = document.createElement("div");
            browser.append(renderMarkdown(text));
            const server = document.createElement("div");
            server.innerHTML = html; // the server's sanitised HTML
            renderMath(server);
            return [measure(browser).shape, measure(server).shape];
          });
        }""",
        [[text, render_markdown(text)] for text in SAMPLES + strung],
    )
    for text, (browser, server_html) in zip(SAMPLES + strung, pairs, strict=True):
        assert browser == server_html, text


JSON_REPLY = ['{"name": "Ada', ' Lovelace", "born": ', "1815", ', "works": ["Notes"', "]}"]


@pytest.fixture
def json_model(fake_upstream):
    """`slow-json` writes a JSON object a piece at a time, then holds it a while."""
    steps = reply(JSON_REPLY, delay=0.1)
    end = steps.index(sse(chunk(finish_reason="stop")))
    fake_upstream.script("slow-json", [*steps[:end], 2.5, *steps[end:]])


def test_a_json_reply_streams_as_the_code_block_it_ends_as(json_model, server, page):
    page.set_viewport_size({"width": 1000, "height": 2400})
    sign_up(page, server)
    ask(page, "Hello", model="slow-json")
    expect(page.locator('article.role-assistant[data-status="complete"]')).to_have_count(1)
    page.reload()
    page.get_by_role("link", name="Settings").click()
    panel = page.get_by_role("dialog", name="Conversation settings")
    panel.get_by_label("Response format").select_option(label="JSON mode: any JSON object")
    panel.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status").filter(has_text="Settings saved.")).to_be_visible()

    ask(page, "Who wrote the first program? As JSON.", model="slow-json")

    streaming = page.locator('article.role-assistant[data-status="streaming"] .message-body')
    expect(streaming.locator("pre code")).to_contain_text('"works": [')  # not yet JSON
    expect(streaming.locator("pre code")).to_contain_text('"Notes"\n  ]\n}')  # now it is
    during = streaming.evaluate(SHAPE)
    done = page.locator('article.role-assistant[data-status="complete"] .message-body').last
    expect(done.locator("pre .copy-code")).to_have_count(1)
    after = done.evaluate(SHAPE)
    assert after["shape"] == during["shape"]
    assert after["height"] == during["height"]
    expect(done.locator("pre code")).to_have_text(
        '{\n  "name": "Ada Lovelace",\n  "born": 1815,\n  "works": [\n    "Notes"\n  ]\n}'
    )

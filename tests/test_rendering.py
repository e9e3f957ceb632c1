"""The server's rendering of model output: markdown, code, LaTeX math, and nothing that runs.

The browser renders streaming replies the same way (static/confab/markdown.js);
test_browser_markdown.py checks that the two agree."""

import re

import pytest

from conversations.rendering import render_json, render_markdown


def math(tex, display):
    return f'<span class="math" data-display="{display}">{tex}</span>'


def tags(html):
    """The elements in `html`, in order: whatever is escaped text is not among them."""
    return re.findall(r"<(\w+)", html)


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("so $x^2$ it is", f"<p>so {math('x^2', 'inline')} it is</p>\n"),
        ("so \\(x^2\\) it is", f"<p>so {math('x^2', 'inline')} it is</p>\n"),
        ("so $$x^2$$ it is", f"<p>so {math('x^2', 'block')} it is</p>\n"),
        ("so \\[x^2\\] it is", f"<p>so {math('x^2', 'block')} it is</p>\n"),
        ("$$\n\\int_0^1 x\\,dx\n$$", math("\\int_0^1 x\\,dx", "block") + "\n"),
        ("\\[\na &lt; b\n\\]", math("a &amp;lt; b", "block") + "\n"),
        ("$$x$$", math("x", "block") + "\n"),
    ],
)
def test_it_marks_each_kind_of_math_as_escaped_tex(text, html):
    assert render_markdown(text) == html


def test_it_escapes_the_tex():
    assert render_markdown("$a<b>c & d$") == f"<p>{math('a&lt;b&gt;c &amp; d', 'inline')}</p>\n"


def test_it_keeps_displayed_math_out_of_the_paragraph_before_and_after_it():
    html = render_markdown("The area:\n$$\n\\pi r^2\n- 1\n$$\nthat is all.")

    tex = "\\pi r^2\n- 1"  # not a list item
    assert html == f"<p>The area:</p>\n{math(tex, 'block')}\n<p>that is all.</p>\n"


def test_it_keeps_the_text_after_a_closing_delimiter():
    assert render_markdown("\\[x\\] and more") == f"<p>{math('x', 'block')} and more</p>\n"


def test_it_finds_math_in_lists_tables_and_quotes():
    html = render_markdown("- $a$\n\n| x |\n|---|\n| $b$ |\n\n> $$\n> c\n> $$")

    assert math("a", "inline") in html
    assert f"<td>{math('b', 'inline')}</td>" in html
    assert f"<blockquote>\n{math('c', 'block')}\n</blockquote>" in html


@pytest.mark.parametrize(
    "text",
    [
        "It costs $5 and $10.",
        "From $5-$10 a month.",
        "Two $ signs $ apart.",
        "Escaped \\$x\\$ dollars.",
        "$x$5 is a price.",
        "Unclosed $x and \\(y and $$z.",
    ],
)
def test_dollars_in_prose_are_not_math(text):
    assert "math" not in render_markdown(text)


def test_math_needs_no_blank_line_inside():
    assert "math" not in render_markdown("$$\nx\n\ny\n$$")


@pytest.mark.parametrize(
    "text",
    [
        "Code: `$x$` and `\\(y\\)`.",
        "```\n$$\nx\n$$\n```",
        "```python\nprice = '$5 and $x$'\n```",
        "    $x$ indented code",
    ],
)
def test_math_inside_code_is_code(text):
    html = render_markdown(text)

    assert "<code" in html
    assert "math" not in html


def test_hostile_tex_stays_inert_text():
    html = render_markdown(
        "$\\href{javascript:alert(1)}{click}$ $<script>alert(1)</script>$ "
        '\\(<img src="http://127.0.0.1:9/x.png" onerror="alert(1)">\\)'
    )

    assert tags(html) == ["p", "span", "span", "span"]
    assert math("\\href{javascript:alert(1)}{click}", "inline") in html
    assert math("&lt;script&gt;alert(1)&lt;/script&gt;", "inline") in html


def test_only_the_math_rule_makes_math_elements():
    html = render_markdown('<span class="math" data-display="block">x</span>')

    assert tags(html) == ["p"]


def test_links_open_in_a_new_tab_without_referrer():
    html = render_markdown('[docs](https://example.com/docs "Docs")')

    assert html == (
        '<p><a href="https://example.com/docs" title="Docs" target="_blank"'
        ' rel="noopener noreferrer">docs</a></p>\n'
    )


def test_links_to_scripts_are_not_made():
    html = render_markdown("[click](javascript:alert(1)) <javascript:alert(1)>")

    assert "<a" not in html


def test_tables_render_with_their_alignment_as_a_class_the_policy_allows():
    html = render_markdown("| name | tokens |\n| :--- | ---: |\n| alice | 12 |")

    assert '<th class="align-left">name</th>' in html
    assert '<td class="align-right">12</td>' in html
    assert "style=" not in html  # the Content-Security-Policy refuses style attributes


def test_headings_lists_quotes_and_struck_text_render():
    html = render_markdown("## Plan\n\n1. one\n2. two\n\n> quoted\n\n~~old~~")

    assert "<h2>Plan</h2>" in html
    assert "<ol>\n<li>one</li>\n<li>two</li>\n</ol>" in html
    assert "<blockquote>\n<p>quoted</p>\n</blockquote>" in html
    assert "<s>old</s>" in html


def test_images_are_dropped_so_nothing_is_fetched():
    assert "<img" not in render_markdown("![pixel](http://127.0.0.1:9/tracker.png)")


def test_code_is_highlighted_with_its_first_blank_lines_kept():
    html = render_markdown("```python\n\n\nx = 1\n```")

    assert html.startswith('<pre><code class="language-python">\n\n<span class="hl-n">x</span>')


def test_a_json_reply_is_pretty_printed_and_not_read_as_math():
    assert "math" not in render_json('{"price": "$5", "tex": "$x$"}')
    assert "json-note" in render_json("not json with $x$")

"""Small things people noticed: a hint for the shortcuts and a skip link, code that reads
in the dark, and password errors where the password was typed."""

import pytest
from playwright.sync_api import expect

from tests.helpers import ask, sign_up

pytestmark = pytest.mark.browser

# WCAG's contrast ratio of an element's colour against its code block's background.
CONTRAST = """(element) => {
  const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const luminance = (c) => {
    const [r, g, b] = rgb(c).map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const fg = luminance(getComputedStyle(element).color);
  const bg = luminance(getComputedStyle(element.closest("pre")).backgroundColor);
  return (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
}"""

CODE = '''```python
import math

@cache
def area(radius: float) -> float:
    """A circle's area."""  # a comment
    return math.pi * radius ** 2 if radius > 0 else max(0, 1.5)

class Shape: pass
```'''


def test_a_hint_lists_the_shortcuts_and_a_skip_link_leads_to_the_content(server, page):
    sign_up(page, server)

    page.get_by_role("button", name="? Keyboard shortcuts").click()
    shortcuts = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(shortcuts).to_be_visible()
    shortcuts.get_by_role("button", name="Close").click()
    expect(shortcuts).to_be_hidden()

    first = "document.querySelector('a[href], button, input, select, textarea').className"
    assert page.evaluate(first) == "skip-link"  # the chat page's first stop too
    page.goto(server + "/usage/")  # where the keyboard starts at the top
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    assert page.evaluate("location.hash") == "#main"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_code_colours_read_with_aa_contrast(server, page, scheme):
    page.emulate_media(color_scheme=scheme)
    sign_up(page, server)

    ask(page, "\n\n" + CODE, model="fake-model")  # echoed back, highlighted when done
    tokens = page.locator('article.role-assistant[data-status="complete"] pre [class^="hl-"]')
    expect(tokens.first).to_be_visible()

    ratios = {token.get_attribute("class"): token.evaluate(CONTRAST) for token in tokens.all()}
    assert {"hl-k", "hl-sd", "hl-c1", "hl-nf", "hl-mi", "hl-nb", "hl-nd"} <= ratios.keys()
    low = {name: round(ratio, 2) for name, ratio in ratios.items() if ratio < 4.5}
    assert low == {}


def test_password_errors_appear_under_the_password_they_are_about(server, page):
    page.goto(server + "/accounts/signup/")
    page.get_by_label("Username").fill("alice")
    page.locator("#id_password1").fill("abc")
    page.locator("#id_password2").fill("abc")
    page.get_by_role("button", name="Sign up").click()

    typed = page.locator("div", has=page.locator("#id_password1"))
    confirmed = page.locator("div", has=page.locator("#id_password2"))
    expect(typed.locator(".errorlist")).to_contain_text("This password is too short.")
    expect(confirmed.locator(".errorlist")).to_have_count(0)

    page.locator("#id_password1").fill("correct horse 42")
    page.locator("#id_password2").fill("correct horse 43")
    page.get_by_role("button", name="Sign up").click()
    expect(confirmed.locator(".errorlist")).to_contain_text("didn’t match")
    expect(typed.locator(".errorlist")).to_have_count(0)

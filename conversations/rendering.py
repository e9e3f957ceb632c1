"""Model output to HTML: markdown, highlighted code, then sanitised, since it is untrusted."""

import json

import nh3
from django.utils.html import escape
from django.utils.translation import gettext as _
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

_formatter = HtmlFormatter(nowrap=True, classprefix="hl-")


def _highlight(code, lang, attrs):
    try:
        lexer = get_lexer_by_name(lang) if lang else None
    except ClassNotFound:
        lexer = None
    if lexer is None:
        return ""  # markdown-it escapes the code itself
    return highlight(code, lexer, _formatter)


_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "highlight": _highlight})
_markdown.enable(["table", "strikethrough"])

# No <img>: an image URL in model output would be fetched by the browser, a way to leak
# the conversation to a third party (prompt injection).
_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s",
    "blockquote", "ul", "ol", "li", "a", "code", "pre", "span",
    "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
_ATTRIBUTES = {
    "a": {"href", "title"},
    "code": {"class"},
    "span": {"class"},
    "ol": {"start"},
    "th": {"style"},
    "td": {"style"},
}


def render_markdown(text):
    html = _markdown.render(text or "")
    return nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        filter_style_properties={"text-align"},
    )


def render_json(text):
    """A reply asked for as JSON: pretty-printed and highlighted, or a note that it is not."""
    try:
        pretty = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        note = escape(_("This reply was asked for as JSON but does not parse."))
        return f'<p class="json-note">{note}</p>' + render_markdown(text)
    return render_markdown(f"```json\n{pretty}\n```")

"""Model output to HTML: markdown, highlighted code, then sanitised, since it is untrusted.

The browser renders a reply the same way while it streams (static/confab/markdown.js:
markdown-it, the library markdown-it-py ports, with this configuration and this math rule),
so a reply looks the same before and after it ends. Change the two together.
"""

import json
from dataclasses import dataclass
from decimal import Decimal

import nh3
from django.template.loader import render_to_string
from django.utils.html import escape
from django.utils.translation import gettext as _
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml, isWhiteSpace
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

from conversations.models import Message

_formatter = HtmlFormatter(nowrap=True, classprefix="hl-")


def _highlight(code, lang, attrs):
    try:
        # stripnl=False: a block keeps its blank first lines, as while it streamed.
        lexer = get_lexer_by_name(lang, stripnl=False) if lang else None
    except ClassNotFound:
        lexer = None
    if lexer is None:
        return ""  # markdown-it escapes the code itself
    return highlight(code, lexer, _formatter)


# Math: $…$ and \(…\) inline, $$…$$ and \[…\] displayed, the delimiters models write. The
# TeX is only marked here, escaped, in <span class="math" data-display="inline|block">; the
# browser turns it into MathML (renderMath in markdown.js), on the page and while streaming
# alike. One rule of our own, in step with markdown.js, rather than mdit-py-plugins'
# dollarmath and texmath: each has drifted from its JavaScript original, so the streaming view
# and the finished reply would differ (and texmath drops any text after a closing \]).
_CLOSERS = {"$$": "$$", "\\[": "\\]", "\\(": "\\)", "$": "$"}  # longest opener first
_DISPLAYED = {"$$", "\\["}
_DIGITS = frozenset("0123456789")


def _math_inline(state, silent):
    src = state.src
    opener = next((o for o in _CLOSERS if src.startswith(o, state.pos)), None)
    if opener is None:
        return False
    closer, start = _CLOSERS[opener], state.pos + len(opener)
    end = src.find(closer, start, state.posMax)
    while end != -1 and opener[0] == "$" and src[end - 1] == "\\":  # \$ is a dollar sign
        end = src.find(closer, end + 1, state.posMax)
    if end == -1:
        return False
    tex = src[start:end]
    if not tex.strip():
        return False
    # Pandoc's rule, so that "$5 and $10" stays prose: no space inside the dollars, and no
    # digit straight after the closing one.
    if opener == "$" and (
        isWhiteSpace(ord(tex[0])) or isWhiteSpace(ord(tex[-1])) or src[end + 1 : end + 2] in _DIGITS
    ):
        return False
    if not silent:
        token = state.push("math_inline", "math", 0)
        token.content = tex
        token.markup = opener
        token.info = "block" if opener in _DISPLAYED else "inline"
    state.pos = end + len(closer)
    return True


def _math_block(state, start_line, end_line, silent):
    """$$ or \\[ opening a line, up to the line that ends with $$ or \\], no blank line between."""
    if state.sCount[start_line] - state.blkIndent >= 4:
        return False  # indented code
    begin = state.bMarks[start_line] + state.tShift[start_line]
    opener = next((o for o in _DISPLAYED if state.src.startswith(o, begin)), None)
    if opener is None:
        return False
    closer, line = _CLOSERS[opener], start_line
    text = state.src[begin + len(opener) : state.eMarks[start_line]]
    lines = []
    while (end := text.find(closer)) == -1:
        lines.append(text)
        line += 1
        if line >= end_line or state.isEmpty(line) or state.sCount[line] < state.blkIndent:
            return False
        text = state.src[state.bMarks[line] + state.tShift[line] : state.eMarks[line]]
    lines.append(text[:end])
    tex = "\n".join(lines)
    if text[end + len(closer) :].strip() or not tex.strip():
        return False  # more text after it: math inside a paragraph, for the inline rule
    if not silent:
        token = state.push("math_block", "math", 0)
        token.block = True
        token.content = tex
        token.markup = opener
        token.map = [start_line, line + 1]
        state.line = line + 1
    return True


def _math_span(tex, display):
    return f'<span class="math" data-display="{display}">{escapeHtml(tex.strip())}</span>'


_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "highlight": _highlight})
_markdown.enable(["table", "strikethrough"])
_markdown.inline.ruler.before("escape", "math_inline", _math_inline)
_markdown.block.ruler.before(
    "fence", "math_block", _math_block, {"alt": ["paragraph", "reference", "blockquote", "list"]}
)
_markdown.add_render_rule(
    "math_inline",
    lambda self, tokens, idx, options, env: _math_span(tokens[idx].content, tokens[idx].info),
)
_markdown.add_render_rule(
    "math_block",
    lambda self, tokens, idx, options, env: _math_span(tokens[idx].content, "block") + "\n",
)


def _alignment_as_class(state):
    """markdown-it aligns a table's columns with style attributes, which the pages' Content-
    Security-Policy (style-src 'self') refuses: each becomes a class app.css styles."""
    for token in state.tokens:
        if token.type in ("th_open", "td_open") and (style := token.attrs.pop("style", None)):
            token.attrSet("class", "align-" + style.removeprefix("text-align:"))


_markdown.core.ruler.push("alignment_as_class", _alignment_as_class)

# No <img>: an image URL in model output would be fetched by the browser, a way to leak
# the conversation to a third party (prompt injection). markdown.js holds the same lists.
_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s",
    "blockquote", "ul", "ol", "li", "a", "code", "pre", "span",
    "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
_ATTRIBUTES = {
    "a": {"href", "title"},
    "code": {"class"},
    "span": {"class", "data-display"},
    "ol": {"start"},
}
_ALIGNMENTS = {"align-left", "align-center", "align-right"}


def render_markdown(text):
    html = _markdown.render(text or "")
    return nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        allowed_classes={"th": _ALIGNMENTS, "td": _ALIGNMENTS},
    )


def render_json(text):
    """A reply asked for as JSON: pretty-printed and highlighted, or a note that it is not."""
    try:
        pretty = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        note = escape(_("This reply was asked for as JSON but does not parse."))
        return f'<p class="json-note">{note}</p>' + render_markdown(text)
    return render_markdown(f"```json\n{pretty}\n```")


@dataclass(frozen=True)
class TurnUsage:
    """What a turn of tool steps cost: its model calls, their tokens and cost summed."""

    calls: int
    tokens: int
    cost: Decimal | None

    @property
    def cost_display(self):
        return f"{self.cost.normalize():f}" if self.cost else ""


def add_turn_usage(branch):
    """Set `turn` on each answer of `branch` that came after tool steps: the usage of its
    turn's model calls so far (the page sums a turn under its answer)."""
    turn = []
    for message in branch:
        if message.role == Message.Role.USER:
            turn = []
        elif message.role == Message.Role.ASSISTANT:
            turn.append(message)
            if len(turn) > 1:
                costs = [m.cost for m in turn if m.cost is not None]
                message.turn = TurnUsage(
                    len(turn), sum(m.total_tokens for m in turn), sum(costs) if costs else None
                )


def _add_turn_usage_of(message):
    """add_turn_usage for one answer that follows tool steps, its turn read from the
    database (a query per message of the turn)."""
    turn, ancestor = [], message
    while ancestor is not None and ancestor.role != Message.Role.USER:
        turn.append(ancestor)
        ancestor = ancestor.parent
    add_turn_usage(reversed(turn))


def finished_message(message):
    """A message as `message.done` carries it: its MESSAGE object with the server's HTML,
    the template partial the page itself uses, so a reply finished live looks as it does
    after a reload. Note: renders a template, and queries the message's siblings (for the
    `< 2 / 3 >` switcher) unless they were set already."""
    if not hasattr(message, "siblings"):
        message.siblings = list(
            Message.objects.filter(
                conversation_id=message.conversation_id,
                parent_id=message.parent_id,
                role=message.role,
            )
            .order_by("created")
            .values_list("id", flat=True)
        )
    if message.role == Message.Role.ASSISTANT and not hasattr(message, "turn"):
        if message.parent_id and message.parent.role == Message.Role.TOOL:
            _add_turn_usage_of(message)
    html = render_to_string("conversations/chat.html#message", {"message": message})
    return {**message.to_dict(), "html": html}

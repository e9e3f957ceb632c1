"""Text from uploaded files, and the passages it is cut into.

Pure functions of bytes, importing nothing of Django: they run in worker processes
(conversations.files.processing), so a long PDF never holds the server's event loop or its
database thread. PDF through pypdf, DOCX through python-docx, HTML through the standard
library's parser (scripts and styles dropped, blocks kept apart); Markdown, plain text, CSV
and source code are text already, decoded as UTF-8, else GB 18030 (Chinese files saved by
older Windows tools), else Windows-1252.
"""

import io
import re
import zipfile
from html.parser import HTMLParser
from pathlib import PurePath

# About this many characters per passage: a few paragraphs, what retrieval returns and cites.
PASSAGE_CHARS = 1200

EXTENSIONS = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".md": "markdown", ".markdown": "markdown",
    ".txt": "text", ".text": "text", ".log": "text", ".rst": "text",
    ".csv": "csv", ".tsv": "csv",
    ".html": "html", ".htm": "html",
}  # fmt: skip
CODE = {
    ".py", ".js", ".mjs", ".ts", ".tsx", ".jsx", ".java", ".kt", ".c", ".h", ".cc", ".cpp",
    ".hpp", ".cs", ".go", ".rs", ".rb", ".php", ".swift", ".scala", ".sh", ".bash", ".sql",
    ".json", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".xml", ".css", ".scss", ".lua",
    ".pl", ".r", ".m", ".vue", ".svelte", ".dart", ".ex", ".exs", ".erl", ".hs", ".ml",
    ".clj", ".el", ".vim", ".proto", ".graphql", ".tf", ".dockerfile", ".mk", ".cmake",
}  # fmt: skip
CODE_NAMES = {"makefile", "dockerfile", "gemfile", "rakefile", "procfile"}


class ExtractionFailed(Exception):
    """A file whose text cannot be read; the message says why, to its owner."""


def kind_of(name, head):
    """The kind of a file from its name and first bytes, or None when it is not one Confab
    reads. The bytes must agree with the name: a PDF starts %PDF-, a DOCX is a zip."""
    path = PurePath(name.lower())
    kind = EXTENSIONS.get(path.suffix)
    if kind is None and (path.suffix in CODE or path.name in CODE_NAMES):
        kind = "code"
    if kind == "pdf" and not head.startswith(b"%PDF-"):
        return None
    if kind == "docx" and not head.startswith(b"PK"):
        return None
    return kind


def page_count(data):
    """A PDF's number of pages."""
    return len(_pdf(data).pages)


def extract(kind, data, first=0, last=None):
    """The text of a file, as (page, text) parts: one per page of a PDF (pages first to
    last, 0-based, last excluded), else one part with no page."""
    if kind == "pdf":
        return _pdf_pages(data, first, last)
    if kind == "docx":
        return [(None, _docx(data))]
    text = decode(data)
    if kind == "html":
        text = html_text(text)
    return [(None, text)]


def passages(parts):
    """The parts cut into passages of about PASSAGE_CHARS, at paragraph ends where it can,
    else at line ends, else anywhere; a passage never spans two pages. Joined in order,
    the passages are the whole text: pages end with a blank line. Empty parts are left
    out; a file with no text at all fails."""
    found = []
    for page, text in parts:
        if not text.strip():
            continue
        if page is not None and not text.endswith("\n\n"):
            text = text.rstrip("\n") + "\n\n"
        found += [(page, piece) for piece in _cut(text)]
    if not found:
        raise ExtractionFailed(
            "No text was found in this file. A scanned PDF holds pictures of pages, which "
            "Confab does not read."
        )
    return found


def _cut(text):
    pieces = []
    while len(text) > PASSAGE_CHARS:
        window = text[: PASSAGE_CHARS * 3 // 2]
        end = -1
        for separator in ("\n\n", "\n", "。", ". ", " "):
            at = window.rfind(separator, PASSAGE_CHARS // 2)
            if at != -1:
                end = at + len(separator)
                break
        if end == -1:
            end = PASSAGE_CHARS
        pieces.append(text[:end])
        text = text[end:]
    if text:
        pieces.append(text)
    return pieces


def _pdf(data):
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
    except (PdfReadError, ValueError, KeyError, TypeError) as error:
        raise ExtractionFailed(f"This PDF could not be read: {error}") from None
    if reader.is_encrypted:
        try:
            reader.decrypt("")  # many "encrypted" PDFs open without a password
        except Exception:
            pass
        if reader.is_encrypted and not _readable(reader):
            raise ExtractionFailed("This PDF is protected by a password.")
    return reader


def _readable(reader):
    try:
        reader.pages[0].extract_text()
    except Exception:
        return False
    return True


def _pdf_pages(data, first, last):
    reader = _pdf(data)
    pages = reader.pages
    last = len(pages) if last is None else min(last, len(pages))
    parts = []
    for number in range(first, last):
        try:
            text = pages[number].extract_text() or ""
        except Exception as error:
            message = f"Page {number + 1} of this PDF could not be read: {error}"
            raise ExtractionFailed(message) from None
        parts.append((number + 1, _tidy(text)))
    return parts


def _docx(data):
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as error:
        raise ExtractionFailed(f"This Word document could not be read: {error}") from None
    blocks = []
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            for row in block.rows:
                blocks.append(" | ".join(cell.text.strip() for cell in row.cells))
        elif block.text.strip():
            heading = block.style is not None and block.style.name.startswith("Heading")
            blocks.append(("## " if heading else "") + block.text.strip())
    return "\n\n".join(blocks) + "\n"


def decode(data):
    """Bytes as text: UTF-8 (a byte-order mark dropped), else GB 18030, else Windows-1252.
    Binary data is refused."""
    if b"\x00" in data[:8192]:
        raise ExtractionFailed("This is not a text file.")
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("cp1252", errors="replace")


_BLANK_RUNS = re.compile(r"\n{3,}")
_TRAILING = re.compile(r"[ \t]+\n")


def _tidy(text):
    return _BLANK_RUNS.sub("\n\n", _TRAILING.sub("\n", text)).strip("\n")


class _HtmlText(HTMLParser):
    """A page's text as a reader sees it: no scripts or styles, blocks on lines of their own."""

    HIDDEN = {"script", "style", "template", "noscript", "head", "svg"}
    BLOCKS = {
        "p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section",
        "article", "header", "footer", "pre", "blockquote", "table", "ul", "ol", "hr",
    }  # fmt: skip

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts, self.hidden = [], 0

    def handle_starttag(self, tag, attrs):
        self.hidden += tag in self.HIDDEN
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        self.hidden -= tag in self.HIDDEN and self.hidden > 0
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(data)


def html_text(html):
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).split("\n"))
    return _tidy("\n".join(lines).replace("\n\n", "\n")) + "\n"

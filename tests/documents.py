"""Documents the file tests upload, made by the tests themselves: PDFs (fpdf2), Word
documents (python-docx), and text of every other kind Confab reads."""

import io

import docx
from fpdf import FPDF

# The fact the journeys and the retrieval tests ask about: on page 80 of the long report.
PAGE_80_FACT = "The lighthouse keeper's ledger records 4,212 storms between 1890 and 1935."


def pdf(pages):
    """A PDF with one page per text, in a core font (Latin-1 text only)."""
    document = FPDF()
    document.set_font("Helvetica", size=11)
    for text in pages:
        document.add_page()
        document.multi_cell(0, 5, text)
    return bytes(document.output())


def filler(page):
    """A page of plain prose that says nothing in particular, numbered."""
    sentence = (
        f"Page {page} of the annual report describes routine harbour maintenance, tides, "
        "crew rotations and the weather in general terms. "
    )
    return sentence * 12


def long_report(pages=100):
    """The test's large PDF: `pages` pages of filler, the fact on page 80."""
    texts = [filler(n) for n in range(1, pages + 1)]
    if pages >= 80:
        texts[79] = filler(80) + "\n\n" + PAGE_80_FACT + "\n\n" + filler(80)
    return pdf(texts)


def word(paragraphs, table=None):
    document = docx.Document()
    document.add_heading("Meeting notes", level=1)
    for text in paragraphs:
        document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()

"""Reading books into a Book of ordered chapters.

One module per format (``txt``, ``epub``, ``pdf``, ``kindle``, ``fb2``, ``docx``, ``odt``,
``html``, ``rtf``, ``jsonbook``), Calibre for the other formats it reads (``calibre``),
OCR of pages that are only pictures (``ocr``), the XHTML walker (``xhtml``), the Book model
and its edits (``model``), what a reader did (``reading``), the cast and its labelling
(``cast``) and the text report (``report``). ``load_book(path)`` picks the reader by
extension; every problem with the file comes back as one ``AudiobookError`` sentence.
``save_book_json`` writes an edited book in the JSON book format, which ``load_book``
reads back unchanged.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from ..errors import AudiobookError
from .calibre import CALIBRE_FORMATS, ebook_convert, read_with_calibre
from .cast import CAST_FILE, LLM, Cast, CastMember, cast_of, label_book, load_cast, save_cast
from .common import chapter_entries
from .docx import read_docx
from .epub import read_epub
from .fb2 import read_fb2
from .html import read_html
from .jsonbook import read_json, save_book_json
from .kindle import read_kindle
from .model import (BOOK_FORMAT_VERSION, FRONT_MATTER_TITLE, Book, Chapter, drop_chapters, merge_chapters,
                    rename_chapter, reorder_chapters, set_chapter_text, set_span)
from .odt import read_odt
from .pdf import read_pdf
from .reading import OnProgress, ReadReport
from .report import describe_book
from .rtf import read_rtf
from .txt import read_markdown, read_txt, split_text_chapters

# extension -> (reader, what the report calls it)
_READERS = {
    ".txt": (read_txt, "text"), ".md": (read_markdown, "Markdown"), ".markdown": (read_markdown, "Markdown"),
    ".epub": (read_epub, "EPUB"), ".kepub": (read_epub, "EPUB"), ".pdf": (read_pdf, "PDF"),
    ".mobi": (read_kindle, "Kindle"), ".azw3": (read_kindle, "Kindle"), ".azw": (read_kindle, "Kindle"),
    ".prc": (read_kindle, "Kindle"), ".fb2": (read_fb2, "FictionBook"), ".fbz": (read_fb2, "FictionBook"),
    ".docx": (read_docx, "Word"), ".odt": (read_odt, "OpenDocument"), ".html": (read_html, "HTML"),
    ".htm": (read_html, "HTML"), ".xhtml": (read_html, "HTML"), ".rtf": (read_rtf, "RTF"), ".json": (read_json, "JSON book"),
}
OWN_EXTENSIONS = tuple(_READERS)  # the files our own readers read
# The files load_book reads, for file pickers: ours, and Calibre's others when ebook-convert is installed.
BOOK_EXTENSIONS = OWN_EXTENSIONS + (CALIBRE_FORMATS if ebook_convert() else ())


def formats_sentence() -> str:
    """The formats we read, for sentences: ".txt, .md, ..., .rtf or .json"."""
    names = [e for e in OWN_EXTENSIONS if e not in (".markdown", ".kepub", ".azw", ".prc", ".fbz", ".htm", ".xhtml")]
    return ", ".join(names[:-1]) + " or " + names[-1]


def formats_label() -> str:
    """The formats a file picker takes, for its label: ".txt .md ... .json", and Calibre's when it is installed."""
    names = [e for e in OWN_EXTENSIONS if e not in (".markdown", ".kepub", ".azw", ".prc", ".fbz", ".htm", ".xhtml")]
    return " ".join(names) + (" and more through Calibre" if ebook_convert() else "")


def load_book(path: str | Path, on_progress: OnProgress | None = None, language: str = "") -> Book:
    """Read a book file; raise AudiobookError with a sentence when it cannot be read.

    ``on_progress(done, total, what)`` hears how far a slow read (OCR of scanned pages) is.
    ``language`` (ISO 639-1) is the one OCR reads scanned pages in when the book does not say its own.
    The book's ``report`` says which reader read it and what it cleaned up.
    """
    p = Path(path)
    if not p.exists():
        raise AudiobookError(f"There is no file at {p}.")
    if p.is_dir():
        raise AudiobookError(f"{p} is a folder; pick a book file.")
    ext = p.suffix.lower()
    if ext in _READERS:
        reader, name = _READERS[ext]
        book = reader(p, on_progress=on_progress, language=language) if "on_progress" in inspect.signature(reader).parameters else reader(p)
    elif ext in CALIBRE_FORMATS:
        book, name = read_with_calibre(p, formats_sentence(), on_progress, language), ext
    else:
        also = f" (with Calibre installed, also {', '.join(CALIBRE_FORMATS)})" if ebook_convert() else ""
        raise AudiobookError(f"Cannot read '{p.suffix or p.name}' files; use {formats_sentence()}{also}.")
    if not book.chapters or not any(c.text.strip() for c in book.chapters):
        raise AudiobookError(f"{p.name} has no text to narrate.")
    if book.report is None:
        book.report = ReadReport(reader=name)
    return book


__all__ = [
    "BOOK_EXTENSIONS", "OWN_EXTENSIONS", "OnProgress", "ReadReport", "formats_label", "formats_sentence", "read_docx", "read_fb2", "read_html",
    "read_kindle", "read_odt", "read_rtf", "BOOK_FORMAT_VERSION", "CAST_FILE", "FRONT_MATTER_TITLE", "LLM", "Book", "Cast", "CastMember",
    "Chapter", "cast_of", "chapter_entries", "label_book", "load_cast", "save_cast", "set_span",
    "describe_book", "drop_chapters", "load_book", "merge_chapters", "read_epub", "read_json", "read_markdown",
    "read_pdf", "read_txt", "rename_chapter", "reorder_chapters", "save_book_json", "set_chapter_text",
    "split_text_chapters",
]

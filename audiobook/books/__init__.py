"""Reading books (txt, md, epub, pdf, json) into a Book of ordered chapters.

One module per format (``txt``, ``epub``, ``pdf``, ``jsonbook``), the Book model and its
edits (``model``), the cast and its labelling (``cast``) and the text report
(``report``). ``load_book(path)`` picks the reader by extension; every problem with the
file comes back as one ``AudiobookError`` sentence. ``save_book_json`` writes an edited
book in the JSON book format, which ``load_book`` reads back unchanged.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import AudiobookError
from .cast import CAST_FILE, LLM, Cast, CastMember, cast_of, label_book, load_cast, save_cast
from .common import chapter_entries
from .epub import read_epub
from .jsonbook import read_json, save_book_json
from .model import (BOOK_FORMAT_VERSION, FRONT_MATTER_TITLE, Book, Chapter, drop_chapters, merge_chapters,
                    rename_chapter, reorder_chapters, set_chapter_text, set_span)
from .pdf import read_pdf
from .report import describe_book
from .txt import read_markdown, read_txt, split_text_chapters

_READERS = {".txt": read_txt, ".md": read_markdown, ".markdown": read_markdown,
            ".epub": read_epub, ".pdf": read_pdf, ".json": read_json}
BOOK_EXTENSIONS = tuple(_READERS)  # the files load_book reads, for file pickers


def load_book(path: str | Path) -> Book:
    """Read a book file; raise AudiobookError with a sentence when it cannot be read."""
    p = Path(path)
    if not p.exists():
        raise AudiobookError(f"There is no file at {p}.")
    if p.is_dir():
        raise AudiobookError(f"{p} is a folder; pick a book file.")
    reader = _READERS.get(p.suffix.lower())
    if reader is None:
        raise AudiobookError(f"Cannot read '{p.suffix or p.name}' files; use .txt, .md, .epub, .pdf or .json.")
    book = reader(p)
    if not book.chapters or not any(c.text.strip() for c in book.chapters):
        raise AudiobookError(f"{p.name} has no text to narrate.")
    return book


__all__ = [
    "BOOK_EXTENSIONS", "BOOK_FORMAT_VERSION", "CAST_FILE", "FRONT_MATTER_TITLE", "LLM", "Book", "Cast", "CastMember",
    "Chapter", "cast_of", "chapter_entries", "label_book", "load_cast", "save_cast", "set_span",
    "describe_book", "drop_chapters", "load_book", "merge_chapters", "read_epub", "read_json", "read_markdown",
    "read_pdf", "read_txt", "rename_chapter", "reorder_chapters", "save_book_json", "set_chapter_text",
    "split_text_chapters",
]

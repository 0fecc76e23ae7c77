"""Books for the Backend: read a book file, edit its chapters, save the edited book.

Each function takes the ``backend.Backend`` first; ``Backend`` lists them as its methods.
"""

from __future__ import annotations

from pathlib import Path

from audiobook.books import Book, OnProgress, formats_sentence
from audiobook.books import load_book as read_book
from audiobook.errors import AudiobookError
from audiobook.services.readalong import remember_source


def chapter_numbers(text: str, book: Book) -> list[int]:
    """'2, 3' or '3 1 2' -> 0-based chapter indexes; AudiobookError for anything else."""
    parts = [p for p in (text or "").replace(",", " ").split() if p]
    if not parts or not all(p.isdigit() for p in parts):
        raise AudiobookError(f"Type chapter numbers separated by commas, for example 2, 3 (the book has {len(book.chapters)}).")
    return [int(p) - 1 for p in parts]


def load_book(backend, path: str | Path | None, on_progress: OnProgress | None = None) -> Book:
    """Read a book file; AudiobookError for a missing or unreadable one.

    ``on_progress(done, total, what)`` hears a slow read (OCR of scanned pages) page by page; the
    settings' narration language, when not auto, is the OCR language of a book that does not say its own.
    """
    if not path:
        raise AudiobookError(f"Choose a book file first ({formats_sentence()}).")
    from audiobook.text import base_language

    chosen = backend.settings.language  # scanned pages of a book that does not say its language are read in this one
    book = read_book(path, on_progress=on_progress, language="" if chosen == "auto" else base_language(chosen))
    remember_source(backend, book, path)
    return book


def edit_book(backend, book: Book | None, action: str, chapter: int | None = None, value: str = "") -> Book:
    """Apply one edit to ``book`` and return the edited copy (``book`` itself is left as it was).

    ``action`` is rename (chapter, value=title), text (chapter, value=text), merge or drop
    (value='2, 3') or reorder (value='3, 1, 2'); chapters are 0-based, numbers in ``value`` 1-based.
    """
    from audiobook import books

    if book is None:
        raise AudiobookError("Load a book first.")
    if action in ("rename", "text") and chapter is None:
        raise AudiobookError("Pick a chapter first.")
    if action == "rename":
        return books.rename_chapter(book, int(chapter), value)
    if action == "text":
        return books.set_chapter_text(book, int(chapter), value)
    edits = {"merge": books.merge_chapters, "drop": books.drop_chapters, "reorder": books.reorder_chapters}
    if action not in edits:
        raise ValueError(f"unknown edit {action!r}")
    return edits[action](book, chapter_numbers(value, book))


def save_book(backend, book: Book | None) -> Path:
    """Write the (edited) book as JSON under ``<output>/books/``; returns the file."""
    from audiobook.books import save_book_json
    from audiobook.files import safe_filename

    if book is None:
        raise AudiobookError("Load a book first.")
    return save_book_json(book, backend.output_root / "books" / f"{safe_filename(book.title or 'book')}.json")

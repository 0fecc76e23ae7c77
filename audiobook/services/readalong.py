"""Read-along books for the Backend: the EPUB 3 with media overlays of a render, made after it or later.

Each function takes the ``backend.Backend`` first; ``Backend`` lists them as its methods.
"""

from __future__ import annotations

from pathlib import Path

from audiobook.books import Book
from audiobook.errors import AudiobookError


def remember_source(backend, book: Book, path) -> None:
    """An EPUB's own pages become its read-along book, so the file a book was read from is remembered by title."""
    if path and Path(path).suffix.lower() == ".epub":
        backend._epub_sources[book.title] = Path(path)


def readalong(backend, out_dir: str | Path, source: str | Path | None = None):
    """Build ``<title> (read-along).epub`` in a render folder from its chapters and sentence timings
    (nothing is rendered). ``source``: the book's EPUB, whose pages it then uses; it is kept beside
    the render for the next time. Returns a ``readalong.ReadAlong``."""
    from audiobook.readalong import build_readalong, keep_source

    out_dir = backend.resolve(str(out_dir))
    if source:
        if not Path(source).is_file():
            raise AudiobookError(f"The source book {source} is not there.")
        keep_source(source, out_dir)
    return build_readalong(out_dir)


def after_render(backend, book: Book, target: Path, result, settings) -> None:
    """The read-along EPUB at the end of a render (with ``make_readalong``); a failure is a line in
    the log, not a failed render."""
    from audiobook.readalong import keep_source

    source = backend._epub_sources.get(book.title)
    if source is not None and source.is_file():
        keep_source(source, target)
    if not settings.make_readalong or result.stopped or not result.chapter_files:
        return
    try:
        made = readalong(backend, target)
    except AudiobookError as e:
        result.log.append(f"The read-along EPUB was not made: {e}")
        return
    result.book_files.append(made.path)
    result.log.append(made.summary())

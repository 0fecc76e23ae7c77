"""A book described as text, for a person checking it before a long render (``backend.py book``)."""

from __future__ import annotations

from collections import Counter

from ..dialogue import NARRATOR
from .model import Book


def describe_book(book: Book, chunk_chars: int, show_chunks: bool = False, speak_titles: bool = True,
                  pronunciations=None) -> str:
    """What the reader found, as text for a person checking a book before a long render.

    Title, author, language, cover, how the file was read (reader, OCR, lines removed,
    warnings), and per chapter its number, title, words and
    chunks; with ``show_chunks`` every chunk's text too, with its speaker when it is not
    the narrator.
    """
    from ..text import plan_chunks

    chunks = plan_chunks(book.chapters, chunk_chars, book.language or "en", speak_titles, pronunciations=pronunciations)
    per_chapter = Counter(c.chapter for c in chunks)
    cover = f"yes ({book.cover_mime or 'image'}, {len(book.cover) // 1024} KB)" if book.cover else "no"
    lines = [
        f"Title:    {book.title}",
        f"Author:   {book.author or '(unknown)'}",
        f"Language: {book.language or '(unknown)'}",
        f"Cover:    {cover}",
        *(book.report.lines() if book.report else []),
        f"Chapters: {len(book.chapters)}, {book.words} words, {len(chunks)} chunks of at most {chunk_chars} characters",
        "",
        f"{'#':>4}  {'words':>7}  {'chunks':>6}  title",
    ]
    for i, chapter in enumerate(book.chapters):
        lines.append(f"{i + 1:>4}  {chapter.words:>7}  {per_chapter[i]:>6}  {chapter.title}")
        if show_chunks:
            for c in (c for c in chunks if c.chapter == i):
                mark = "title" if c.is_title else ("chapter end" if c.chapter_end else ("paragraph end" if c.paragraph_end else ""))
                who = f"{{{c.speaker}{', ' + c.style if c.style else ''}}} " if c.speaker != NARRATOR or c.style else ""
                lines.append(f"        [{c.index + 1}] {who}{c.text}" + (f"   <{mark}>" if mark else ""))
    return "\n".join(lines)

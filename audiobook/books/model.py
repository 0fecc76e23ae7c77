"""The Book model and its chapter edits.

A ``Book`` is what every reader returns and what the renderer plans from. The edit
functions (rename, merge, drop, reorder, set text, set a span's speaker) return a new ``Book`` so the caller
can keep or undo them; ``Book.to_dict``/``from_dict`` are the JSON book format.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field, replace

from ..dialogue import NARRATOR, Span, check_spans, join_spans, merge_spans
from ..errors import AudiobookError
from .cast import Cast
from .reading import ReadReport

BOOK_FORMAT_VERSION = 1
# Where nothing better is known the book says this about its front matter.
FRONT_MATTER_TITLE = "Opening"


@dataclass
class Chapter:
    """One chapter: its title and its text, paragraphs separated by a blank line.

    Inside a paragraph a single newline is a line break that carries meaning (poetry).
    ``spans``, when known, say who speaks each part of the text (see ``dialogue.Span``);
    they always rebuild ``text`` exactly. None: not labelled yet.
    """

    title: str
    text: str
    spans: list[Span] | None = None

    @property
    def words(self) -> int:
        return len(self.text.split())


@dataclass
class Book:
    """A book as the renderer sees it."""

    title: str
    chapters: list[Chapter] = field(default_factory=list)
    author: str = ""
    language: str = ""  # ISO 639-1 code such as "en", or "" when unknown
    cover: bytes | None = None  # image bytes
    cover_mime: str = ""
    year: str = ""  # publication year, for the audiobook's tags
    genre: str = ""
    cast: Cast | None = None  # the characters who speak, and their voices
    # How the file was read (reader, OCR, cleaning, warnings); not part of the JSON book.
    report: ReadReport | None = field(default=None, compare=False, repr=False)

    @property
    def words(self) -> int:
        return sum(c.words for c in self.chapters)

    def to_dict(self) -> dict:
        """The JSON book format: plain data that ``from_dict`` turns back into an equal Book."""
        return {
            "format": "audiobook-book",
            "version": BOOK_FORMAT_VERSION,
            "title": self.title,
            "author": self.author,
            "language": self.language,
            "cover_mime": self.cover_mime,
            "cover_base64": base64.b64encode(self.cover).decode("ascii") if self.cover else "",
            "year": self.year,
            "genre": self.genre,
            "chapters": [{"title": c.title, "text": c.text, **({"spans": [s.to_dict() for s in c.spans]} if c.spans else {})}
                         for c in self.chapters],
            **({"cast": [m.to_dict() for m in self.cast.members]} if self.cast else {}),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Book":
        """Build a Book from the JSON book format; raise AudiobookError when it is not one."""
        if not isinstance(data, dict) or not isinstance(data.get("chapters"), list):
            raise AudiobookError('This JSON file is not a book: it needs a "chapters" list of {"title", "text"} objects.')
        if data.get("version", BOOK_FORMAT_VERSION) not in (BOOK_FORMAT_VERSION,):
            raise AudiobookError(f"This JSON book has format version {data.get('version')!r}; this app reads version {BOOK_FORMAT_VERSION}.")
        chapters = []
        for i, c in enumerate(data["chapters"], 1):
            spans = None
            if isinstance(c, dict) and c.get("spans") is not None:
                if not isinstance(c["spans"], list):
                    raise AudiobookError(f'The "spans" of chapter {i} of this JSON book must be a list of {{"text", "speaker", "style"}}.')
                spans = merge_spans(Span.from_dict(s, f"span {k} of chapter {i}") for k, s in enumerate(c["spans"], 1))
                if not isinstance(c.get("text"), str):
                    c = {**c, "text": join_spans(spans)}  # the spans alone are the chapter
                check_spans(c["text"], spans, f"chapter {i} of this JSON book")
            if not isinstance(c, dict) or not isinstance(c.get("text"), str):
                raise AudiobookError(f'Chapter {i} of this JSON book has no "text".')
            title = c.get("title")
            if title is not None and not isinstance(title, str):
                raise AudiobookError(f'The "title" of chapter {i} of this JSON book must be text.')
            chapters.append(Chapter(title=title if title else f"Chapter {i}", text=c["text"], spans=spans or None))
        try:
            cover = base64.b64decode(data["cover_base64"], validate=True) if data.get("cover_base64") else None
        except (binascii.Error, TypeError, ValueError):
            raise AudiobookError('The "cover_base64" of this JSON book is not valid base64.') from None
        return cls(
            title=str(data.get("title") or "Untitled"),
            author=str(data.get("author") or ""),
            language=str(data.get("language") or ""),
            cover=cover,
            cover_mime=str(data.get("cover_mime") or ""),
            year=str(data.get("year") or ""),
            genre=str(data.get("genre") or ""),
            chapters=chapters,
            cast=Cast.from_dict(data["cast"], "the cast of this JSON book") if data.get("cast") else None,
        )


# ---------------------------------------------------------------- chapter edits
# Pure functions: each returns a new Book and leaves its argument as it was.
# Chapter indexes are 0-based, like Chunk.chapter; messages count from 1 for the user.


def _check_index(book: Book, index: int) -> None:
    if not isinstance(index, int) or not 0 <= index < len(book.chapters):
        raise AudiobookError(f"There is no chapter {index + 1 if isinstance(index, int) else index}; the book has {len(book.chapters)}.")


def rename_chapter(book: Book, index: int, title: str) -> Book:
    """A copy of ``book`` whose chapter ``index`` is called ``title``."""
    _check_index(book, index)
    if not title.strip():
        raise AudiobookError("A chapter title cannot be empty.")
    chapters = list(book.chapters)
    chapters[index] = replace(chapters[index], title=title.strip())
    return replace(book, chapters=chapters)


def set_chapter_text(book: Book, index: int, text: str) -> Book:
    """A copy of ``book`` whose chapter ``index`` has ``text`` (paragraphs split by a blank line)."""
    _check_index(book, index)
    if not text.strip():
        raise AudiobookError("A chapter needs some text; drop the chapter instead.")
    chapters = list(book.chapters)
    chapters[index] = replace(chapters[index], text=text.strip(), spans=None)  # new text: its speakers are found again
    return replace(book, chapters=chapters)


def set_span(book: Book, chapter: int, span: int, speaker: str | None = None, style: str | None = None) -> Book:
    """A copy of ``book`` where span ``span`` of chapter ``chapter`` has another speaker and/or style."""
    _check_index(book, chapter)
    spans = list(book.chapters[chapter].spans or [])
    if not isinstance(span, int) or not 0 <= span < len(spans):
        raise AudiobookError(f"Chapter {chapter + 1} has no part {span + 1 if isinstance(span, int) else span}; it has {len(spans)}.")
    old = spans[span]
    new_speaker = " ".join((speaker if speaker is not None else old.speaker).split()) or NARRATOR
    spans[span] = Span(old.text, NARRATOR if new_speaker.lower() == NARRATOR else new_speaker,
                       " ".join((style if style is not None else old.style).split()))
    chapters = list(book.chapters)
    chapters[chapter] = replace(chapters[chapter], spans=spans)
    return replace(book, chapters=chapters)


def merge_chapters(book: Book, indexes: list[int]) -> Book:
    """A copy of ``book`` where the chapters ``indexes`` become one, at the first one's place.

    The merged chapter keeps the first chapter's title; the texts follow in book
    order, and the later chapters' titles stay as paragraphs so no word is lost.
    """
    wanted = sorted(set(indexes))
    if len(wanted) < 2:
        raise AudiobookError("Pick at least two chapters to merge.")
    for i in wanted:
        _check_index(book, i)
    first = book.chapters[wanted[0]]
    parts = [first.text] + [f"{book.chapters[i].title}\n\n{book.chapters[i].text}" for i in wanted[1:]]
    merged = Chapter(first.title, "\n\n".join(p for p in parts if p.strip()))
    if any(book.chapters[i].spans for i in wanted):  # the speakers stay with their words
        spans = list(first.spans or [Span(first.text)])
        for i in wanted[1:]:
            ch = book.chapters[i]
            spans += [Span(f"\n\n{ch.title}\n\n")] + list(ch.spans or [Span(ch.text)])
        spans = merge_spans(spans)
        if join_spans(spans) == merged.text:
            merged.spans = spans
    chapters = [merged if i == wanted[0] else c for i, c in enumerate(book.chapters) if i == wanted[0] or i not in wanted]
    return replace(book, chapters=chapters)


def drop_chapters(book: Book, indexes: list[int]) -> Book:
    """A copy of ``book`` without the chapters ``indexes``; at least one chapter must stay."""
    for i in indexes:
        _check_index(book, i)
    chapters = [c for i, c in enumerate(book.chapters) if i not in set(indexes)]
    if not chapters:
        raise AudiobookError("A book needs at least one chapter; keep one.")
    return replace(book, chapters=chapters)


def reorder_chapters(book: Book, order: list[int]) -> Book:
    """A copy of ``book`` whose chapters come in ``order`` (a list of every index once)."""
    if sorted(order) != list(range(len(book.chapters))):
        raise AudiobookError(f"A new chapter order must name each of the {len(book.chapters)} chapters exactly once.")
    return replace(book, chapters=[book.chapters[i] for i in order])

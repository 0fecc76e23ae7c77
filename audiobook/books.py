"""Reading books (txt, md, epub, pdf, json) into a Book of ordered chapters."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import AudiobookError

BOOK_FORMAT_VERSION = 1


@dataclass
class Chapter:
    """One chapter: its title and its text, paragraphs separated by a blank line."""

    title: str
    text: str

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

    def to_dict(self) -> dict:
        return {
            "format": "audiobook-book",
            "version": BOOK_FORMAT_VERSION,
            "title": self.title,
            "author": self.author,
            "language": self.language,
            "cover_mime": self.cover_mime,
            "cover_base64": base64.b64encode(self.cover).decode("ascii") if self.cover else "",
            "chapters": [{"title": c.title, "text": c.text} for c in self.chapters],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Book":
        if not isinstance(data, dict) or not isinstance(data.get("chapters"), list):
            raise AudiobookError("This JSON file is not a book: it needs a \"chapters\" list of {\"title\", \"text\"} objects.")
        chapters = []
        for i, c in enumerate(data["chapters"], 1):
            if not isinstance(c, dict) or not isinstance(c.get("text"), str):
                raise AudiobookError(f"Chapter {i} of this JSON book has no \"text\".")
            chapters.append(Chapter(title=str(c.get("title") or f"Chapter {i}"), text=c["text"]))
        cover = base64.b64decode(data["cover_base64"]) if data.get("cover_base64") else None
        return cls(
            title=str(data.get("title") or "Untitled"),
            author=str(data.get("author") or ""),
            language=str(data.get("language") or ""),
            cover=cover,
            cover_mime=str(data.get("cover_mime") or ""),
            chapters=chapters,
        )


_HEADING = re.compile(
    r"^\s*(#{1,3}\s+.+|(chapter|part|book)\s+([0-9]+|[ivxlcdm]+|[a-z]+)\b.*|prologue|epilogue)\s*$",
    re.IGNORECASE,
)


def read_txt(path: Path) -> Book:
    """A plain-text book: chapters start at lines such as 'Chapter 1' or '# Title'."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise AudiobookError(f"Could not read {path.name}: {e.strerror}.") from None
    if b"\x00" in raw[:4096]:
        raise AudiobookError(f"{path.name} is not a text file (it contains binary data).")
    text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise AudiobookError(f"{path.name} is empty: there is no text to narrate.")
    chapters: list[Chapter] = []
    title, lines = None, []
    for line in text.split("\n"):
        if _HEADING.match(line) and len(line) < 120:
            if title is not None or "".join(lines).strip():
                chapters.append(Chapter(title or path.stem, _paragraphs(lines)))
            title, lines = line.strip().lstrip("#").strip(), []
        else:
            lines.append(line)
    chapters.append(Chapter(title or path.stem, _paragraphs(lines)))
    chapters = [c for c in chapters if c.text.strip()]
    return Book(title=path.stem.replace("_", " "), chapters=chapters)


def _paragraphs(lines: list[str]) -> str:
    paras = re.split(r"\n\s*\n", "\n".join(lines))
    return "\n\n".join(" ".join(p.split()) for p in paras if p.strip())


def load_book(path: str | Path) -> Book:
    """Read a book file; raise AudiobookError with a sentence when it cannot be read."""
    p = Path(path)
    if not p.exists():
        raise AudiobookError(f"There is no file at {p}.")
    ext = p.suffix.lower()
    if ext in (".txt", ".md"):
        return read_txt(p)
    if ext == ".json":
        try:
            return Book.from_dict(json.loads(p.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise AudiobookError(f"{p.name} is not valid JSON.") from None
    raise AudiobookError(f"Cannot read '{ext or p.name}' files; use .txt, .md, .epub, .pdf or .json.")


def save_book_json(book: Book, path: str | Path) -> Path:
    from .settings import atomic_write_text

    p = Path(path)
    atomic_write_text(p, json.dumps(book.to_dict(), ensure_ascii=False, indent=1))
    return p

"""Normalising text and cutting it into sentence-aligned chunks."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

DEFAULT_CHUNK_CHARS = 500


@dataclass(frozen=True)
class Chunk:
    """A run of whole sentences inside one chapter, at most ``chunk_chars`` long.

    ``chapter`` and ``index`` place it in the book; ``is_title`` marks the spoken chapter
    title; ``paragraph_end``/``chapter_end`` say which pause follows it.
    """

    chapter: int
    index: int
    text: str
    is_title: bool = False
    paragraph_end: bool = False
    chapter_end: bool = False


_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+")


def normalize(text: str, language: str = "en") -> str:
    """Make text speakable (unicode forms, quotes, dashes, whitespace)."""
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\u201c", '"').replace("\u201d", '"').replace("\u2018", "'").replace("\u2019", "'")
    return re.sub(r"[ \t]+", " ", text).strip()


def split_sentences(paragraph: str, language: str = "en") -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(paragraph) if s.strip()]


def chunk_text(text: str, chunk_chars: int = DEFAULT_CHUNK_CHARS, language: str = "en") -> list[tuple[str, bool]]:
    """Cut a chapter's text into (chunk text, paragraph_end) pairs of whole sentences."""
    out: list[tuple[str, bool]] = []
    for para in re.split(r"\n\s*\n", text):
        para = normalize(para, language)
        if not para:
            continue
        current = ""
        for sentence in split_sentences(para, language):
            for piece in _split_long(sentence, chunk_chars):
                if current and len(current) + 1 + len(piece) > chunk_chars:
                    out.append((current, False))
                    current = piece
                else:
                    current = f"{current} {piece}".strip()
        if current:
            out.append((current, True))
    return out


def _split_long(sentence: str, chunk_chars: int) -> list[str]:
    if len(sentence) <= chunk_chars:
        return [sentence]
    pieces, current = [], ""
    for word in sentence.split():
        if current and len(current) + 1 + len(word) > chunk_chars:
            pieces.append(current)
            current = word
        else:
            current = f"{current} {word}".strip()
    return pieces + ([current] if current else [])


def plan_chunks(chapters, chunk_chars: int = DEFAULT_CHUNK_CHARS, language: str = "en", speak_titles: bool = True) -> list[Chunk]:
    """Every chunk of the book in reading order (the title of each chapter first)."""
    chunks: list[Chunk] = []
    for ci, chapter in enumerate(chapters):
        body = chunk_text(chapter.text, chunk_chars, language)
        items: list[tuple[str, bool, bool]] = []
        if speak_titles and chapter.title.strip():
            items.append((normalize(chapter.title, language), True, False))
        items += [(t, False, p) for t, p in body]
        for i, (t, is_title, para_end) in enumerate(items):
            chunks.append(Chunk(ci, i, t, is_title=is_title, paragraph_end=para_end, chapter_end=i == len(items) - 1))
    return chunks

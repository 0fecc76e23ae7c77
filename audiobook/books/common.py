"""What the book readers share: reading a file's bytes, decoding text, words, contents lists."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import AudiobookError


def decode_text(raw: bytes, name: str) -> str:
    """Bytes of a text file -> str; binary data is refused with a sentence."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16", errors="replace")
    sample = raw[:65536]
    controls = sum(1 for b in sample if b < 32 and b not in (9, 10, 12, 13))
    if b"\x00" in sample or (sample and controls / len(sample) > 0.05):
        raise AudiobookError(f"{name} is not a text file: it contains binary data.")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")  # the usual legacy encoding of old e-texts


def read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise AudiobookError(f"Could not read {path.name}: {e.strerror or e}.") from None
    if not raw.strip():
        raise AudiobookError(f"{path.name} is empty: there is no text to narrate.")
    return raw


def words_of(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


@dataclass
class TocNode:
    title: str
    href: str
    children: list["TocNode"]


def _linked(nodes: list[TocNode]) -> list[TocNode]:
    """The entries of one level that point somewhere; an entry without a link is see-through."""
    out = []
    for node in nodes:
        if node.href:
            out.append(node)
        else:
            out += _linked(node.children)
    return out


def chapter_entries(nodes: list[TocNode]) -> list[TocNode]:
    """The table-of-contents entries that become chapters.

    The top level, except that a lone wrapper entry ("Section IV" holding every story)
    is looked through: it stays as its own (usually short) chapter and its children
    become chapters too. Deeper entries stay inside their chapter.
    """
    out: list[TocNode] = []
    level = _linked(nodes)
    while len(level) == 1 and _linked(level[0].children):
        out.append(level[0])
        level = _linked(level[0].children)
    return out + level


def drop_title_page(blocks: list, *known: str) -> list:
    """Blocks without the leading ones that only repeat the title or author, or give a date (a title page)."""
    words = set(words_of(" ".join(known))) | {"by", "and", "of", "the", "a", "an"}
    i = 0
    while i < len(blocks) and len(blocks[i].text) <= 200 and words and {w for w in words_of(blocks[i].text) if not w.isdigit()} <= words:
        i += 1
    return blocks[i:]


def chapters_from_blocks(blocks, fallback_title: str) -> tuple[str, list]:
    """(book title, chapters) from blocks of text with heading levels (``.text``, ``.level``).

    Chapters start at the top heading level the document uses; a top heading that
    appears once above deeper ones is the book's title. Deeper headings stay in their
    chapter as paragraphs; a heading with no text under it is its own short chapter.
    Without any headings, chapters come from heading lines as in a text file
    ("Chapter 1", "Prologue").
    """
    from .model import FRONT_MATTER_TITLE, Chapter
    from .txt import split_text_chapters

    blocks = [b for b in blocks if b.text.strip()]
    levels = sorted({b.level for b in blocks if b.level})
    title = fallback_title
    if not levels:
        return title, split_text_chapters("\n\n".join(b.text for b in blocks), fallback_title)
    top = levels[0]
    tops = [b for b in blocks if b.level == top]
    if len(tops) == 1 and len(levels) > 1 and blocks.index(tops[0]) <= 2:
        title = " ".join(tops[0].text.split())  # "# Book title" over "## Chapter"s
        blocks = [b for b in blocks if b is not tops[0]]
        top = levels[1]
    chapters: list = []
    current, paras = None, []
    for b in blocks:
        if b.level and b.level <= top:
            if current is not None or paras:
                chapters.append(Chapter(current or FRONT_MATTER_TITLE, "\n\n".join(paras) or current))
            current, paras = " ".join(b.text.split()), []
        else:
            paras.append(b.text)
    if current is not None or paras:
        chapters.append(Chapter(current or title, "\n\n".join(paras) or current))
    return title, chapters

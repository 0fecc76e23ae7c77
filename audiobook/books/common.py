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

"""Rich Text Format (.rtf): chapters at outline-level headings, else at heading lines; title and author from its info group."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import AudiobookError
from .common import chapters_from_blocks, drop_title_page, read_bytes
from .model import Book
from .reading import ReadReport

_MARK = 0xE010  # a private-use character + outline level marks a heading paragraph through the text conversion
# Windows language ids of the \deflang/\lang words, for the languages we can narrate.
_LCID = {1033: "en", 2057: "en", 3081: "en", 4105: "en", 1031: "de", 3079: "de", 2055: "de", 1036: "fr", 3084: "fr",
         1034: "es", 3082: "es", 1040: "it", 1049: "ru", 1043: "nl", 2070: "pt", 1046: "pt", 1041: "ja", 1042: "ko",
         2052: "zh", 1028: "zh", 1045: "pl", 1053: "sv", 1030: "da", 1044: "nb", 1035: "fi", 1029: "cs", 1055: "tr"}


@dataclass
class _Block:
    text: str
    level: int = 0


def _group(raw: str, start: int) -> str:
    """The text of the {...} group that opens at ``start``, escapes respected."""
    depth, i = 0, start
    while i < len(raw):
        ch = raw[i]
        if ch == "\\":
            i += 2
            continue
        depth += ch == "{"
        depth -= ch == "}"
        if depth == 0:
            return raw[start:i + 1]
        i += 1
    return raw[start:]


def _mark_headings(raw: str) -> str:
    """The RTF with a marker character at the start of every heading paragraph's text."""
    heading_styles: dict[str, int] = {}
    sheet = raw.find("{\\stylesheet")
    sheet_end = sheet
    if sheet >= 0:
        group = _group(raw, sheet)
        sheet_end = sheet + len(group)
        for entry in re.findall(r"\{[^{}]*?\\s(\d+)(?!\d)[^{}]*?\\outlinelevel(\d)", group):
            heading_styles[entry[0]] = int(entry[1])
        for number, name in re.findall(r"\{[^{}]*?\\s(\d+)(?!\d)[^{}]*?\s([^\\{};]+);\}", group):
            m = re.match(r"heading\s*(\d)\s*$", name.strip(), re.IGNORECASE)
            if m and number not in heading_styles:
                heading_styles[number] = int(m.group(1)) - 1

    def mark(level: int) -> str:
        return f"\\u{_MARK + level}?"

    def style(m: re.Match) -> str:
        level = heading_styles.get(m.group(1))
        return m.group(0) if level is None else m.group(0) + " " + mark(level) + " "

    body = raw[sheet_end:] if sheet >= 0 else raw
    body = re.sub(r"\\outlinelevel(\d)(?![\d])\s?", lambda m: f"\\outlinelevel{m.group(1)} {mark(int(m.group(1)))}", body)
    if heading_styles:
        body = re.sub(r"\\s(\d+)(?![\d])", style, body)
    return (raw[:sheet_end] if sheet >= 0 else "") + body


def _info(raw: str, name: str) -> str:
    from striprtf.striprtf import rtf_to_text

    at = raw.find("{\\info")
    if at < 0:
        return ""
    m = re.search(r"\{\\" + name + r"\s((?:[^{}\\]|\\.)*)\}", _group(raw, at))
    return " ".join(rtf_to_text("{\\rtf1 " + m.group(1) + "}", errors="replace").split()) if m else ""


def read_rtf(path: Path) -> Book:
    """An RTF document: chapters at its outline-level headings (Word's Heading 1, pandoc's headings),
    else at heading lines such as "Chapter 1"; footnotes are not read."""
    from striprtf.striprtf import rtf_to_text

    raw = read_bytes(path).decode("latin-1")
    if not raw.lstrip().startswith("{\\rtf"):
        raise AudiobookError(f"{path.name} is not an RTF document (it does not start with {{\\rtf).")
    codepage = re.search(r"\\ansicpg(\d+)", raw[:2000])
    encoding = f"cp{codepage.group(1)}" if codepage else "cp1252"
    try:
        "".encode(encoding)
    except LookupError:
        encoding = "cp1252"
    try:
        text = rtf_to_text(_mark_headings(raw), encoding=encoding, errors="replace")
    except Exception as e:  # a damaged file can trip the converter in many ways
        raise AudiobookError(f"{path.name} is damaged and cannot be read as RTF ({type(e).__name__}).") from None
    blocks = []
    for line in text.split("\n"):
        level = 0
        while line and _MARK <= ord(line[0]) <= _MARK + 9:
            level = ord(line[0]) - _MARK + 1
            line = line[1:]
        line = "".join(ch for ch in line if not _MARK <= ord(ch) <= _MARK + 9)
        line = " ".join(line.split())
        if line:
            blocks.append(_Block(line, level))
    title_meta, author = _info(raw, "title"), _info(raw, "author")
    blocks = drop_title_page(blocks, title_meta, author)
    title, chapters = chapters_from_blocks(blocks, title_meta or path.stem.replace("_", " "))
    lang = re.search(r"\\(?:deflang|lang)(\d+)", raw)
    return Book(title=title_meta or title, chapters=chapters, author=author,
                language=_LCID.get(int(lang.group(1)), "") if lang else "", report=ReadReport(reader="RTF"))

"""Plain-text and Markdown books: chapters start at heading lines; ``[voice: Name]`` markup gives speakers."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

from ..dialogue import NARRATOR, has_markup, is_markup_line, strip_markup
from ..errors import AudiobookError
from .common import decode_text, read_bytes, words_of
from .model import FRONT_MATTER_TITLE, Book, Chapter

_NUMBER_WORDS = (
    r"one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
    r"sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|"
    r"first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|last|final"
)
# A heading is a short line on its own: "Chapter 12", "CHAPTER XII.", "Part One: Arrival",
# "Prologue", or a Markdown-style "# Title".
HEADING = re.compile(
    rf"^\s*(?:#{{1,3}}\s+\S.*"
    rf"|(?:chapter|part|book|volume|section|act|canto|letter|stave)\s+(?:\d+|[ivxlcdm]+|(?:{_NUMBER_WORDS})(?:[- ](?:one|two|three|four|five|six|seven|eight|nine))?)\b"
    rf"\.?(?:\s*[:.\-\u2013\u2014]\s*\S.{{0,80}}|\s+\S.{{0,80}})?"
    r"|prologue|epilogue|preface|foreword|afterword|introduction|interlude|appendix(?:\s+\w+)?)\s*[.:]?\s*$",
    re.IGNORECASE,
)
_GUTENBERG_START = re.compile(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*$", re.MULTILINE | re.IGNORECASE)
_GUTENBERG_END = re.compile(r"^\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG.*$", re.MULTILINE | re.IGNORECASE)


def _is_heading_block(lines: list[str]) -> bool:
    # "Chapter two of her life began." is a sentence, not a heading.
    sentence = len(lines[0].split()) > 3 and re.search(r"[.!?,;]\W*$", lines[0])
    return len(lines) <= 2 and all(len(line) <= 100 for line in lines) and bool(HEADING.match(lines[0])) and not sentence


def _is_subtitle(lines: list[str]) -> bool:
    if is_markup_line(lines[0]):
        return False  # "[voice: Alice]" after a heading starts the text, it is no subtitle
    return len(lines) == 1 and len(lines[0]) <= 70 and not re.search(r"[.!?,;]\W*$", lines[0])


def split_text_chapters(text: str, fallback_title: str) -> list[Chapter]:
    """Plain text -> chapters at heading lines; paragraphs are blocks between blank lines.

    Hard-wrapped lines inside a paragraph are joined. A heading such as "CHAPTER I."
    followed by a short title line becomes "CHAPTER I. Down the Rabbit-Hole". A
    contents list (headings with no text that reappear later) is not made into chapters.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    blocks = [[line.strip() for line in b.split("\n") if line.strip()] for b in re.split(r"\n[ \t\f\v]*\n", text)]
    blocks = [b for b in blocks if b]
    chapters: list[tuple[str | None, list[str]]] = [(None, [])]
    i = 0
    while i < len(blocks):
        lines = blocks[i]
        if _is_heading_block(lines) or (lines[0].startswith("#") and HEADING.match(lines[0])):
            heading = lines[0].lstrip("#").strip()
            rest = lines[1:]
            if rest and not lines[0].startswith("#"):
                heading, rest = f"{heading.rstrip(':')}: {rest[0]}" if not heading.endswith(".") else f"{heading} {rest[0]}", []
            elif not rest and i + 1 < len(blocks) and _is_subtitle(blocks[i + 1]) and not HEADING.match(blocks[i + 1][0]) and re.fullmatch(r"\w+\s+\S+\.?", heading):
                heading = f"{heading} {blocks[i + 1][0]}" if heading.endswith(".") else f"{heading}: {blocks[i + 1][0]}"
                i += 1
            chapters.append((heading, [" ".join(rest)] if rest else []))
        else:
            chapters[-1][1].append(" ".join(lines))
        i += 1
    titled = [" ".join(words_of(t)) for t, paras in chapters if t and paras]
    out = []
    for n, (title, paras) in enumerate(chapters):
        if not paras:
            key = " ".join(words_of(title or ""))
            if title is None or any(t == key or t.startswith(key + " ") for t in titled):
                continue  # a contents line, or nothing before the first heading
            paras = [title]  # a heading alone (a part title): it is its own short chapter
        out.append(Chapter(title or (fallback_title if n == 0 and len(chapters) == 1 else FRONT_MATTER_TITLE), "\n\n".join(paras)))
    return out


def read_txt(path: Path) -> Book:
    """A plain-text book: chapters start at heading lines such as 'Chapter 1' or '# Title'."""
    text = decode_text(read_bytes(path), path.name)
    start, end = _GUTENBERG_START.search(text), _GUTENBERG_END.search(text)
    if start and end and start.end() < end.start():
        text = text[start.end():end.start()]  # the licence around a Project Gutenberg text is not the book
    title = path.stem.replace("_", " ")
    chapters = apply_markup(split_text_chapters(text, title))
    if not chapters:
        raise AudiobookError(f"{path.name} is empty: there is no text to narrate.")
    return Book(title=title, chapters=chapters)


def apply_markup(chapters: list[Chapter]) -> list[Chapter]:
    """Chapters whose ``[voice: Name]``/``[style: ...]`` tags became spans (as they were when there are no tags).

    A ``[voice: ...]`` goes on into the next chapters until another one; chapters left
    without words (only tags) are dropped.
    """
    if not any(has_markup(c.text) for c in chapters):
        return chapters
    out, speaker = [], NARRATOR
    for c in chapters:
        text, spans, speaker = strip_markup(c.text, speaker)
        if text.strip():
            out.append(replace(c, text=text, spans=spans))
    return out


def read_markdown(path: Path) -> Book:
    """A Markdown book: chapters at the top heading level; a lone '# Title' names the book."""
    from markdown_it import MarkdownIt

    text = decode_text(read_bytes(path), path.name)
    tokens = MarkdownIt("commonmark").parse(text)
    items: list[tuple[int, str]] = []  # (heading level or 0 for a paragraph, text)
    for i, tok in enumerate(tokens):
        if tok.type == "inline":
            level = int(tokens[i - 1].tag[1]) if tokens[i - 1].type == "heading_open" else 0
            items.append((level, _markdown_inline(tok)))
        elif tok.type in ("fence", "code_block"):
            items.append((0, tok.content.strip()))
        elif tok.type == "html_block":
            items.append((0, re.sub(r"<[^>]+>", " ", tok.content).strip()))
    items = [(lv, t) for lv, t in items if t.strip()]
    levels = Counter(lv for lv, _ in items if lv)
    title = path.stem.replace("_", " ")
    split_level = min(levels) if levels else 0
    if split_level and levels[split_level] == 1 and any(lv > split_level for lv in levels):
        title = next(t for lv, t in items if lv == split_level)  # "# Book title" over "## Chapter"s
        items = [(lv, t) for lv, t in items if lv != split_level]
        split_level = min(lv for lv in levels if lv > split_level)
    chapters: list[Chapter] = []
    current, paras = None, []
    for level, value in items:
        if level and level <= split_level:
            if current is not None or paras:
                chapters.append(Chapter(current or FRONT_MATTER_TITLE, "\n\n".join(paras) or current or ""))
            current, paras = value, []
        else:
            paras.append(value)
    if current is not None or paras:
        chapters.append(Chapter(current or title, "\n\n".join(paras) or current or ""))
    chapters = apply_markup([c for c in chapters if c.text.strip()])
    if not chapters:
        raise AudiobookError(f"{path.name} is empty: there is no text to narrate.")
    return Book(title=title, chapters=chapters)


def _markdown_inline(token) -> str:
    parts = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type == "softbreak":
            parts.append(" ")
        elif child.type == "hardbreak":
            parts.append("\n")
        # images, raw HTML and link targets are not read aloud; link text is a text child
    return " ".join("".join(parts).split(" ")).strip()

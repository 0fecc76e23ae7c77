"""FictionBook (.fb2, and .fbz: a zipped .fb2): sections as chapters, its own metadata and cover."""

from __future__ import annotations

import base64
import binascii
import re
import zipfile
from pathlib import Path

from ..errors import AudiobookError
from .common import read_bytes, words_of
from .model import FRONT_MATTER_TITLE, Book, Chapter
from .reading import ReadReport
from .xhtml import local_name

_BLOCKS = {"p", "subtitle", "v", "text-author", "td", "th"}
_CONTAINERS = {"poem", "stanza", "cite", "epigraph", "annotation", "table", "tr"}


def _text(el) -> str:
    """An element's words, footnote links and images left out."""
    parts = [el.text or ""]
    for child in el:
        name = local_name(child.tag)
        if name == "a" and (child.get("type") == "note" or _href(child).startswith("#")) and re.fullmatch(r"\W*\w{1,3}\W*", "".join(child.itertext()).strip()):
            pass  # a footnote marker
        elif name != "image":
            parts.append(_text(child))
        parts.append(child.tail or "")
    return "".join(parts)


def _href(el) -> str:
    return next((v for k, v in el.attrib.items() if local_name(k) == "href"), "") or ""


def _title(el) -> str:
    title = next((c for c in el if local_name(c.tag) == "title"), None)
    if title is None:
        return ""
    lines = [" ".join(_text(p).split()) for p in title if local_name(p.tag) == "p"]
    lines = [line for line in lines if line] or [" ".join(_text(title).split())]
    if len(lines) == 2 and not re.search(r"[.:!?]$", lines[0]):
        return f"{lines[0]}: {lines[1]}"  # "Chapter 1" over "The Beginning"
    return " ".join(lines).strip()


def _paragraphs(el, out: list[str], chapter: bool = False) -> None:
    """The text of a section (titles of inner sections included), one paragraph per block; a stanza's lines stay lines."""
    for child in el:
        name = local_name(child.tag)
        if name == "title":
            if chapter:
                continue  # the chapter's own title is spoken as the title
            text = _title(el)
            if text:
                out.append(text)
        elif name == "stanza":
            lines = [" ".join(_text(v).split()) for v in child if local_name(v.tag) == "v"]
            out.append("\n".join(line for line in lines if line))
        elif name in _BLOCKS:
            text = " ".join(_text(child).split())
            if text:
                out.append(text)
        elif name in _CONTAINERS or name == "section":
            _paragraphs(child, out)


def _sections(body) -> list:
    """The sections that become chapters: the top level, looking through a lone wrapper section."""
    level = [s for s in body if local_name(s.tag) == "section"]
    while len(level) == 1 and any(local_name(s.tag) == "section" for s in level[0]):
        level = [s for s in level[0] if local_name(s.tag) == "section"]
    return level


def _parse(path: Path):
    from lxml import etree

    raw = read_bytes(path)
    if raw[:4] == b"PK\x03\x04":  # .fbz / .fb2.zip
        try:
            with zipfile.ZipFile(path) as zf:
                inner = next((n for n in zf.namelist() if n.lower().endswith(".fb2")), None)
                if inner is None:
                    raise AudiobookError(f"{path.name} is a zip archive without a .fb2 book inside.")
                raw = zf.read(inner)
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise AudiobookError(f"{path.name} is damaged and cannot be opened ({type(e).__name__}).") from None
    try:
        root = etree.fromstring(raw, etree.XMLParser(recover=True, resolve_entities=False, huge_tree=True, no_network=True))
    except etree.XMLSyntaxError:
        root = None
    if root is None or local_name(root.tag) != "fictionbook":
        raise AudiobookError(f"{path.name} is not a FictionBook (fb2) file.")
    return root


def read_fb2(path: Path) -> Book:
    """A FictionBook: chapters from its sections, title, authors, language, year, genre and cover from its description.

    Note bodies and footnote links are not read; poems keep their lines.
    """
    root = _parse(path)
    info = next((e for e in root.iter() if local_name(e.tag) == "title-info"), None)

    def field(name: str) -> str:
        el = next((e for e in info if local_name(e.tag) == name), None) if info is not None else None
        return " ".join(_text(el).split()) if el is not None else ""

    authors = []
    for a in (e for e in (info if info is not None else []) if local_name(e.tag) == "author"):
        parts = {local_name(p.tag): " ".join((p.text or "").split()) for p in a}
        name = " ".join(parts.get(k, "") for k in ("first-name", "middle-name", "last-name")).split()
        authors.append(" ".join(name) or parts.get("nickname", ""))
    authors = [a for a in authors if a]
    bodies = [b for b in root if local_name(b.tag) == "body"]
    body = next((b for b in bodies if not b.get("name")), bodies[0] if bodies else None)
    if body is None:
        raise AudiobookError(f"{path.name} has no body: there is no text to narrate.")
    chapters = []
    front: list[str] = []
    for el in body:
        if local_name(el.tag) == "epigraph":
            _paragraphs(el, front)
    if front:
        chapters.append(Chapter(FRONT_MATTER_TITLE, "\n\n".join(front)))
    for n, section in enumerate(_sections(body)):
        paras: list[str] = []
        _paragraphs(section, paras, chapter=True)
        title = _title(section) or f"Chapter {n + 1}"
        if words_of(" ".join(paras)) or _title(section):
            chapters.append(Chapter(title, "\n\n".join(paras) or title))
    cover, mime = _cover(root, info)
    from ..text import base_language

    lang = field("lang")
    year = re.search(r"\b(1[5-9]\d\d|2[01]\d\d)\b", field("date"))
    genre = field("genre")
    return Book(title=field("book-title") or path.stem.replace("_", " "), chapters=chapters,
                author=" and ".join(authors) if len(authors) <= 2 else ", ".join(authors),
                language=base_language(lang) if lang else "", cover=cover, cover_mime=mime,
                year=year.group(1) if year else "", genre="" if genre == "unrecognised" else genre.replace("_", " "),
                report=ReadReport(reader="FictionBook (fb2)"))


def _cover(root, info) -> tuple[bytes | None, str]:
    page = next((e for e in info if local_name(e.tag) == "coverpage"), None) if info is not None else None
    image = next((e for e in page.iter() if local_name(e.tag) == "image"), None) if page is not None else None
    if image is None:
        return None, ""
    ref = _href(image).lstrip("#")
    binary = next((e for e in root if local_name(e.tag) == "binary" and e.get("id") == ref), None)
    if binary is None or not (binary.text or "").strip():
        return None, ""
    try:
        return base64.b64decode("".join(binary.text.split()), validate=True), binary.get("content-type") or ""
    except (binascii.Error, ValueError):
        return None, ""

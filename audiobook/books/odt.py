"""OpenDocument text (.odt): chapters at the top heading level, metadata from meta.xml."""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import AudiobookError
from .common import chapters_from_blocks, drop_title_page, read_bytes
from .model import Book
from .reading import ReadReport
from .xhtml import local_name

# Parts of the body that are not the text a listener hears.
_SKIP = {"note", "annotation", "tracked-changes", "table-of-content", "alphabetical-index", "illustration-index",
         "table-index", "object-index", "user-index", "bibliography", "sequence-decls", "variable-decls",
         "user-field-decls", "soft-page-break", "bookmark-start", "bookmark-end", "frame", "forms"}
_TITLE_PAGE_STYLES = {"title", "subtitle", "author", "date", "abstract"}


@dataclass
class _Block:
    text: str
    level: int = 0


def _inline(el, out: list[str]) -> None:
    if el.text:
        out.append(el.text)
    for child in el:
        name = local_name(child.tag)
        if name == "s":
            out.append(" " * int(child.get("{urn:oasis:names:tc:opendocument:xmlns:text:1.0}c", "1") or 1))
        elif name == "tab":
            out.append(" ")
        elif name == "line-break":
            out.append("\n")
        elif name not in _SKIP:
            _inline(child, out)
        if child.tail:
            out.append(child.tail)


def _walk(el, blocks: list[_Block], styles: list[str]) -> None:
    for child in el:
        name = local_name(child.tag)
        if name in _SKIP:
            continue
        if name in ("h", "p"):
            parts: list[str] = []
            _inline(child, parts)
            text = "\n".join(" ".join(line.split()) for line in "".join(parts).split("\n")).strip()
            if text:
                level = int(child.get("{urn:oasis:names:tc:opendocument:xmlns:text:1.0}outline-level", "1") or 1) if name == "h" else 0
                blocks.append(_Block(text, level))
                styles.append((child.get("{urn:oasis:names:tc:opendocument:xmlns:text:1.0}style-name") or "").lower())
        elif name == "table-row":
            row: list[_Block] = []
            _walk(child, row, [])
            text = " ".join(dict.fromkeys(b.text for b in row))
            if text:
                blocks.append(_Block(text))
                styles.append("")
        else:  # lists, sections, tables and the like hold paragraphs
            _walk(child, blocks, styles)


def read_odt(path: Path) -> Book:
    """An OpenDocument text: chapters at its top heading level; footnotes, comments and indexes not read."""
    from lxml import etree

    read_bytes(path)
    if not zipfile.is_zipfile(path):
        raise AudiobookError(f"{path.name} is not a valid OpenDocument file: it is not a zip archive (the file may be truncated or renamed).")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if "META-INF/manifest.xml" in names and b"encryption-data" in zf.read("META-INF/manifest.xml"):
                raise AudiobookError(f"{path.name} is protected by a password; save an unprotected copy first.")
            if "content.xml" not in names:
                raise AudiobookError(f"{path.name} is not an OpenDocument text: it has no content.xml.")
            parser = etree.XMLParser(resolve_entities=False, huge_tree=True, no_network=True)
            content = etree.fromstring(zf.read("content.xml"), parser)
            meta = etree.fromstring(zf.read("meta.xml"), parser) if "meta.xml" in names else None
    except AudiobookError:
        raise
    except (zipfile.BadZipFile, etree.XMLSyntaxError, OSError, EOFError, ValueError) as e:
        raise AudiobookError(f"{path.name} is damaged and cannot be read as an OpenDocument text ({type(e).__name__}).") from None
    body = next((e for e in content.iter() if local_name(e.tag) == "text" and local_name(e.getparent().tag) == "body"), None)
    if body is None:
        raise AudiobookError(f"{path.name} is not an OpenDocument text (it may be a spreadsheet or a drawing).")
    blocks: list[_Block] = []
    styles: list[str] = []
    _walk(body, blocks, styles)
    title_page = []
    while blocks and not blocks[0].level and styles[0].replace("_20_", " ") in _TITLE_PAGE_STYLES:
        title_page.append(blocks.pop(0).text)
        styles.pop(0)

    def meta_value(name: str) -> str:
        if meta is None:
            return ""
        el = next((e for e in meta.iter() if local_name(e.tag) == name and (e.text or "").strip()), None)
        return " ".join(el.text.split()) if el is not None else ""

    title_meta = meta_value("title")
    author = meta_value("creator") or meta_value("initial-creator")
    blocks = drop_title_page(blocks, title_meta, author, *title_page)
    title, chapters = chapters_from_blocks(blocks, title_meta or (title_page[0] if title_page else path.stem.replace("_", " ")))
    from ..text import base_language

    lang = meta_value("language")
    dates = [e.get("{urn:oasis:names:tc:opendocument:xmlns:meta:1.0}value") or e.text or "" for e in (meta.iter() if meta is not None else [])
             if local_name(e.tag) == "user-defined" and (e.get("{urn:oasis:names:tc:opendocument:xmlns:meta:1.0}name") or "").lower() == "date"]
    year = re.search(r"\b(1[5-9]\d\d|2[01]\d\d)\b", " ".join(dates + [d for d in title_page]))
    return Book(title=title_meta or title, chapters=chapters, author=author, language=base_language(lang) if lang else "",
                year=year.group(1) if year else "", genre=meta_value("subject"), report=ReadReport(reader="OpenDocument (odt)"))

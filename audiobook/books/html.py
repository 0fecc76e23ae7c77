"""HTML and XHTML books (.html, .htm, .xhtml): chapters at the top heading level, metadata from <head>."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import AudiobookError
from .common import chapters_from_blocks, drop_title_page, read_bytes
from .model import Book
from .reading import ReadReport
from .xhtml import Block, XhtmlText, local_name


def _parse(raw: bytes, xml: bool):
    from lxml import etree, html

    if xml:
        try:
            root = etree.fromstring(raw, etree.XMLParser(recover=True, resolve_entities=False, huge_tree=True, no_network=True))
            if root is not None and len(root):
                return root
        except etree.XMLSyntaxError:
            pass
    try:
        return html.document_fromstring(raw)
    except (etree.ParserError, ValueError) as e:
        raise AudiobookError(f"This file cannot be read as HTML ({e}).") from None


def _meta(root, *names: str) -> str:
    for el in root.iter():
        if local_name(el.tag) == "meta" and (el.get("name") or "").lower() in names and (el.get("content") or "").strip():
            return " ".join(el.get("content").split())
    return ""


def html_book(root, fallback_title: str, reader: str, known: tuple[str, ...] = ()) -> Book:
    """A parsed (X)HTML document -> Book; shared by the HTML reader and Kindle books unpacked to HTML."""
    body = next((e for e in root.iter() if local_name(e.tag) == "body"), root)
    walker = XhtmlText({})
    walker.walk(body)
    walker.flush()
    blocks = [b for b in walker.out + walker.notes if isinstance(b, Block)]
    title_el = next((e for e in root.iter() if local_name(e.tag) == "title"), None)
    head_title = " ".join("".join(title_el.itertext()).split()) if title_el is not None else ""
    author = _meta(root, "author", "dc.creator", "dcterms.creator")
    date = _meta(root, "dcterms.date", "dc.date", "date")
    page_title = ""
    if head_title or known:
        kept = drop_title_page(blocks, head_title, author, date, *known)
        # A heading on the title page names the book better than <title> ("Emma | Project Gutenberg").
        page_title = next((" ".join(b.text.split()) for b in blocks[:len(blocks) - len(kept)] if b.level), "")
        blocks = kept
    title, chapters = chapters_from_blocks(blocks, page_title or head_title or fallback_title)
    from ..text import base_language

    lang = next((v for k, v in root.attrib.items() if local_name(k) == "lang" and v.strip()), "") or _meta(root, "dc.language", "language")
    year = re.search(r"\b(1[5-9]\d\d|2[01]\d\d)\b", date)
    return Book(title=title, chapters=chapters,  # a lone top heading over the chapters, else <title>
                author=author,
                language=base_language(lang) if lang else "", year=year.group(1) if year else "",
                genre=_meta(root, "dc.subject", "keywords"), report=ReadReport(reader=reader))


def read_html(path: Path) -> Book:
    """An HTML or XHTML page: chapters at its top heading level; title, author and language from its head."""
    raw = read_bytes(path)
    try:
        root = _parse(raw, xml=path.suffix.lower() == ".xhtml" or raw.lstrip()[:5] == b"<?xml")
    except AudiobookError as e:
        raise AudiobookError(f"{path.name}: {e}") from None
    return html_book(root, path.stem.replace("_", " "), "HTML")

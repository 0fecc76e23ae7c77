"""Word documents (.docx): chapters at the top heading level, metadata from the document's properties."""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import AudiobookError
from .common import chapters_from_blocks, drop_title_page, read_bytes
from .model import Book
from .reading import ReadReport

_HEADING_STYLE = re.compile(r"^heading\s*(\d)$", re.IGNORECASE)
_TITLE_PAGE_STYLES = {"title", "subtitle", "author", "date", "abstract"}


@dataclass
class _Block:
    text: str
    level: int = 0


def _outline_level(pPr) -> int | None:
    from docx.oxml.ns import qn

    el = pPr.find(qn("w:outlineLvl")) if pPr is not None else None
    if el is None:
        return None
    value = int(el.get(qn("w:val"), "9"))
    return value + 1 if value < 9 else 0  # 9 is "body text"


def _level(paragraph) -> int:
    """1-9 for a heading (by style name or outline level, following the style's parents), else 0."""
    level = _outline_level(paragraph._p.pPr)
    if level is not None:
        return level
    style = paragraph.style
    while style is not None:
        m = _HEADING_STYLE.match(style.name or "") or _HEADING_STYLE.match(style.style_id or "")
        if m:
            return int(m.group(1))
        level = _outline_level(style.element.pPr)
        if level is not None:
            return level
        style = style.base_style
    return 0


def _style_names(paragraph) -> set[str]:
    names, style = set(), paragraph.style
    while style is not None:
        names.add((style.name or "").lower())
        style = style.base_style
    return names


def _default_language(document) -> str:
    from docx.oxml.ns import qn

    try:
        styles = document.styles.element
        lang = styles.find(f"{qn('w:docDefaults')}/{qn('w:rPrDefault')}/{qn('w:rPr')}/{qn('w:lang')}")
        return lang.get(qn("w:val"), "") if lang is not None else ""
    except Exception:
        return ""


def read_docx(path: Path) -> Book:
    """A Word document: chapters at its top heading level (Heading 1, or outline level 1).

    Tables are read row by row; footnote markers are not read (their notes are not in the
    text); the Title, Author and Date paragraphs of a title page are not read.
    """
    from docx import Document
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table

    raw = read_bytes(path)
    if raw[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":  # a compound file: encrypted, rights-managed, or an old .doc
        if "DRMEncrypted".encode("utf-16-le") in raw:  # Information Rights Management's data space
            raise AudiobookError(f"{path.name} is protected by DRM; only DRM-free books can be narrated.")
        raise AudiobookError(f"{path.name} is protected by a password or is an old Word .doc file; "
                             "save an unprotected copy as .docx and load that.")
    try:
        document = Document(str(path))
    except (zipfile.BadZipFile, KeyError, ValueError, PackageNotFoundError) as e:
        raise AudiobookError(f"{path.name} is damaged or not a Word document ({type(e).__name__}).") from None
    except Exception as e:  # python-docx and lxml complain in many ways about a broken package
        raise AudiobookError(f"{path.name} could not be read as a Word document ({type(e).__name__}: {str(e)[:120]}).") from None
    props = document.core_properties
    blocks: list[_Block] = []
    title_page: list[str] = []
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            for row in item.rows:
                cells = [" ".join(c.text.split()) for c in row.cells]
                text = " ".join(dict.fromkeys(c for c in cells if c))  # merged cells repeat their text
                if text:
                    blocks.append(_Block(text))
            continue
        text = "\n".join(" ".join(line.split()) for line in item.text.split("\n")).strip()
        if not text:
            continue
        if not blocks and _style_names(item) & _TITLE_PAGE_STYLES:
            title_page.append(text)
            continue
        blocks.append(_Block(text, _level(item)))
    title_meta = " ".join((props.title or "").split())
    author = " ".join((props.author or "").split())
    blocks = drop_title_page(blocks, title_meta, author, *title_page)
    fallback = title_meta or (title_page[0] if title_page else path.stem.replace("_", " "))
    title, chapters = chapters_from_blocks(blocks, fallback)
    from ..text import base_language

    lang = (props.language or "").strip() or _default_language(document)
    return Book(title=title_meta or title, chapters=chapters, author=author,
                language=base_language(lang) if lang else "",
                genre=" ".join((props.category or "").split()), report=ReadReport(reader="Word (docx)"))
